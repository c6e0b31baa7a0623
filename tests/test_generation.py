"""task=generation on the real tiny Llama LM: a real multirun into MLflow, the analysis, and bad input."""

from __future__ import annotations

import contextlib
import csv
import io

import pytest
from conftest import FAKE_GPU, PARENT, SHARED, SST2, all_runs, client, compose_job, measure, run_ela

from ela import ElaError
from ela.measure.metrics import generation_metrics, reference_metrics, sequence_agreement
from ela.runtime.generation import StepClock, output_lengths
from ela.schema import METRIC_NAMES

LM = SHARED / "models" / "tiny-llama-sst2"
GEN = ["task=generation", "model=local", f"model.path={LM}", f"dataset.path={SST2}", "device=cpu"]
QUICK = ["measure.warmup_batches=1", "measure.min_window_s=0.2", "measure.repeats=2", "measure.idle_window_s=0.2"]
NEW = 6


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """task=generation precision=fp32,bf16 batch=1,8 on 48 SST-2 sentences, 6 tokens each, fake GPU meter."""
    tmp = tmp_path_factory.mktemp("gen")
    overrides = [*GEN, "precision=fp32,bf16", "batch=1,8", "dataset.limit=48", f"task.max_new_tokens={NEW}"]
    proc = run_ela(tmp, *overrides, *QUICK, *FAKE_GPU)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, {r.info.run_name: r for r in all_runs(tmp) if PARENT in r.data.tags}


def _artifact(tmp, run, name: str) -> list[dict[str, str]]:
    from pathlib import Path

    path = client(tmp).download_artifacts(run.info.run_id, name, str(tmp / run.info.run_id))
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


@pytest.mark.slow
def test_a_generation_sweep_logs_tokens_latency_energy_and_agreement(sweep):
    tmp, runs = sweep
    assert sorted(runs) == ["gen-bf16-b1-s0", "gen-bf16-b8-s0", "gen-fp32-b1-s0", "gen-fp32-b8-s0"]
    for name, run in runs.items():
        m, tags = run.data.metrics, run.data.tags
        assert run.info.status == "FINISHED" and tags["ela.task"] == "generation"
        assert m["num_samples"] == 48 and m["output_tokens_mean"] == NEW  # the fixed length is honoured
        assert 0 < m["ttft_ms_p50"] <= m["ttft_ms_p90"] <= m["ttft_ms_p99"]
        assert 0 < m["tpot_ms_p50"] <= m["tpot_ms_p90"] <= m["tpot_ms_p99"]
        assert m["ttft_ms_p50"] < m["batch_latency_ms_p50"]  # first token before the whole generation
        # Per-token energy from the same windows as per-request energy; prefill and decode by subtraction.
        assert m["energy_j_per_output_token"] == pytest.approx(m["energy_j_per_sample"] / NEW, rel=1e-6)
        assert m["prefill_energy_j_per_prompt_token"] > 0 and m["decode_energy_j_per_output_token"] > 0
        assert m["output_tokens_per_s"] == pytest.approx(m["throughput_samples_per_s"] * NEW, rel=1e-6)
        assert 0.5 <= m["accuracy"] <= 1.0 and 0 <= m["generation_agreement_with_fp32"] <= 1
        assert 0 <= m["generation_common_prefix_fp32"] <= NEW
        assert "subtraction" in tags["ela.method.decode_energy"] and "choice" in tags["ela.method.accuracy"]
        assert set(m) <= METRIC_NAMES, set(m) - METRIC_NAMES  # one source of names, as for classification
        if name.startswith("gen-fp32"):
            assert m["generation_agreement_with_fp32"] == 1.0 and m["agreement_with_fp32"] == 1.0
    # Left padding done right: batch 1 and batch 8 generate the same greedy tokens in fp32.
    b1 = _artifact(tmp, runs["gen-fp32-b1-s0"], "generations.csv")
    b8 = _artifact(tmp, runs["gen-fp32-b8-s0"], "generations.csv")
    assert len(b1) == 48 and [r["token_ids"] for r in b1] == [r["token_ids"] for r in b8]
    assert all(len(r["token_ids"].split()) == NEW for r in b1)


@pytest.mark.slow
def test_a_later_job_of_the_process_takes_the_reference_passes_an_earlier_job_ran(tmp_path):
    common = [*GEN, "dataset.limit=8", "batch=4", f"task.max_new_tokens={NEW}", *QUICK, *FAKE_GPU]
    common += ["model.attn_implementation=sdpa_grouped"]  # ela's attention: every job runs an eager reference
    fp32 = measure(tmp_path / "fp32", *common, "precision=fp32")
    bf16 = measure(tmp_path / "bf16", *common, "precision=bf16")
    alone = measure(tmp_path / "alone", *common, "precision=bf16", "reuse_references=false")
    assert fp32.tags["ela.reference_reuse"] == "eager: fresh"
    assert bf16.tags["ela.reference_reuse"] == "fp32: kept(from gen-fp32-b4-s0), eager: fresh"
    assert alone.tags["ela.reference_reuse"] == "fp32: fresh, eager: fresh"
    # the kept fp32 pass gives what the job's own would have: the same agreement, choice and sequences alike
    for name in ("agreement_with_fp32", "generation_agreement_with_fp32", "generation_common_prefix_fp32",
                 "generation_agreement_with_eager"):  # fmt: skip
        assert bf16.metrics[name] == alone.metrics[name], name


@pytest.mark.slow
def test_the_analysis_draws_the_generative_fronts(sweep, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    tmp, _ = sweep
    out = tmp_path / "analysis"
    proc = subprocess.run(
        [sys.executable, "-m", "ela.analyze", f"tracking_uri=sqlite:///{tmp / 'mlflow.db'}", f"out={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "plots" / "pareto_tpot_token_energy.png").stat().st_size > 0
    assert (out / "plots" / "pareto_ttft_request_energy.png").stat().st_size > 0
    configs = list(csv.DictReader(io.StringIO((out / "configs.csv").read_text())))
    assert len(configs) == 4 and all(c["front_tpot_token_energy"] for c in configs)
    assert "J/token" in proc.stdout and "TPOT p50 ms" in proc.stdout


@pytest.mark.slow
def test_the_tiny_lm_scores_its_readme_accuracy_by_next_token_choice(tmp_path):
    """The defaults of task=generation on SST-2 reproduce the model's README: 0.7764 (677/872) in fp32."""
    proc = run_ela(tmp_path, *GEN, "batch=64", "task.max_new_tokens=2", *QUICK, multirun=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.data.metrics["num_samples"] == 872
    assert run.data.metrics["accuracy"] == pytest.approx(677 / 872, abs=1e-6)  # float32: one sample is 1e-3


def _refused(tmp_path, monkeypatch, *overrides: str) -> str:
    """The ElaError of a generation job with these overrides; the weights must not have been loaded."""

    def no_weights(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr("ela.job.generate.load_model", no_weights)
    with pytest.raises(ElaError) as err:
        measure(tmp_path, *GEN, *QUICK, "measure.energy_meter=none", "codecarbon.enabled=false", *overrides)
    return str(err.value)


def test_a_classifier_is_refused_for_generation_and_a_causal_lm_for_classification(tmp_path, monkeypatch):
    minilm = SHARED / "models" / "minilm-l6-sst2"
    assert "is a classifier" in _refused(tmp_path, monkeypatch, f"model.path={minilm}")
    with pytest.raises(ElaError, match="is a causal LM.*task=generation"):
        measure(tmp_path, "model=local", f"model.path={LM}", f"dataset.path={SST2}", "device=cpu")


def test_bad_generation_input_is_refused_before_the_weights_load(tmp_path, monkeypatch):
    words = _refused(
        tmp_path,
        monkeypatch,
        "task.label_words=[' xylophonic',' zebrafied']",
        "dataset.label_names=[xylophonic,zebrafied]",
    )
    assert "tokens for this tokenizer" in words and "one token per word" in words
    long = _refused(tmp_path, monkeypatch, "model.max_length=512", "task.max_new_tokens=250")
    assert "exceeds the model's context of 256 tokens" in long
    assert "above model.max_length=8" in _refused(tmp_path, monkeypatch, "model.max_length=8")
    data = tmp_path / "empty.tsv"
    data.write_text("sentence\tlabel\n \t0\nfine\t1\n")
    local = ["dataset=local", f"dataset.path={data}", "dataset.text_column=sentence"]
    assert "empty prompt text" in _refused(tmp_path, monkeypatch, *local)
    assert "needs a CUDA GPU" in _refused(tmp_path, monkeypatch, "engine=cudagraph")
    assert "needs engine=eager" in _refused(tmp_path, monkeypatch, "engine=compile", "task.stop_at_eos=true")
    ref = _refused(tmp_path, monkeypatch, "task.scoring=reference", "task.stop_at_eos=true")
    assert "holds integer labels" in ref  # SST-2's label column is 0/1, not a reference text
    assert "task.stop_at_eos" in _refused(tmp_path, monkeypatch, "task.scoring=reference")


def test_max_new_tokens_below_one_is_refused_when_composed():
    with pytest.raises(ElaError, match="task.max_new_tokens"):
        compose_job(*GEN, "task.max_new_tokens=0")
    with pytest.raises(ElaError, match=r"task.prompt.*\{text\}"):
        compose_job(*GEN, "task.prompt=no placeholder")


def test_ttft_and_tpot_come_from_the_step_stamps():
    # Two passes over batches of 2 and 1 requests; stamps give ms since each batch's first token.
    ttft = [[10.0, 20.0], [30.0, 40.0]]
    steps = [[[0.0, 5.0, 10.0], [0.0, 6.0, 12.0]], [[0.0, 7.0, 14.0], [0.0, 8.0, 16.0]]]
    m = generation_metrics(ttft, steps, [2, 1], [3, 2, 3], prompt_tokens=30, windows=[], prefill_windows=[],
                           idle_power_w=None)  # fmt: skip
    # Requests: TTFT 10, 10, 20 | 30, 30, 40; TPOT (last - first) / (n - 1): 5, 5, 6 | 7, 7, 8.
    assert m["ttft_ms_p50"] == pytest.approx(25.0)
    assert m["tpot_ms_p50"] == pytest.approx(6.5) and m["tpot_ms_p99"] == pytest.approx(7.95)
    assert m["output_tokens_mean"] == pytest.approx(8 / 3) and m["prompt_tokens_mean"] == 10


def test_step_clock_stamps_every_step_and_keeps_the_first_scores():
    import torch

    ticks = iter([1.0, 2.0, 4.0])
    clock = StepClock(lambda: None, clock=lambda: next(ticks), keep=[2, 0])
    for _ in range(3):
        clock(torch.zeros(1, 1), torch.arange(4.0).repeat(2, 1))
    assert clock.stamps == [1.0, 2.0, 4.0] and clock.first.tolist() == [[2.0, 0.0], [2.0, 0.0]]


def test_agreement_references_and_lengths():
    assert sequence_agreement([[1, 2, 3], [1, 2, 3]], [[1, 2, 3], [1, 9, 3]]) == (0.5, 2.0)
    assert reference_metrics(["The cat sat.", "a dog"], ["cat sat", "dog barked"]) == {
        "exact_match": 0.5,
        "token_f1": pytest.approx((1.0 + 2 / 3) / 2),
    }
    assert output_lengths([[5, 2, 0], [5, 6, 7]], eos_id=2, stop_at_eos=True) == [2, 3]
    assert output_lengths([[5, 2, 0]], eos_id=2, stop_at_eos=False) == [3]


def test_elas_decoding_loop_matches_generate_with_left_padding_and_eos_suppressed():
    """The static-cache loop (traced by dynamo, no inductor: fast) gives generate's greedy tokens exactly:
    left-padded prompts of different lengths, each alone or in one batch, EOS suppressed as min_new_tokens."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from ela.runtime.data import tokenize
    from ela.runtime.decode import StaticDecoder
    from ela.runtime.models import load_tokenizer

    tok = load_tokenizer(compose_job(*GEN).model, "generation")
    model = AutoModelForCausalLM.from_pretrained(LM).eval()
    texts = ["Review: a dull , lifeless film .\nSentiment:", "Review: great fun\nSentiment:",
             "Review: long , slow and in the end pointless , though the cast tries hard\nSentiment:"]  # fmt: skip
    together = tokenize(tok, texts, 3, 64, buckets=[32]).inputs[0]
    n = 5

    def generate(inputs, eos):
        cfg = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=eos,
                               pad_token_id=tok.pad_token_id)  # fmt: skip
        with torch.inference_mode():
            return model.generate(**inputs, generation_config=cfg)[:, inputs["input_ids"].shape[1] :]

    plain = generate(together, tok.eos_token_id)
    eos = int(plain[1, 0])  # make the second prompt's first greedy token "EOS": both must avoid it
    for eos_id, want in ((tok.eos_token_id, plain), (eos, generate(together, eos))):
        decoder = StaticDecoder(model, contextlib.nullcontext, n, eos_id, {"backend": "eager"})
        decoder.prepare(together)
        assert torch.equal(decoder(together), want)
        assert decoder.prefill(together).shape == (3, model.config.vocab_size)
    assert int(want[1, 0]) != eos
    alone = [tokenize(tok, [t], 1, 64, buckets=[32]).inputs[0] for t in texts]
    for i, inputs in enumerate(alone):
        decoder.prepare(inputs)
        assert decoder(inputs).tolist() == [want[i].tolist()]


def test_static_cache_under_bf16_autocast_holds_fp32_keys_and_bf16_values():
    """Under autocast RoPE leaves keys in fp32 while values are bf16: the cache holds each in its own dtype
    (transformers 5.17 allocated both as the keys' and failed), and decodes as generate does."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from ela.runtime.data import tokenize
    from ela.runtime.decode import StaticDecoder
    from ela.runtime.models import load_tokenizer

    tok = load_tokenizer(compose_job(*GEN).model, "generation")
    model = AutoModelForCausalLM.from_pretrained(LM).eval()
    inputs = tokenize(tok, ["Review: a dull , lifeless film .\nSentiment:", "Review: fun\nSentiment:"], 2, 64,
                      buckets=[32]).inputs[0]  # fmt: skip
    amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    cfg = GenerationConfig(max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.inference_mode(), amp():
        want = model.generate(**inputs, generation_config=cfg)[:, inputs["input_ids"].shape[1] :]
    decoder = StaticDecoder(model, amp, 4, tok.eos_token_id, {"backend": "eager"})
    decoder.prepare(inputs)
    layer = next(iter(decoder.shapes.values())).cache.layers[0]
    assert (layer.keys.dtype, layer.values.dtype) == (torch.float32, torch.bfloat16)
    assert torch.equal(decoder(inputs), want)


@pytest.mark.slow
def test_compiled_decoding_with_a_static_cache_matches_eager(tmp_path):
    """engine=compile: ela's static-cache loop compiled by inductor (setup timed), outputs equal to eager's."""
    proc = run_ela(tmp_path, *GEN, "engine=compile", "batch=8", "dataset.limit=16", "task.max_new_tokens=4", *QUICK,
                   multirun=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    m, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED", tags.get("ela.error")
    assert m["generation_agreement_with_eager"] == 1.0 and m["engine_setup_s"] > 0
    assert "static KV cache" in tags["ela.generation"] and tags["ela.engine"] == "compile(default)"


def test_the_checkpoints_generation_settings_play_no_part():
    """generate fills unset fields from generation_config.json: ela replaces it, and says what it dropped."""
    from transformers import AutoModelForCausalLM

    from ela.runtime import generation
    from ela.runtime.data import tokenize
    from ela.runtime.models import load_tokenizer

    job = compose_job(*GEN, "task.max_new_tokens=5")
    tok = load_tokenizer(job.model, "generation")
    batches = tokenize(tok, ["Review: a dull , lifeless film .\nSentiment:", "Review: great fun\nSentiment:"], 2, 64)
    outputs = []
    for penalty in (None, 5.0):
        model = AutoModelForCausalLM.from_pretrained(LM).eval()
        if penalty:
            model.generation_config.repetition_penalty = penalty
        dropped = generation.neutral_defaults(model, tok)
        assert dropped == ({"repetition_penalty": penalty} if penalty else {})
        gen, _, _ = generation.build(job.engine, model, contextlib.nullcontext, batches, job.task, tok, lambda: None)
        outputs.append(gen(batches.inputs[0]).tolist())
    assert outputs[0] == outputs[1]


@pytest.mark.slow
def test_an_encoder_and_a_decoder_on_one_split_compare_in_one_analysis(sweep, tmp_path):
    """A classifier sweep next to the generation sweep, analysed together: energy per correct prediction."""
    import subprocess
    import sys

    from conftest import LOCAL, REPO

    tmp, _ = sweep
    store = f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}"
    encoder = run_ela(tmp_path, *LOCAL, "precision=fp32", "batch=8", "dataset.limit=48", *FAKE_GPU, store)
    assert encoder.returncode == 0, encoder.stderr[-3000:]
    parents = [r.info.run_id for r in all_runs(tmp) if PARENT not in r.data.tags]
    assert len(parents) == 2
    out = tmp_path / "both"
    proc = subprocess.run(
        [sys.executable, "-m", "ela.analyze", store.replace("tracking.uri", "tracking_uri"),
         f"sweep=[{','.join(parents)}]", f"out={out}", "log_to_mlflow=false"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    configs = list(csv.DictReader(io.StringIO((out / "configs.csv").read_text())))
    assert len(configs) == 5 and all(float(c["energy_per_correct_j"]) > 0 for c in configs)
    assert {c["params.task.name"] for c in configs} == {"classification", "generation"}
    assert len({c["config"] for c in configs}) == 5  # labels tell the encoder from the decoder
    assert "Sweeps analysed together" in proc.stdout and "the fp32 accuracy of the same model and task" in proc.stdout


def _gqa_lm(out) -> str:
    """A random Llama with grouped-query attention (4 query heads on 2 key/value heads), the tiny LM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(LM)
    torch.manual_seed(0)
    ids = {k: getattr(tok, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **ids)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_grouped_attention_decodes_as_sdpa_does_without_copying_the_cache(tmp_path, monkeypatch):
    """sdpa_grouped: one-token steps of a GQA model read each key/value head once (no repeat_kv), and give
    sdpa's logits and greedy tokens, in generate and in ela's static-cache loop traced by dynamo."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.integrations import sdpa_attention

    from ela.runtime import attention
    from ela.runtime.data import tokenize
    from ela.runtime.decode import StaticDecoder
    from ela.runtime.models import load_tokenizer

    path = _gqa_lm(tmp_path / "gqa")
    tok = load_tokenizer(compose_job(*GEN).model, "generation")
    texts = ["Review: a dull , lifeless film .\nSentiment:", "Review: fun\nSentiment:"]
    inputs = tokenize(tok, texts, 2, 64, buckets=[32]).inputs[0]
    assert inputs["attention_mask"][1, 0] == 0  # left padding to mask
    attention.register(attention.GROUPED)
    sdpa = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
    grouped = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attention.GROUPED).eval()
    cfg = GenerationConfig(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id,
                           output_logits=True, return_dict_in_generate=True)  # fmt: skip
    copies = []
    real_repeat = sdpa_attention.repeat_kv
    monkeypatch.setattr(sdpa_attention, "repeat_kv", lambda x, n: copies.append(x.shape[2]) or real_repeat(x, n))
    with torch.inference_mode():
        want = sdpa.generate(**inputs, generation_config=cfg)
        copies.clear()
        got = grouped.generate(**inputs, generation_config=cfg)
    assert copies == [32] * 4  # keys and values of the prefill's two layers: no step copied the cache
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.logits, want.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    new = want.sequences[:, inputs["input_ids"].shape[1] :]
    decoder = StaticDecoder(grouped, contextlib.nullcontext, 5, None, {"backend": "eager"})
    decoder.prepare(inputs)
    assert torch.equal(decoder(inputs), new)
    torch._dynamo.reset()


@pytest.mark.parametrize("mask_kind", ["none", "bool shared", "bool per head", "additive"])
@pytest.mark.parametrize("heads", [(8, 2), (14, 2), (4, 4)])
def test_the_grouped_hook_matches_transformers_sdpa_hook(mask_kind, heads):
    """attention.grouped against sdpa_attention_forward on one-token queries and prefills: every mask form
    transformers passes, GQA and plain multi-head, scaling given or not; dropout and training go to sdpa's path."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from ela.runtime.attention import grouped

    (h, kv), b, s, d = heads, 3, 9, 16
    module = torch.nn.Module().eval()
    module.num_key_value_groups, module.is_causal = h // kv, True
    torch.manual_seed(0)
    k, v = torch.randn(b, kv, s, d), torch.randn(b, kv, s, d)
    keep = torch.ones(b, s, dtype=torch.bool)
    keep[1, :4] = False  # row 1 left-padded
    mask = {"none": None, "bool shared": keep[:, None, None], "bool per head": keep[:, None, None].expand(b, h, 1, s),
            "additive": torch.where(keep, 0.0, torch.finfo(torch.float32).min)[:, None, None]}[mask_kind]  # fmt: skip
    for length, kwargs in ((1, {}), (1, {"scaling": 0.3, "dropout": 0.0}), (1, {"dropout": 0.5})):
        q = torch.randn(b, h, length, d)
        got, _ = grouped(module, q, k, v, mask, **kwargs)
        if kwargs.get("dropout"):  # random: only its path is checked, by shape
            assert got.shape == (b, length, h, d)
            continue
        want, _ = sdpa_attention_forward(module, q, k, v, mask, **kwargs)
        assert got.is_contiguous()
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_a_grouped_attention_job_agrees_with_transformers_sdpa(tmp_path):
    """model.attn_implementation=sdpa_grouped through the CLI: the eager reference runs transformers' sdpa."""
    path = _gqa_lm(tmp_path / "gqa")
    overrides = [*GEN, f"model.path={path}", "model.attn_implementation=sdpa_grouped", "batch=4",
                 "dataset.limit=8", "task.max_new_tokens=4", *QUICK]  # fmt: skip
    proc = run_ela(tmp_path, *overrides, multirun=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED", run.data.tags.get("ela.error")
    assert run.data.tags["ela.attn_implementation"] == "sdpa_grouped"
    assert run.data.metrics["generation_agreement_with_eager"] == 1.0
