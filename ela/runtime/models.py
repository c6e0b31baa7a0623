"""Load tokenizer and model (local path or Hub ID) for the job's task, refuse untrained weights, map labels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ela import ElaError
from ela.runtime import attention
from ela.runtime.hub import require_hub

if TYPE_CHECKING:  # config imports this module's choices: no import of config at run time
    from ela.config import ModelConfig


@dataclass
class LoadedModel:
    """A tokenizer and model, where they came from, and the weights transformers had to initialise."""

    tokenizer: object
    model: torch.nn.Module
    source: str  # resolved local directory or "hub:<id>"
    newly_initialized: list[str]  # weights transformers had to initialise (empty for a trained model)


def _looks_like_path(path: str) -> bool:
    """A filesystem path (absolute, ./, ../, ~, or any relative path that exists), not a Hub ID."""
    return path.startswith(("/", "./", "../", "~")) or Path(path).expanduser().exists()


def resolve(cfg: ModelConfig) -> tuple[bool, str, str]:
    """(local?, source for tags, name for from_pretrained); a missing folder or unusable Hub is an ElaError."""
    if _looks_like_path(cfg.path):
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise ElaError(
                f"model.path={cfg.path!r} does not exist; pass a checkpoint folder saved with save_pretrained"
            )
        if not (path / "config.json").is_file():
            raise ElaError(
                f"model.path={cfg.path!r} is not a checkpoint directory (no config.json there); "
                "pass a folder saved with save_pretrained"
            )
        return True, str(path.resolve()), str(path)
    require_hub(
        "model.path",
        cfg.path,
        f"model=local model.path=/path/to/checkpoint (or ELA_MODEL_PATH); no local folder {cfg.path!r} exists here",
    )
    return False, f"hub:{cfg.path}", cfg.path


def model_config(cfg: ModelConfig):
    """The checkpoint's config.json alone (no weights): labels, architecture and context are checked from it."""
    from transformers import AutoConfig

    local, source, name = resolve(cfg)
    try:
        return AutoConfig.from_pretrained(name, revision=cfg.revision)
    except (OSError, ValueError) as err:
        raise _load_error(cfg, local, source, err) from err


def import_model_code(cfg: ModelConfig, task: str = "classification") -> None:
    """Import the checkpoint's transformers model and tokenizer code, no weights (seconds in a new process).

    A GPU job does this before it waits for its GPU, so a launcher's process per job pays its imports beside
    the job measuring ahead of it, not inside its own claim. An architecture transformers lacks is left for
    the load to refuse with its own message.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    )

    mapping = MODEL_FOR_CAUSAL_LM_MAPPING if task == "generation" else MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING
    with contextlib.suppress(KeyError):
        mapping[type(model_config(cfg))]  # looking a class up imports its modeling module
    _PREPARED.clear()  # never a tokenizer of an earlier job's
    _PREPARED[(cfg, task)] = load_tokenizer(cfg, task)  # the job's load takes it rather than reading it again


_PREPARED: dict[tuple[ModelConfig, str], object] = {}  # import_model_code's tokenizer, handed to one load only


def model_labels(cfg: ModelConfig) -> dict[int, str]:
    """The checkpoint's id2label from its config alone (no weights), so labels are checked before loading."""
    return {int(k): str(v) for k, v in model_config(cfg).id2label.items()}


def check_task(cfg: ModelConfig, task: str) -> None:
    """Refuse a checkpoint built for the other task (from its config's architectures), before any weights load."""
    archs = list(getattr(model_config(cfg), "architectures", None) or [])
    causal = bool(archs) and all(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    classifier = any(a.endswith("ForSequenceClassification") for a in archs)
    if task == "generation" and classifier:
        raise ElaError(
            f"model {cfg.path!r} is a classifier ({', '.join(archs)}): task=generation needs a causal LM "
            "(…ForCausalLM); use task=classification, or a decoder checkpoint"
        )
    if task == "classification" and causal:
        raise ElaError(
            f"model {cfg.path!r} is a causal LM ({', '.join(archs)}): task=classification needs a fine-tuned "
            "classifier; to score a decoder on a labelled dataset use task=generation (next-token choice)"
        )


def _load_error(cfg: ModelConfig, local: bool, source: str, err: Exception) -> ElaError:
    if local:
        return ElaError(f"could not load the checkpoint in {source}: {err}")
    return ElaError(
        f"could not load model {cfg.path!r} from the Hugging Face Hub: {err}\n"
        "Offline? Point ela at a local checkpoint: model=local model.path=/path/to/checkpoint "
        "(or export ELA_MODEL_PATH=/path/to/checkpoint and pass model=local)"
    )


def load_tokenizer(cfg: ModelConfig, task: str = "classification"):
    """The checkpoint's tokenizer; for generation padding on the left (prompts end together) with a pad token."""
    from transformers import AutoTokenizer

    if (prepared := _PREPARED.pop((cfg, task), None)) is not None:
        return prepared
    local, source, name = resolve(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=cfg.revision)
    except (OSError, ValueError) as err:
        raise _load_error(cfg, local, source, err) from err
    if task == "generation":
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:  # e.g. Llama 3: padding is masked out, so any id will do; EOS is usual
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(cfg: ModelConfig, task: str = "classification", tokenizer=None) -> LoadedModel:
    """Load tokenizer (unless given) and fp32 model for the task in eval mode on CPU; errors say how to fix them."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # we report newly initialised weights ourselves
    hf_logging.disable_progress_bar()
    local, source, name = resolve(cfg)
    if cfg.attn_implementation in attention.NAMES:
        attention.register(cfg.attn_implementation)
    tokenizer = load_tokenizer(cfg, task) if tokenizer is None else tokenizer
    try:
        extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
        auto = AutoModelForCausalLM if task == "generation" else AutoModelForSequenceClassification
        model, info = auto.from_pretrained(
            name, revision=cfg.revision, dtype=torch.float32, output_loading_info=True, **extra
        )
    except (OSError, ValueError) as err:
        raise _load_error(cfg, local, source, err) from err
    if cfg.attn_implementation in attention.PADDED and tokenizer.padding_side != "right":
        raise ElaError(
            f"model.attn_implementation={cfg.attn_implementation} needs right padding (real tokens first); this "
            f"tokenizer pads on the {tokenizer.padding_side}: use model.attn_implementation=sdpa"
        )
    fresh = sorted(info.get("missing_keys") or [])
    if fresh and not cfg.allow_untrained_head:
        what = "they were" if task == "generation" else "its classification head was"
        raise ElaError(
            f"model {cfg.path!r} has newly initialised weights ({', '.join(fresh[:6])}"
            f"{', ...' if len(fresh) > 6 else ''}): {what} never trained, so its accuracy would be chance. "
            "Use a trained checkpoint, or pass model.allow_untrained_head=true to measure it anyway (the run is "
            "tagged so)."
        )
    return LoadedModel(tokenizer=tokenizer, model=model.eval(), source=source, newly_initialized=fresh)


@contextlib.contextmanager
def stock_kernels(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside: transformers' sdpa attention in place of ela's own (padded_*, sdpa_grouped).

    So the references ela's engines and kernels are compared with (`agreement_with_eager`,
    `agreement_with_fp32`) are the model as transformers runs it; ela's kernels also never run in fp32
    (Triton's tl.dot would use TF32 there).
    """
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


def apply_precision(model: torch.nn.Module, weights_dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """Cast weights (pure half precision casts; autocast keeps fp32 weights) and move to the device."""
    return model.to(device=device, dtype=weights_dtype)
