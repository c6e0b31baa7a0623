"""Config composition (Hydra compose API) and validation errors that name the bad key."""

import pytest
from conftest import LOCAL, REPO, SST2
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ela import ElaError
from ela.config import to_container, validate
from ela.tracking.identity import config_hash

PRECISIONS = ["fp32", "tf32", "fp16", "bf16", "fp16_pure", "bf16_pure"]


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_default_config_is_roberta_base_sst2_from_the_hub():
    job = validate(composed())
    assert job.model.path == "textattack/roberta-base-SST-2"
    assert job.dataset.hub_id == "nyu-mll/glue" and job.dataset.split == "validation"
    assert (job.precision.name, job.batch, job.seed, job.device) == ("fp32", 8, 0, "auto")
    assert job.precision.tf32 is False  # fp32 means IEEE fp32, TF32 explicitly off
    assert job.measure.min_window_s == 5.0


@pytest.mark.parametrize("name", PRECISIONS)
def test_every_precision_composes(name):
    job = validate(composed(f"precision={name}", *LOCAL))
    assert job.precision.name == name
    assert job.run_name == f"{name}-b8-s0"
    pure = name.endswith("_pure")
    assert (job.precision.autocast_dtype is None) == (pure or name in ("fp32", "tf32"))
    assert (job.precision.weights_dtype != "float32") == pure


@pytest.mark.parametrize("model", ["qwen2_5_0_5b_instruct", "smollm2_360m_instruct", "llama_3_2_1b_instruct"])
def test_the_decoder_presets_decode_with_grouped_attention(model):
    job = validate(composed("task=generation", f"model={model}", f"dataset.path={SST2}"))
    assert job.model.attn_implementation == "sdpa_grouped" and job.model.path.count("/") == 1  # a Hub ID


def test_known_grids_and_regions_pass():
    job = validate(composed(*LOCAL, "codecarbon.country_iso_code=DEU"))
    assert job.codecarbon.country_iso_code == "DEU"
    assert validate(composed(*LOCAL, "codecarbon.region=california")).codecarbon.region == "california"


def test_batch_and_seed_are_plain_ints():
    job = validate(composed("batch=64", "seed=3", *LOCAL))
    assert (job.batch, job.seed) == (64, 3)


def test_local_paths_from_environment(monkeypatch):
    monkeypatch.setenv("ELA_MODEL_PATH", "/some/checkpoint")
    monkeypatch.setenv("ELA_SST2_PATH", "/some/sst2")
    job = validate(composed("model=local"))
    assert job.model.path == "/some/checkpoint" and job.dataset.path == "/some/sst2"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["batch=0"], "batch=0"),
        (["batch=abc"], "batch='abc'"),
        (["seed=-1"], "seed=-1"),
        (["device=tpu"], "device='tpu'"),
        (["measure.min_window_s=0"], "measure.min_window_s"),
        (["measure.energy_meter=watts"], "measure.energy_meter='watts'"),
        (["measure.samplers_in=gpu"], "measure.samplers_in='gpu'"),
        (["codecarbon.country_iso_code=France"], "codecarbon.country_iso_code"),
        (["codecarbon.country_iso_code=XXX"], "'XXX' is not a country in CodeCarbon's offline data"),
        (["codecarbon.region=atlantis"], "no offline data for that region of USA"),
        (["codecarbon.country_iso_code=FRA", "codecarbon.region=bretagne"], "checks regions for USA and CAN only"),
        (["dataset.label_map=[neg]"], "dataset.label_map"),
        (["dataset.limit=0"], "dataset.limit"),
        (["precision.weights_dtype=float8"], "precision.weights_dtype"),
        (["engine=compile", "engine.compile_mode=null"], "engine.compile_mode=None"),
        (["engine=compile", "engine.compile_mode=fast"], "engine.compile_mode='fast'"),
        (["engine.buckets=[0,16]"], "engine.buckets"),
        (["engine.buckets=0"], "engine.buckets"),
        (["dataset.order=random"], "dataset.order='random'"),
        (["gpus=some"], "gpus='some'"),
        (["reuse_references=maybe"], "reuse_references='maybe': expected true | false"),
        (["model.attn_implementation=flash"], "model.attn_implementation='flash'"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ElaError, match=message.replace("(", r"\(")):
        validate(composed(*LOCAL, *overrides))


def test_local_model_without_a_path_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("ELA_MODEL_PATH", raising=False)
    with pytest.raises(ElaError, match="model.path is not set.*ELA_MODEL_PATH"):
        validate(composed("model=local"))


def test_unknown_keys_are_named():
    data = to_container(composed(*LOCAL))
    data["measure"]["window"] = 3
    with pytest.raises(ElaError, match=r"measure\.window"):
        validate(data)
    data = to_container(composed(*LOCAL))
    data["batchsize"] = 3
    with pytest.raises(ElaError, match="batchsize"):
        validate(data)


def test_a_typo_in_a_key_gets_the_key_meant_before_hydra():
    from ela.cli import run_keys, unknown_key

    keys, sections = run_keys(str(REPO / "conf"))
    assert unknown_key(["-m", "precison=fp16", "batch=1,8"], keys, sections) == ("precison", ["precision"])
    found = unknown_key(["measure.gpu_meter=fake"], keys, sections)
    assert found == ("measure.gpu_meter", ["measure.energy_meter"])
    assert unknown_key(["batchsize=8"], keys, sections)[0] == "batchsize"
    known = ["model=local", "model.path=/x", "hydra/launcher=joblib_gpus", "+extra=1", "seed=0,1", "--help",
             "experiment=smoke", "dataset.label_map.neg=negative"]  # fmt: skip
    assert unknown_key(known, keys, sections) is None  # groups, dotted keys, leaves' own keys, Hydra's pass


def test_the_fast_key_check_falls_back_to_every_option(capsys):
    """The default config's keys are a subset; a key of another option (task.max_new_tokens) still passes."""
    from ela.cli import check_run_keys, run_keys

    conf = str(REPO / "conf")
    assert set(run_keys(conf, every_option=False)[0]) < set(run_keys(conf)[0])
    check_run_keys(["task=generation", "task.max_new_tokens=4", "batch=1"], conf)  # no exit
    with pytest.raises(SystemExit) as err:
        check_run_keys(["task.max_new_tokns=4"], conf)
    assert err.value.code == 2 and "did you mean 'task.max_new_tokens'" in capsys.readouterr().err


def test_config_hash_ignores_seed_and_bookkeeping_only():
    base = to_container(composed(*LOCAL))
    same = to_container(composed(*LOCAL, "seed=4", "tracking.experiment=other"))
    other = to_container(composed(*LOCAL, "batch=1"))
    assert config_hash(base) == config_hash(same)
    assert config_hash(base) != config_hash(other)


def test_resolved_config_is_plain_yaml():
    assert "hydra" not in OmegaConf.create(to_container(composed(*LOCAL)))


def test_the_sweep_key_is_the_grid_whatever_the_order_of_overrides_and_values():
    from ela.tracking.sweep import same_grid, sweep_key

    key = sweep_key(["precision=fp32,bf16", "batch=1,8,64", "resume=true"])
    assert key == sweep_key(["batch=64,8,1", "precision=bf16,fp32"]) == "batch=1,8,64 precision=bf16,fp32"
    stored_before = "precision=fp32,bf16 batch=64,8,1"  # a parent's key stored before values were sorted
    assert sweep_key(stored_before.split(" ")) == key  # noqa: SIM905 - split as resume splits a stored key
    assert sweep_key(["engine.buckets=[32,16]"]) == "engine.buckets=[32,16]"  # a list is one value: kept as given
    assert sweep_key(["seed=nan,1,inf"]) == sweep_key(["seed=inf,1,nan"])  # values that aren't finite: as words
    spaced = ["task.label_words=[' yes',' no']", "batch=8,1"]  # a value with a space matches its own stored key
    assert same_grid(sweep_key(spaced), sweep_key(spaced[::-1]), spaced[::-1])
    assert not same_grid(sweep_key(spaced), sweep_key(["batch=1,8"]), ["batch=1,8"])
