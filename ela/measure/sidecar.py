"""Background samplers in a process of their own, so they never take the launching thread's interpreter lock.

At batch 1 a GPU job is launch-bound: one Python thread queues every kernel, and whenever another thread of
that process holds the GIL nothing is queued. As threads of the job's process, the power trace and
CodeCarbon's tracker took 0.2-0.5% of that thread's time in pauses over 50 us on an H100 host, and none from a
process of their own (benchmarks/observer.py); zeus's `PowerMonitor` also polls from a separate process.
`Sidecar(make, *args)` builds `make(*args)` in a fresh interpreter (`python -m ela.measure.sidecar`, nothing
of the job imported) and drives it with pickled messages over the child's stdin/stdout: the sampler is any
object with `start() -> info`, `stop() -> result` and, optionally, `mark(label)`. POSIX only (it waits on the
pipe with `select`). With `process=False` the same object runs in this process, as threads (the old
behaviour, kept for comparison: `measure.samplers_in=thread`).

A fresh interpreter that imports CodeCarbon (and the pandas it pulls in) takes ~0.35 s before it can sample (the
2-core VM). `prepare(warm)` starts such a process ahead of need, importing `warm` while the job does other
things; the next `Sidecar` with the same `warm` takes it, so that time leaves the job's critical path.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pickle
import select
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from ela import ElaError


class SidecarError(ElaError):
    """The sampler failed in its process (the message is its error), or the process did not answer."""


_SPARES: dict[tuple[str, ...], subprocess.Popen] = {}  # started ahead of need, by the modules they imported


def _spawn(warm: tuple[str, ...]) -> subprocess.Popen:
    """A sampler process that imports `warm`, then waits for its sampler on stdin."""
    return subprocess.Popen(
        [sys.executable, "-m", "ela.measure.sidecar", *warm],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},  # as this process imports
        start_new_session=True,  # a Ctrl-C or a launcher's signal to the job's group is the job's to handle
    )


def _take(warm: tuple[str, ...]) -> subprocess.Popen:
    """The spare prepared for `warm` if it is still alive (a dead one is reaped), else a new process."""
    proc = _SPARES.pop(warm, None)
    if proc is not None and proc.poll() is not None:
        _discard(proc)
        proc = None
    return proc or _spawn(warm)


def prepare(warm: tuple[str, ...]) -> int:
    """Have a sampler process that imported `warm` ready for the next `Sidecar(..., warm=warm)`; its pid."""
    proc = _SPARES[warm] = _take(warm)
    return proc.pid


def _discard(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Close a sampler process's pipes (EOF ends it quietly) and reap it; killed if it does not end in time."""
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            pipe.close()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@atexit.register
def _drop_spares() -> None:
    """Spares no job took: ended and reaped."""
    while _SPARES:
        _discard(_SPARES.popitem()[1])


class Sidecar:
    """One sampler, built by `make(*args)`, run in a child process (or inline); `start`, `mark`, `stop`.

    `warm`: modules the sampler needs, imported before it is built; a process `prepare(warm)` started is used.
    """

    def __init__(
        self,
        make: Callable[..., Any],
        *args: Any,
        process: bool = True,
        timeout_s: float = 60.0,
        warm: tuple[str, ...] = (),
    ) -> None:
        self._make, self._args, self._timeout = make, args, timeout_s
        self._proc: subprocess.Popen | None = None
        self._inline: Any = None
        self._done = False
        self._pending = False  # start(wait=False): the start's reply is still in the pipe
        self._started: Any = None
        if not process:
            self._inline = make(*args)
            return
        self._proc = _take(warm)
        # A spare was started before now: the sampler is built in this process's present environment and
        # folder (a job's pinned CUDA_VISIBLE_DEVICES, which CodeCarbon reads; its CODECARBON_* settings).
        self._send((make, args, dict(os.environ), os.getcwd()))

    @property
    def pid(self) -> int:
        """The sampler's process id (this process's when inline)."""
        return self._proc.pid if self._proc is not None else os.getpid()

    def start(self, wait: bool = True) -> Any:
        """Start sampling; waits until the sampler runs and returns what its `start` returned.

        `wait=False`: return at once (the process builds and starts the sampler as it is handed over) and let
        `started()` wait later, so a caller can do other work meanwhile. Inline samplers start here either way.
        """
        if self._proc is None:
            return self._inline.start()
        self._pending = True
        return self.started() if wait else None

    def started(self) -> Any:
        """Wait until the sampler runs (once; later calls return at once): what its `start` returned."""
        if self._pending:  # cleared only once the reply is read: an interrupted wait leaves it to stop() to read
            self._started = self._receive("start")
            self._pending = False
        return self._started

    def mark(self, label: str) -> None:
        """Pass a label to the sampler (between phases: a pickle down a pipe, no reply awaited)."""
        if self._proc is None:
            self._inline.mark(label)
        elif not self._done:
            self._send(("mark", label))

    def stop(self) -> Any:
        """Stop the sampler and return its result; the process ends."""
        if self._done:
            raise SidecarError(f"{self._name()} was already stopped")
        self._done = True
        if self._proc is None:
            return self._inline.stop()
        try:
            self.started()  # the start's reply comes first in the pipe (and a failed start is said here)
            self._send(("stop",))
            return self._receive("stop")
        finally:
            self._reap()

    def close(self) -> None:
        """Stop without a result if `stop` was never reached (a failed job); idempotent."""
        if self._done:
            return
        self._done = True
        if self._proc is None:
            self._inline.stop()
            return
        with contextlib.suppress(SidecarError):  # already gone
            self._send(("stop",))
        self._reap()

    def _name(self) -> str:
        return f"the {getattr(self._make, '__qualname__', self._make)} sampler process"

    def _send(self, message: object) -> None:
        try:
            pickle.dump(message, self._proc.stdin)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as err:
            raise SidecarError(f"{self._name()} is gone (exit code {self._proc.poll()}): {err}") from err

    def _receive(self, step: str) -> Any:
        ready, _, _ = select.select([self._proc.stdout], [], [], self._timeout)
        if not ready:
            self._proc.kill()
            raise SidecarError(f"{self._name()} did not answer {step} within {self._timeout:g} s; killed it")
        try:
            kind, value = pickle.load(self._proc.stdout)
        except (EOFError, pickle.UnpicklingError) as err:
            raise SidecarError(
                f"{self._name()} ended during {step} (exit code {self._proc.wait()}; its stderr is above)"
            ) from err
        if kind == "error":
            raise SidecarError(value)
        return value

    def _reap(self) -> None:
        _discard(self._proc, self._timeout)


def _message(err: Exception) -> str:
    """The message the parent raises: an ElaError as it reads, anything else with its type."""
    return str(err) if isinstance(err, ElaError) else f"{type(err).__name__}: {err}"


def _serve() -> None:
    """The child: build the sampler, then start, mark and stop it as the parent says; EOF stops it too.

    A job killed outright (an OOM kill) leaves its samplers talking to nobody: they stop quietly, no traceback.
    """
    inbox, outbox = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the sampler prints goes to stderr, never into the message stream

    def reply(kind: str, value: Any) -> bool:
        try:
            pickle.dump((kind, value), outbox)
            outbox.flush()
            return True
        except OSError:  # the job is gone
            return False

    def receive() -> tuple:
        try:
            return pickle.load(inbox)
        except (EOFError, OSError, pickle.UnpicklingError):  # the job is gone: stop, nobody to answer
            return ("exit",)

    try:
        for module in sys.argv[1:]:  # what the sampler will need, imported before the job hands it over
            importlib.import_module(module)
        make, args, env, cwd = pickle.load(inbox)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sampler = make(*args)
        started = reply("ok", sampler.start())
    except (EOFError, OSError):
        os._exit(0)
    except Exception as err:  # noqa: BLE001 - the parent raises it, with this message
        reply("error", _message(err))
        os._exit(0)
    message = receive() if started else ("exit",)
    while message[0] == "mark":
        sampler.mark(message[1])
        message = receive()
    try:
        result = sampler.stop()
    except Exception as err:  # noqa: BLE001
        if message[0] == "stop":
            reply("error", _message(err))
    else:
        if message[0] == "stop":
            reply("ok", result)
    os._exit(0)  # nothing left to flush into a pipe that may be closed (no "Exception ignored" at exit)


if __name__ == "__main__":
    _serve()
