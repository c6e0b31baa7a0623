"""Give each concurrently running job a GPU of its own on a multi-GPU host, whatever the launcher.

A job claims a GPU by taking an exclusive lock on a per-GPU lock file (keyed by the GPU's UUID)
for its whole run; the lock dies with the process, so a crashed job frees its GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_DIR = Path(os.environ.get("ELA_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "ela-gpu-locks"))


@contextlib.contextmanager
def claim(
    keys: list[str], lock_dir: Path = LOCK_DIR, poll_s: float = 1.0, timeout_s: float | None = None
) -> Iterator[int]:
    """Block until one of keys is free, hold it for the with-block, and yield its position in keys."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    while True:
        for i, key in enumerate(keys):
            handle = open(lock_dir / f"{key}.lock", "w")  # noqa: SIM115 - held for the whole job
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                yield i
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"no free GPU among {keys} after {timeout_s:.0f} s")
        time.sleep(poll_s)


@contextlib.contextmanager
def claim_gpu(gpus: str | list[int] | None) -> Iterator[int | None]:
    """gpus=None: no claim (CUDA_VISIBLE_DEVICES decides); `all` or a list of CUDA indices: claim one."""
    if gpus is None:
        yield None
        return
    import torch

    indices = list(range(torch.cuda.device_count())) if gpus == "all" else list(gpus)
    uuids = [str(torch.cuda.get_device_properties(i).uuid) for i in indices]
    with claim(uuids) as position:
        yield indices[position]
