"""Describe where a job ran: versions, host, git commit (logged as MLflow tags)."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "transformers", "datasets", "codecarbon", "mlflow-skinny", "hydra-core", "nvidia-ml-py")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def git_commit() -> str:
    """Commit of the ela checkout (with `-dirty` if it has local changes), `$ELA_GIT_COMMIT`, or `unknown`."""
    if os.environ.get("ELA_GIT_COMMIT"):  # for copies of the tree without .git (e.g. a remote GPU box)
        return os.environ["ELA_GIT_COMMIT"]
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def environment_tags() -> dict[str, str]:
    """Host, Python, package versions and git commit."""
    import torch

    from ela import __version__

    tags = {
        "ela.version": __version__,
        "ela.git_commit": git_commit(),
        "host.name": socket.gethostname(),
        "ela.pid": str(os.getpid()),  # lets a resumed sweep tell a dead process's RUNNING run from a live one
        "host.cpu": platform.processor() or platform.machine(),
        "host.python": platform.python_version(),
        "torch.cuda_runtime": str(torch.version.cuda),
        "torch.num_threads": str(torch.get_num_threads()),
    }
    tags.update({f"version.{p}": _version(p) for p in PACKAGES})
    return tags
