"""Model loading: trained heads load, untrained heads are refused, labels map by name."""

import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from conftest import MODEL, REPO
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ela import ElaError
from ela.config import ModelConfig, PrecisionConfig
from ela.runtime.data import label_targets
from ela.runtime.device import check_precision, resolve_device
from ela.runtime.models import import_model_code, load_model, model_labels

CFG = ModelConfig(
    name="minilm",
    path=str(MODEL),
    revision=None,
    max_length=64,
    attn_implementation="sdpa",
    allow_untrained_head=False,
)


@pytest.fixture(scope="module")
def headless_checkpoint(tmp_path_factory):
    """The MiniLM encoder saved without its classifier: loading it as a classifier initialises a new head."""
    out = tmp_path_factory.mktemp("headless")
    AutoModelForSequenceClassification.from_pretrained(MODEL).bert.save_pretrained(out)
    AutoTokenizer.from_pretrained(MODEL).save_pretrained(out)
    return out


def test_trained_checkpoint_loads_in_eval_mode():
    loaded = load_model(CFG)
    assert loaded.newly_initialized == [] and not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.source == str(MODEL.resolve())


def test_untrained_head_is_refused(headless_checkpoint):
    with pytest.raises(ElaError, match="never trained.*allow_untrained_head=true"):
        load_model(replace(CFG, path=str(headless_checkpoint)))


def test_untrained_head_allowed_when_asked(headless_checkpoint):
    loaded = load_model(replace(CFG, path=str(headless_checkpoint), allow_untrained_head=True))
    assert any("classifier" in k for k in loaded.newly_initialized)


def test_missing_local_checkpoint(tmp_path, monkeypatch):
    with pytest.raises(ElaError, match="no config.json"):
        load_model(replace(CFG, path=str(tmp_path)))
    with pytest.raises(ElaError, match="does not exist"):
        load_model(replace(CFG, path=str(tmp_path / "nope")))
    # A relative path that exists is a local folder even without ./ (never sent to the Hub).
    monkeypatch.chdir(MODEL.parent)
    assert load_model(replace(CFG, path=MODEL.name)).source == str(MODEL.resolve())


def test_hub_id_offline_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr("ela.runtime.hub.hub_reachable", lambda: False)  # as on a machine without network
    with pytest.raises(ElaError, match="Hub is unreachable.*model=local model.path="):
        load_model(replace(CFG, path="textattack/roberta-base-SST-2"))


def test_label_map_by_name_generic_and_mismatch():
    from test_data import SST2_CFG

    id2label = model_labels(CFG)  # from the checkpoint's config alone, before any weights load
    assert id2label == {0: "negative", 1: "positive"}

    def targets(names):
        return label_targets([0, 1], replace(SST2_CFG, label_names=names), id2label)

    assert targets(["negative", "positive"]) == [0, 1]
    assert targets(["positive", "negative"]) == [1, 0]
    assert targets(None) == [0, 1]
    with pytest.raises(ElaError, match="not among the model's labels"):
        targets(["neg", "pos"])
    assert label_targets([0, 1], SST2_CFG, {0: "LABEL_0", 1: "LABEL_1"}) == [0, 1]


def _precision(name, weights="float32", autocast=None, tf32=False):
    return PrecisionConfig(name=name, weights_dtype=weights, autocast_dtype=autocast, tf32=tf32)


def test_precisions_are_honest_about_the_cpu():
    cpu = resolve_device("cpu")
    with pytest.raises(ElaError, match="TF32.*only on CUDA"):
        check_precision(_precision("tf32", tf32=True), cpu)
    check_precision(_precision("fp32"), cpu)
    check_precision(_precision("bf16", autocast="bfloat16"), cpu)
    check_precision(_precision("bf16_pure", weights="bfloat16"), cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_an_error():
    with pytest.raises(ElaError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize(
    ("path", "task", "module"),
    [
        (MODEL, "classification", "transformers.models.bert.modeling_bert"),
        (MODEL.parent / "tiny-llama-sst2", "generation", "transformers.models.llama.modeling_llama"),
    ],
)
def test_a_gpu_job_can_import_its_model_code_before_it_queues(path, task, module):
    """import_model_code imports the architecture's modeling module and tokenizer, in a new process, no weights."""
    code = (
        "import sys\n"
        "from ela.config import ModelConfig\n"
        "from ela.runtime.models import import_model_code\n"
        f"assert {module!r} not in sys.modules\n"
        f"import_model_code(ModelConfig('m', {str(path)!r}, None, 64, 'sdpa', False), {task!r})\n"
        f"assert {module!r} in sys.modules\n"
        "assert 'tokenizers' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=300)


def test_importing_a_missing_model_says_so_before_any_wait():
    """The import step fails as the load would, with the same clear message."""
    with pytest.raises(ElaError, match="does not exist"):
        import_model_code(replace(CFG, path="./no-such-checkpoint"))


def test_the_tokenizer_read_before_the_queue_is_handed_to_the_load_once():
    """The load takes the tokenizer import_model_code read (not read twice); a later load reads its own."""
    from ela.runtime import models

    import_model_code(CFG)
    prepared = models._PREPARED[(CFG, "classification")]
    assert models.load_tokenizer(CFG) is prepared  # the job's load
    assert models.load_tokenizer(CFG) is not prepared  # handed over once only
    import_model_code(CFG)
    assert models.load_tokenizer(CFG, "generation").padding_side == "left"  # another task's is never handed over
    assert (CFG, "classification") in models._PREPARED  # still there for the classification load it was read for
    models._PREPARED.clear()  # nothing left for the tests after this one
