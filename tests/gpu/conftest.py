"""tests/gpu: the GPU paths on a real card. Skipped where torch sees no CUDA GPU (CI, the dev VM).

On the GPU machine: `source .device/setup.sh && python -m pytest tests/gpu -q` (no trained model needed:
a small random-weight classifier is built here; SST-2 comes from $ELA_DEVICE_DATA or ../shared).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    """Mark every test here `gpu`, and skip them all without a CUDA GPU."""
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the GPU machine: see tests/gpu/conftest.py)")
    for item in items:
        if "tests/gpu/" in str(item.fspath):
            item.add_marker(pytest.mark.gpu)
            if not torch.cuda.is_available():
                item.add_marker(skip)


@pytest.fixture(scope="session")
def sst2() -> Path:
    """The SST-2 folder: the device kit's copy on the GPU machine, else ../shared."""
    return Path(os.environ.get("ELA_DEVICE_DATA", REPO.parent / "shared" / "data" / "sst2"))


@pytest.fixture(scope="session")
def small_model(tmp_path_factory, sst2) -> Path:
    """A RoBERTa-shaped classifier with random weights (2 layers): timing and plumbing only, never quality."""
    from transformers import BertTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    out = tmp_path_factory.mktemp("model")
    tokenizer_dir = REPO / ".device" / "tokenizer"
    if not tokenizer_dir.is_dir():
        tokenizer_dir = REPO.parent / "shared" / "models" / "minilm-l6-sst2"
    tok = BertTokenizerFast.from_pretrained(tokenizer_dir)
    cfg = RobertaConfig(
        vocab_size=tok.vocab_size, hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
        max_position_embeddings=514, pad_token_id=tok.pad_token_id, num_labels=2,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    RobertaForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
