"""Signals end a job at the next safe point, under every launcher.

A handler that raises wherever the signal lands can raise inside a weakref or gc callback, where
Python swallows the exception ("Exception ignored in ...") and the sweep runs on. So the handler
only records the signal; ela's own code calls `check()` between phases, batches and passes, and
raises `Interrupted` there. The process that runs the sweep also leaves a stop file in the sweep
folder (so jobs in other processes don't start) and forwards the signal to its child processes
that handle it (launcher workers running a job), so their runs close KILLED too.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)  # SIGUSR2: Slurm's warning before a time limit
STOP_FILE = "ela_stop"

_received: int | None = None
_sweep_dir: Path | None = None  # set in the process that runs the sweep (it owns the stop file)
_adopted: set[int] = set()  # job processes started by a launcher in this process that are not its children


class Interrupted(KeyboardInterrupt):
    """Raised at a safe point after SIGTERM, SIGINT or SIGUSR2."""


def _handle(signum: int, frame: object) -> None:
    global _received
    if signum == signal.SIGINT and _received is not None:
        raise KeyboardInterrupt  # a second Ctrl-C: stop now, wherever we are
    _received = signum
    if _sweep_dir is not None:
        (_sweep_dir / STOP_FILE).write_text(f"{signal.Signals(signum).name}\n")
        forward(signum)


def install(sweep_dir: Path | None = None) -> None:
    """Record SIGTERM/SIGINT/SIGUSR2 instead of dying mid-write; with sweep_dir, this process runs the sweep."""
    global _sweep_dir
    if sweep_dir is not None:
        _sweep_dir = sweep_dir
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        for sig in SIGNALS:
            signal.signal(sig, _handle)


def is_sweep_process() -> bool:
    """True in the process that runs the sweep (Hydra's own), False in a launcher's worker."""
    return _sweep_dir is not None


def received() -> int | None:
    """The signal that asked this process to stop, if any."""
    return _received


def signal_name(signum: int | None) -> str:
    """SIGTERM, SIGINT, ... for a message."""
    return signal.Signals(signum).name if signum else "signal"


def check() -> None:
    """Raise Interrupted if a stop was asked for (call between units of work, never inside a timed batch)."""
    if _received is not None:
        raise Interrupted(signal_name(_received))


def clear() -> None:
    """Forget a signal once its job is closed, so a reused launcher worker can run the next job."""
    global _received
    _received = None


def sweep_stopped(sweep_dir: str | os.PathLike | None) -> bool:
    """True once the sweep's process was asked to stop: jobs not yet started must not start."""
    return sweep_dir is not None and (Path(sweep_dir) / STOP_FILE).exists()


def exit_code(signum: int | None) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + (signum or signal.SIGTERM)


def adopt(pid: int) -> None:
    """Forward signals to this job process too (ela's fork launcher: its jobs are the forkserver's children)."""
    _adopted.add(pid)


def release(pid: int) -> None:
    """Stop forwarding signals to a job process that has ended."""
    _adopted.discard(pid)


def forward(signum: int) -> None:
    """Send the signal to this process's children that catch it (workers running ela jobs), and to adopted jobs.

    Children that don't catch it (an idle launcher worker, a compiler pool) are left alone: they would
    just die, and a dead worker makes some launchers abort the jobs still closing their runs.
    """
    try:
        import psutil
    except ImportError:  # psutil comes with CodeCarbon; without it, children get no forwarded signal
        return
    procs = {p.pid: p for p in psutil.Process().children()}
    for pid in set(_adopted) - set(procs):
        try:
            procs[pid] = psutil.Process(pid)
        except psutil.Error:
            continue
    for proc in procs.values():
        try:
            if _catches(proc.pid, signum):
                proc.send_signal(signum)
        except psutil.Error:
            continue


def _catches(pid: int, signum: int) -> bool:
    """Whether a process has a handler for signum (Linux: SigCgt in /proc/<pid>/status); True if unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return True
