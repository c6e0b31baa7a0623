"""model.fuse_projections: q|k|v and gate|up as one matmul each, on the real tiny Llama and a GQA Qwen2 with biases."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import SHARED, all_runs, compose_job, run_ela
from test_generation import GEN, QUICK

from ela import ElaError
from ela.runtime.fuse import fuse_projections

LM = SHARED / "models" / "tiny-llama-sst2"


def _qwen2_gqa() -> torch.nn.Module:
    """A random Qwen2 (q/k/v with biases, 4 query heads on 2 key/value heads): the shape fusion must handle."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    return Qwen2ForCausalLM(config).eval()


def _tiny_llama() -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(LM, attn_implementation="sdpa").eval()


@pytest.mark.parametrize("make", [_tiny_llama, _qwen2_gqa], ids=["tiny-llama", "qwen2-gqa-bias"])
def test_fused_projections_give_transformers_outputs(make):
    """Same logits (fp32) and the same greedy tokens as the model it was made from, layers counted."""
    stock = make()
    fused = copy.deepcopy(stock)
    layers = stock.config.num_hidden_layers
    assert fuse_projections(fused) == {"qkv": layers, "gate_up": layers}
    assert not hasattr(fused.model.layers[0].mlp, "gate_proj")  # the separate weights are gone, not doubled
    ids = torch.tensor([[5, 9, 17, 33, 2, 8], [0, 0, 4, 11, 12, 40]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])  # left padding, as generation batches
    with torch.inference_mode():
        want, got = stock(input_ids=ids, attention_mask=mask).logits, fused(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        kw = {"attention_mask": mask, "max_new_tokens": 5, "min_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
        assert torch.equal(fused.generate(ids, **kw), stock.generate(ids, **kw))
        # inductor traces the hand-off between q_proj and k_proj/v_proj in one graph (no break)
        compiled = torch.compile(fused.forward, fullgraph=True, dynamic=False)
        torch.testing.assert_close(compiled(input_ids=ids, attention_mask=mask).logits, want, rtol=1e-4, atol=1e-4)


def test_projections_called_out_of_order_or_on_another_input_are_an_error():
    """k_proj on an input q_proj never saw (cross-attention) can't take q_proj's matmul: an error, not wrong keys."""
    model = _qwen2_gqa()
    fuse_projections(model)
    attn = model.model.layers[0].self_attn
    x = torch.randn(1, 3, 64)
    with pytest.raises(ElaError, match="did not follow q_proj on the same input"):
        attn.k_proj(x)
    attn.q_proj(x)
    with pytest.raises(ElaError, match="fuse_projections=false"):
        attn.k_proj(torch.randn(1, 3, 64))


def test_fusing_is_refused_where_it_does_nothing():
    """A classifier (task=classification) is refused at composition; a model with nothing to fuse at fusion."""
    with pytest.raises(ElaError, match=r"fuse_projections=true fuses a decoder.*task=classification: leave it false"):
        compose_job("model.fuse_projections=true")
    with pytest.raises(ElaError, match="has no q_proj/k_proj/v_proj"):
        fuse_projections(torch.nn.Sequential(torch.nn.Linear(4, 4)))


@pytest.mark.slow
def test_a_compiled_generation_job_with_fused_projections_matches_eager(tmp_path):
    """engine=compile model.fuse_projections=true: a real job, greedy outputs equal to transformers' eager ones."""
    proc = run_ela(tmp_path, *GEN, "engine=compile", "model.fuse_projections=true", "batch=8", "dataset.limit=16",
                   "task.max_new_tokens=4", *QUICK, multirun=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    m, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED", tags.get("ela.error")
    assert m["generation_agreement_with_eager"] == 1.0  # the eager reference ran on the unfused model
    assert tags["ela.fused_projections"] == "qkv in 4 layers, gate_up in 4 layers"
