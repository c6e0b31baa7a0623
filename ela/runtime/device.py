"""Pick the device and apply a precision honestly: TF32 flags, autocast, refusals before any work."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from ela import ElaError

if TYPE_CHECKING:  # config imports this module's choices: no import of config at run time
    from ela.config import PrecisionConfig

DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
AUTOCAST_DTYPES = (None, "float16", "bfloat16")
DEVICES = ("auto", "cuda", "cpu")
THREADS_ENV = "ELA_LAUNCH_THREADS"  # `host:n`: torch's CPU threads in the process that launched the sweep
Autocast = Callable[[], contextlib.AbstractContextManager]  # a precision's autocast context, made per call


def resolve_device(requested: str, index: int | None = None) -> torch.device:
    """`auto` -> cuda if available else cpu; `cuda` without a GPU is an error, not a fallback.

    index: the CUDA device a job claimed (gpus=...), made current so nothing lands elsewhere.
    """
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ElaError("device=cuda but torch sees no CUDA GPU; use device=cpu or device=auto")
    if requested == "cuda" and index is not None:
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device(requested)


def note_launch_threads() -> None:
    """Record this (the sweep's) process's torch CPU threads for the job processes its launcher starts."""
    os.environ[THREADS_ENV] = f"{socket.gethostname()}:{torch.get_num_threads()}"


def launch_threads() -> None:
    """Give a CPU job the torch threads of the process that launched the sweep (same host).

    joblib's workers start with OMP_NUM_THREADS = cores / n_jobs, so a CPU job there would compute with half
    the cores (2 workers) of the same job under the basic launcher, though ela runs CPU jobs one at a time per
    host. A user's own OMP_NUM_THREADS is kept: it set the launching process's count too.
    """
    host, _, n = os.environ.get(THREADS_ENV, "").partition(":")
    if host == socket.gethostname() and n.isdigit():
        wanted = min(int(n), _usable_cores())
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)


def _usable_cores() -> int:
    """The cores this process may run on (its affinity on Linux; every core where the OS has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):  # Linux only: macOS and Windows have none
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def require_sm80(device: torch.device, problem: str) -> None:
    """Raise ElaError(problem, `{card}` filled in with the GPU's name) if the GPU is older than sm_80 (Ampere)."""
    if torch.cuda.get_device_capability(device) < (8, 0):
        raise ElaError(problem.format(card=torch.cuda.get_device_name(device)))


def require_half_cuda(what: str, precision: PrecisionConfig, device: torch.device, fix: str) -> None:
    """Refuse a half-precision CUDA kernel (`what`) on CPU, with fp32 activations or before sm_80, naming `fix`."""
    if device.type != "cuda":
        raise ElaError(f"{what} runs a CUDA kernel; this job runs on {device.type}: {fix}")
    if not {precision.weights_dtype, precision.autocast_dtype} & {"float16", "bfloat16"}:
        raise ElaError(
            f"{what} needs fp16/bf16 activations; precision={precision.name} computes in fp32: "
            f"pick a half precision or {fix}"
        )
    require_sm80(device, f"{what}: {{card}} is older than sm_80: {fix}")


def check_precision(precision: PrecisionConfig, device: torch.device) -> None:
    """Refuse a precision the device can't run as asked (never substitute another one)."""
    dtypes = {precision.weights_dtype, precision.autocast_dtype} - {None, "float32"}
    if precision.tf32:
        if device.type != "cuda":
            raise ElaError(
                f"precision={precision.name} needs TF32 tensor cores, which exist only on CUDA GPUs "
                f"(Ampere or newer); this job runs on {device.type}. Use precision=fp32 or device=cuda."
            )
        require_sm80(device, f"precision={precision.name}: {{card}} has no TF32 (needs sm_80+)")
    if device.type == "cuda" and "bfloat16" in dtypes and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ElaError(
            f"precision={precision.name}: {torch.cuda.get_device_name(device)} has no native bfloat16; "
            "use fp16 or fp32 instead"
        )
    if precision.linear is not None:
        from ela.runtime import fp8

        fp8.probe(device)
    # Probe the exact setting on a tiny matmul: an unsupported dtype/device pair fails here, clearly.
    try:
        with autocast(precision, device):
            x = torch.ones(2, 2, device=device, dtype=DTYPE[precision.weights_dtype])
            (x @ x).sum().item()
    except RuntimeError as err:
        raise ElaError(f"precision={precision.name} is not supported on {device}: {err}") from err


def set_tf32(enabled: bool) -> None:
    """Set TF32 for matmuls and cuDNN explicitly (fp32 means IEEE fp32, never TF32 by accident)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def tf32_state() -> str:
    """The TF32 flags as torch reports them, for a tag."""
    return f"matmul={torch.backends.cuda.matmul.allow_tf32},cudnn={torch.backends.cudnn.allow_tf32}"


def autocast(precision: PrecisionConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for this precision (a no-op when it has none)."""
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPE[precision.autocast_dtype])


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for all queued work on the device (no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@contextlib.contextmanager
def clean_device(device: torch.device) -> Iterator[None]:
    """Run a job from default TF32/autocast state and free its GPU memory afterwards."""
    set_tf32(False)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        set_tf32(False)
        if device.type == "cuda":
            torch.cuda.empty_cache()
