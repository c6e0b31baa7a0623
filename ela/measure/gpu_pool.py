"""Give each concurrently running job a GPU of its own on a multi-GPU host, whatever the launcher.

A job claims a GPU by taking an exclusive lock on a per-GPU lock file (keyed by the GPU's UUID)
for its whole run; the lock dies with the process, so a crashed job frees its GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ela import ElaError, interrupt
from ela.measure.nvml import cuda_uuid, host_uuids

_pinned: str | None = None  # the GPU this process was pinned to by its first claim
LOCK_DIR = Path(os.environ.get("ELA_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "ela-gpu-locks"))


@contextlib.contextmanager
def claim(
    keys: list[str],
    lock_dir: Path = LOCK_DIR,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    on_wait: Callable[[list[str]], None] | None = None,
    owner: str = "",
) -> Iterator[int]:
    """Block until one of keys is free, hold it for the with-block, and yield its position in keys.

    The lock file says who holds it (pid, host, owner: the run's name). on_wait is called once, when every
    key is taken, with what the holders' lock files say.
    """
    if not keys:
        raise ElaError("nothing to claim: this job may use no GPU (see gpus= and CUDA_VISIBLE_DEVICES)")
    lock_dir.mkdir(parents=True, exist_ok=True)
    t0, told = time.monotonic(), False
    while True:
        for i, key in enumerate(keys):
            # O_RDWR without O_TRUNC: a waiter must not erase the holder's pid before it has the lock
            fd = os.open(lock_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} {owner}".strip().encode() + b"\n")
                yield i
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if on_wait is not None and not told:
            on_wait([holder(lock_dir / f"{key}.lock") for key in keys])
            told = True
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"no free GPU among {keys} after {timeout_s:.0f} s")
        interrupt.check()
        time.sleep(poll_s)


def holder(path: Path) -> str:
    """Who holds a lock file, as it says (`pid host`), or `unknown`."""
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def other_holders(lock_dir: Path = LOCK_DIR, mine: str | None = None) -> int:
    """How many lock files under lock_dir other processes hold right now (other ela jobs on this host).

    A lock this process holds (its pid is in the file) is not another job: flock would report it as held.
    """
    count, me = 0, f"pid {os.getpid()} "
    for path in lock_dir.glob("*.lock") if lock_dir.is_dir() else []:
        if mine is not None and path.name == f"{mine}.lock":
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            count += not holder(path).startswith(me)
        finally:
            os.close(fd)
    return count


def visible_uuids(env: str | None, host_uuids: list[str]) -> list[str]:
    """The GPUs this process may use, in CUDA order: CUDA_VISIBLE_DEVICES (indices or UUIDs) over NVML's list.

    ela sets CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA index i is NVML index i.
    """
    if env is None:
        return list(host_uuids)
    out = []
    for item in (x.strip() for x in env.split(",")):
        if not item:
            break  # CUDA stops at the first empty or invalid entry
        if item.isdigit():
            if int(item) >= len(host_uuids):
                break
            out.append(host_uuids[int(item)])
        else:
            match = [u for u in host_uuids if u.startswith(item if item.startswith("GPU-") else f"GPU-{item}")]
            if len(match) != 1:
                break
            out.append(match[0])
    return out


def choose(gpus: str | list[int], visible: list[str]) -> list[str]:
    """UUIDs a job may claim: all visible GPUs, or those at the given CUDA indices."""
    if not visible:
        raise ElaError(
            f"gpus={gpus}: no GPU is visible to this job (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}). With submitit's local executor, gpus_per_node "
            "decides what jobs see: use hydra/launcher=submitit_local_gpus, which gives them every GPU"
        )
    if gpus == "all":
        return visible
    missing = [i for i in gpus if not 0 <= i < len(visible)]
    if missing:
        raise ElaError(f"gpus={list(gpus)}: no CUDA GPU {missing} here ({len(visible)} visible); use gpus=all")
    return [visible[i] for i in gpus]


def visible_gpu_count() -> int:
    """GPUs this process may use, counted through NVML without starting CUDA; 0 where there is no NVML."""
    try:
        return len(_visible())
    except ElaError:
        return 0


def _visible() -> list[str]:
    return visible_uuids(os.environ.get("CUDA_VISIBLE_DEVICES"), host_uuids())


def _cuda_index(uuid: str) -> int:
    import torch

    for i in range(torch.cuda.device_count()):
        if cuda_uuid(i) == uuid:
            return i
    raise ElaError(
        f"the GPU this job claimed ({uuid}) is not the one CUDA gives it: CUDA started in this process before "
        "ela could pin it (CUDA_VISIBLE_DEVICES). Use a launcher that runs jobs in their own processes, "
        "or gpus=null with CUDA_VISIBLE_DEVICES set per job"
    )


@contextlib.contextmanager
def claim_gpu(
    gpus: str | list[int] | None, on_wait: Callable[[list[str]], None] | None = None, owner: str = ""
) -> Iterator[int | None]:
    """Claim a free GPU of `gpus` for the with-block and yield its CUDA index (None: no claim).

    gpus=None: CUDA_VISIBLE_DEVICES decides; `all` or CUDA indices: one of these GPUs, held for the job.

    The first claim in a process happens before CUDA starts (GPUs are listed through NVML) and sets
    CUDA_VISIBLE_DEVICES to that GPU alone, so nothing the job does can touch another card; later jobs
    in the same process (a reused launcher worker) can only claim that GPU again.
    """
    global _pinned
    if gpus is None:
        yield None
        return
    import torch

    keys = [_pinned] if _pinned is not None else choose(gpus, _visible())
    with claim(keys, on_wait=on_wait, owner=owner) as position:
        uuid = keys[position]
        if _pinned is None and not torch.cuda.is_initialized():
            os.environ["CUDA_VISIBLE_DEVICES"] = uuid  # read when CUDA starts, just after this
            _pinned = uuid
        yield _cuda_index(uuid)


def pinned() -> str | None:
    """The GPU this process is pinned to through CUDA_VISIBLE_DEVICES, if any."""
    return _pinned
