"""Fail fast and clearly when a Hugging Face Hub ID is used without network access."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from ela import ElaError


def offline_requested() -> bool:
    """True when the user asked the HF libraries to stay offline (use the local cache only)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """A TCP connection to the Hub endpoint succeeds (seconds, instead of minutes of HTTP retries)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def require_hub(what: str, hub_id: str, fix: str) -> None:
    """Raise one clear error if the Hub can't be reached and the user didn't ask for cache-only mode."""
    if offline_requested() or hub_reachable():
        return
    raise ElaError(
        f"{what} {hub_id!r} is a Hugging Face Hub ID, but the Hub is unreachable from this machine. "
        f"Use a local copy: {fix}. (If it is already in your HF cache, set HF_HUB_OFFLINE=1.)"
    )
