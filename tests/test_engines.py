"""Execution engines on CPU: bucketing, length ordering, compile agrees with eager, cudagraph refused."""

import contextlib

import pytest
import torch
from conftest import LOCAL, MODEL, all_runs, compose_job, run_ela
from test_models import CFG
from transformers import AutoTokenizer

from ela import ElaError
from ela.config import EngineConfig
from ela.runtime.data import bucket_for, tokenize
from ela.runtime.engines import build
from ela.runtime.models import load_model


def test_bucket_choice():
    assert bucket_for(10, [16, 32, 64], 128) == 16
    assert bucket_for(16, [16, 32, 64], 128) == 16
    assert bucket_for(17, [64, 16, 32], 128) == 32  # unsorted buckets are fine
    assert bucket_for(100, [16, 32, 64], 128) == 128  # longer than every bucket: max_length
    assert bucket_for(10, None, 128) is None  # no buckets: pad to the batch's longest
    assert [bucket_for(n, 8, 60) for n in (1, 8, 9, 57, 60)] == [8, 8, 16, 60, 60]  # a step, up to max_length


def test_buckets_padding_fraction_and_length_order():
    tok = AutoTokenizer.from_pretrained(MODEL)
    texts = ["a b c d e f g h", "a", "a b", "a b c d"]  # 10, 3, 4, 6 tokens with [CLS]/[SEP]
    dynamic = tokenize(tok, texts, batch=2, max_length=64)
    assert [tuple(b["input_ids"].shape) for b in dynamic.inputs] == [(2, 10), (2, 6)]
    assert dynamic.padding_fraction == pytest.approx(1 - 23 / 32)
    bucketed = tokenize(tok, texts, batch=2, max_length=64, buckets=[8, 16])
    assert [tuple(b["input_ids"].shape) for b in bucketed.inputs] == [(2, 16), (2, 8)]
    assert [s[0][1:] for s in bucketed.shapes] == [(2, 8), (2, 16)]
    assert bucketed.padding_fraction == pytest.approx(1 - 23 / 48)
    stepped = tokenize(tok, texts, batch=2, max_length=64, buckets=4)  # engine.buckets=4: multiples of 4
    assert [tuple(b["input_ids"].shape) for b in stepped.inputs] == [(2, 12), (2, 8)]
    by_length = tokenize(tok, texts, batch=2, max_length=64, order="by_length")
    assert by_length.indices == [1, 2, 3, 0] and by_length.token_lengths == [3, 4, 6, 10]
    assert by_length.padding_fraction < dynamic.padding_fraction  # sorting removes padding


def test_cudagraph_on_cpu_is_refused():
    model = load_model(CFG).model
    batches = tokenize(AutoTokenizer.from_pretrained(MODEL), ["good"], 1, 16, [16])
    engine = EngineConfig(name="cudagraph", compile_mode=None, buckets=[16], fullgraph=True, freezing=False)
    with pytest.raises(ElaError, match="cudagraph captures CUDA graphs and needs a CUDA GPU"):
        build(engine, model, contextlib.nullcontext, batches, torch.device("cpu"), lambda: None)


@pytest.mark.slow  # a real multirun in a subprocess
def test_compile_on_cpu_agrees_with_eager_in_a_real_sweep_and_a_repetition_reuses_it(tmp_path):
    proc = run_ela(
        tmp_path, "engine=eager,compile", "seed=0,1", *LOCAL, "dataset.limit=16", "engine.buckets=[64]",
        "measure.repeats=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {r.info.run_name: r for r in all_runs(tmp_path)}
    eager, compiled, again = runs["fp32-b8-s0"], runs["fp32-b8-compile-s0"], runs["fp32-b8-compile-s1"]
    assert compiled.data.metrics["agreement_with_eager"] == 1.0
    assert compiled.data.metrics["engine_setup_s"] > 0 and eager.data.metrics["engine_setup_s"] == 0
    assert compiled.data.metrics["accuracy"] == eager.data.metrics["accuracy"]
    assert compiled.data.tags["ela.engine"] == "compile(default,freezing)"
    assert compiled.data.metrics["distinct_shapes"] == 1 and compiled.data.metrics["padding_fraction"] > 0.5
    # seed 1 ran after an eager job (interleaved), in the same process: it reused seed 0's compiled model
    assert compiled.data.tags["ela.engine_reuse"] == "fresh" and eager.data.tags["ela.engine_reuse"] == "none"
    assert again.data.tags["ela.engine_reuse"] == "kept(from fp32-b8-compile-s0: 1 of 1 shapes)"
    assert again.data.metrics["agreement_with_eager"] == 1.0
    assert again.data.metrics["accuracy"] == compiled.data.metrics["accuracy"]
    assert again.data.tags["ela.config_hash"] == compiled.data.tags["ela.config_hash"]


def test_a_kept_compiled_engine_serves_a_later_job_and_compiles_only_new_shapes(monkeypatch):
    from torch._dynamo.utils import counters

    from ela.runtime import kept

    texts = ["a gripping, funny film", "dull and far too long", "not bad at all", "fine"]
    tok = AutoTokenizer.from_pretrained(MODEL)
    common = [*LOCAL, "engine=compile", "engine.buckets=[16,32]", "engine.freezing=false"]
    first, later = compose_job(*common, "seed=0"), compose_job(*common, "seed=1")
    cpu, build_of = torch.device("cpu"), kept.build
    kept.clear()
    try:
        model = load_model(CFG).model
        b16 = tokenize(tok, texts, 4, 16, [16])
        forward, _, how = build_of(first, model, contextlib.nullcontext, b16, cpu, lambda: None)
        assert how == "fresh"
        graphs = counters["stats"]["unique_graphs"]
        again = load_model(CFG).model  # the later job loads its own model (for its references)
        forward2, _, how2 = build_of(later, again, contextlib.nullcontext, b16, cpu, lambda: None)
        assert how2 == "kept(from fp32-b8-compile-s0: 1 of 1 shapes)"
        assert counters["stats"]["unique_graphs"] == graphs  # nothing compiled again
        with torch.inference_mode():
            torch.testing.assert_close(forward2(b16.inputs[0]), again(**b16.inputs[0]).logits, atol=1e-4, rtol=1e-4)
        b32 = tokenize(tok, [t * 3 for t in texts], 4, 32, [16, 32])  # a batch shape the module hasn't seen
        *_, how3 = build_of(later, again, contextlib.nullcontext, b32, cpu, lambda: None)
        assert how3 == "kept(from fp32-b8-compile-s0: 0 of 1 shapes)"
        other = compose_job(*common, "seed=0", "precision=bf16")  # another precision: its own module
        *_, how4 = build_of(other, again, contextlib.nullcontext, b16, cpu, lambda: None)
        assert how4 == "fresh" and len(kept._KEPT) == 2
        monkeypatch.setattr(kept, "BUDGET_SHARE", 1e-12)  # no room: the kept ones go, the new one is built
        *_, how5 = build_of(
            compose_job(*common, "engine.buckets=[16]"), again, contextlib.nullcontext, b16, cpu, lambda: None
        )
        assert how5 == "fresh" and len(kept._KEPT) == 1
        no = compose_job(*common, "reuse_engines=false")
        *_, how6 = build_of(no, again, contextlib.nullcontext, b16, cpu, lambda: None)
        assert how6 == "none" and len(kept._KEPT) == 1
    finally:
        kept.clear()
        torch._dynamo.reset()


def test_a_reference_pass_is_kept_for_the_same_model_task_numerics_and_inputs():
    from ela.runtime import kept

    tok, cpu = AutoTokenizer.from_pretrained(MODEL), torch.device("cpu")
    texts = ["a gripping, funny film", "dull and far too long", "not bad at all"]
    a, b = tokenize(tok, texts, 2, 16), tokenize(tok, texts[::-1], 2, 16)
    fp32, bf16 = compose_job(*LOCAL, "precision=fp32"), compose_job(*LOCAL, "precision=bf16")
    compiled = compose_job(*LOCAL, "precision=bf16", "engine=compile", "seed=1")  # engine and seed: not in the key
    computed: list[str] = []

    def run(job, kind, batches, value):
        return kept.reference(job, kind, cpu, batches, lambda: computed.append(value) or value)

    assert run(fp32, "eager", a, "fp32 outputs") == ("fp32 outputs", "fresh")
    # an fp32 job's eager pass is every precision's fp32 reference on the same inputs (same weights, no autocast)
    assert run(bf16, "fp32", a, "again") == ("fp32 outputs", "kept(from fp32-b8-s0)")
    assert run(bf16, "eager", a, "bf16 outputs") == ("bf16 outputs", "fresh")  # bf16's own numerics
    assert run(compiled, "eager", a, "again") == ("bf16 outputs", "kept(from bf16-b8-s0)")
    assert run(compiled, "eager", b, "other inputs") == ("other inputs", "fresh")  # other input tensors
    other_model = compose_job(*LOCAL, "precision=bf16", "model.max_length=32")
    assert run(other_model, "fp32", a, "other model") == ("other model", "fresh")
    off = compose_job(*LOCAL, "precision=bf16", "reuse_references=false")
    assert run(off, "fp32", a, "off") == ("off", "fresh") and run(off, "fp32", a, "off 2") == ("off 2", "fresh")
    untrained = [compose_job(*LOCAL, "model.allow_untrained_head=true", f"seed={s}") for s in (0, 1)]
    assert kept.key_of(untrained[0], cpu) != kept.key_of(untrained[1], cpu)  # each seed drew its own head's weights
    assert kept.key_of(bf16, cpu) == kept.key_of(compose_job(*LOCAL, "precision=bf16", "seed=1"), cpu)
    assert [run(job, "fp32", a, f"head {job.seed}") for job in untrained] == [("head 0", "fresh"), ("head 1", "fresh")]
    assert computed == [
        "fp32 outputs",
        "bf16 outputs",
        "other inputs",
        "other model",
        "off",
        "off 2",
        "head 0",
        "head 1",
    ]


def test_frozen_compile_on_cpu_gives_eager_logits():
    model = load_model(CFG).model
    texts = ["a gripping, funny film", "dull and far too long", "not bad at all"]
    batches = tokenize(AutoTokenizer.from_pretrained(MODEL), texts, 3, 16, [16])
    engine = EngineConfig(name="compile", compile_mode="default", buckets=[16], fullgraph=True, freezing=True)
    forward, setup_s = build(engine, model, contextlib.nullcontext, batches, torch.device("cpu"), lambda: None)
    with torch.inference_mode():
        eager = model(**batches.inputs[0]).logits
    assert setup_s > 0
    torch.testing.assert_close(forward(batches.inputs[0]), eager, atol=1e-4, rtol=1e-4)
    torch._dynamo.reset()


def test_coordinate_descent_tuning_is_on_while_the_engine_compiles_and_labelled():
    from ela.job.score import engine_label
    from ela.runtime.engines import inductor_options

    engine = EngineConfig(name="compile", compile_mode="default", buckets=None, fullgraph=True, freezing=False,
                          coordinate_descent=True)  # fmt: skip
    before = torch._inductor.config.coordinate_descent_tuning
    with inductor_options(engine):
        assert torch._inductor.config.coordinate_descent_tuning
    assert torch._inductor.config.coordinate_descent_tuning == before
    assert engine_label(engine) == "compile(default,coordinate-descent)"
    with pytest.raises(ElaError, match="engine.coordinate_descent"):
        EngineConfig(name="compile", compile_mode="default", buckets=None, fullgraph=True, freezing=False,
                     coordinate_descent="yes")  # fmt: skip


def test_a_stop_request_during_engine_setup_ends_it_at_the_next_shape(monkeypatch):
    import signal

    from ela import interrupt
    from ela.runtime.engines import compile_shapes

    engine = EngineConfig(name="compile", compile_mode="default", buckets=None, fullgraph=True, freezing=False)
    calls = []

    def forward(inputs):  # stands in for a compiled model: the first call compiles its shape
        calls.append(inputs)
        if len(calls) == 2:  # SIGTERM lands while the first shape compiles
            monkeypatch.setattr(interrupt, "_received", signal.SIGTERM)

    with pytest.raises(interrupt.Interrupted):
        compile_shapes(forward, [{"x": 1}, {"x": 2}, {"x": 3}], engine)
    assert calls == [{"x": 1}, {"x": 1}]  # the second and third shapes were never compiled
