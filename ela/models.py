"""Load tokenizer and classifier (local path or Hub ID), refuse untrained heads, map labels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ela import ElaError, attention
from ela.config import ModelConfig
from ela.hub import require_hub


@dataclass
class LoadedModel:
    tokenizer: object
    model: torch.nn.Module
    source: str  # resolved local directory or "hub:<id>"
    newly_initialized: list[str]  # weights transformers had to initialise (empty for a trained model)


def _looks_like_path(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~")) or Path(path).expanduser().exists()


def load_model(cfg: ModelConfig) -> LoadedModel:
    """Load tokenizer and fp32 model in eval mode on CPU; errors say how to fix them."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # we report newly initialised weights ourselves
    hf_logging.disable_progress_bar()
    local = _looks_like_path(cfg.path)
    if local:
        path = Path(cfg.path).expanduser()
        if not (path / "config.json").is_file():
            raise ElaError(
                f"model.path={cfg.path!r} is not a checkpoint directory (no config.json there); "
                "pass a folder saved with save_pretrained"
            )
        source, name = str(path.resolve()), str(path)
    else:
        source, name = f"hub:{cfg.path}", cfg.path
        require_hub("model.path", cfg.path, "model=local model.path=/path/to/checkpoint (or ELA_MODEL_PATH)")
    if cfg.attn_implementation in attention.NAMES:
        attention.register(cfg.attn_implementation)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=cfg.revision)
        extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name, revision=cfg.revision, dtype=torch.float32, output_loading_info=True, **extra
        )
    except (OSError, ValueError) as err:
        if local:
            raise ElaError(f"could not load the checkpoint in {source}: {err}") from err
        raise ElaError(
            f"could not load model {cfg.path!r} from the Hugging Face Hub: {err}\n"
            "Offline? Point ela at a local checkpoint: model=local model.path=/path/to/checkpoint "
            "(or export ELA_MODEL_PATH=/path/to/checkpoint and pass model=local)"
        ) from err
    if cfg.attn_implementation in attention.NAMES and tokenizer.padding_side != "right":
        raise ElaError(
            f"model.attn_implementation={cfg.attn_implementation} needs right padding (real tokens first); this "
            f"tokenizer pads on the {tokenizer.padding_side}: use model.attn_implementation=sdpa"
        )
    fresh = sorted(info.get("missing_keys") or [])
    if fresh and not cfg.allow_untrained_head:
        raise ElaError(
            f"model {cfg.path!r} has newly initialised weights ({', '.join(fresh[:6])}"
            f"{', ...' if len(fresh) > 6 else ''}): its classification head was never trained, so its "
            "accuracy would be chance. Use a fine-tuned checkpoint, or pass "
            "model.allow_untrained_head=true to measure it anyway (the run is tagged so)."
        )
    return LoadedModel(tokenizer=tokenizer, model=model.eval(), source=source, newly_initialized=fresh)


@contextlib.contextmanager
def stock_kernels(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside: transformers' sdpa attention in place of ela's padded_* kernels, so the references ela's
    engines and kernels are compared with (`agreement_with_eager`, `agreement_with_fp32`) are the model as
    transformers runs it; ela's kernels also never run in fp32 (Triton's tl.dot would use TF32 there)."""
    attn = model.config._attn_implementation
    if attn not in attention.NAMES:
        yield model
        return
    model.set_attn_implementation("sdpa")
    if model.config._attn_implementation != "sdpa":  # transformers only warns when it can't switch
        raise ElaError(f"could not switch {type(model).__name__} from {attn} to sdpa for the reference pass")
    try:
        yield model
    finally:
        model.set_attn_implementation(attn)


def label_map(model: torch.nn.Module, label_names: list[str] | None) -> list[int]:
    """For each dataset label id, the model's output index (matched by name where both have names)."""
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    if not label_names:
        return list(range(len(id2label)))
    by_name = {v.lower(): k for k, v in id2label.items()}
    generic = all(v == f"LABEL_{k}" for k, v in id2label.items())
    if generic:
        # The checkpoint carries no label names (LABEL_0, LABEL_1, ...): take dataset ids as-is.
        if len(id2label) != len(label_names):
            raise ElaError(
                f"the model has {len(id2label)} labels but the dataset has {len(label_names)}: {label_names}"
            )
        return list(range(len(label_names)))
    missing = [n for n in label_names if n.lower() not in by_name]
    if missing:
        raise ElaError(
            f"dataset labels {missing} are not among the model's labels {sorted(id2label.values())}; "
            "set dataset.label_names to the model's names, or null to use ids as they are"
        )
    return [by_name[n.lower()] for n in label_names]


def apply_precision(model: torch.nn.Module, weights_dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """Cast weights (pure half precision casts; autocast keeps fp32 weights) and move to the device."""
    return model.to(device=device, dtype=weights_dtype)
