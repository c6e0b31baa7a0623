"""Command-line keys checked before Hydra: a typo gets ela's suggestion and exit code 2, before any work."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


def unknown_key(argv: list[str], known: Iterable[str]) -> tuple[str, list[str]] | None:
    """The first `key=value` override whose key is not known (nor below a known key), with close matches."""
    known = list(known)
    for arg in argv:
        if arg.startswith("-") or "=" not in arg or arg.startswith(("+", "~")):
            continue  # flags (-m, --help, --cfg ...), and Hydra's explicit add/delete
        key = arg.split("=", 1)[0]
        if key.startswith(("hydra.", "hydra/")) or key in known or any(key.startswith(f"{k}.") for k in known):
            continue
        return key, difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return None


def check_keys(prog: str, argv: list[str], known: Iterable[str]) -> None:
    """Exit 2 with one line naming an unknown key (and the key meant, when one is close)."""
    known = list(known)
    found = unknown_key(argv, known)
    if found is None:
        return
    key, close = found
    hint = f": did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    print(f"{prog}: unknown key {key!r}{hint}", file=sys.stderr)
    sys.exit(2)
