"""The checks every config dataclass makes of its keys: each failure names the key and what it accepts."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from ela import ElaError


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ElaError(f"invalid value {key}={value!r}: expected {expected}")


def _positive_int(key: str, value: Any, minimum: int = 1) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    _check(ok, key, value, f"an integer >= {minimum}")


def _flag(key: str, value: Any) -> None:
    _check(isinstance(value, bool), key, value, "true | false")


def _one_of(key: str, value: Any, choices: tuple) -> None:
    _check(value in choices, key, value, " | ".join("null" if c is None else str(c) for c in choices))


def section(name: str, cls: type, raw: Any) -> Any:
    """Build a config section's dataclass from its mapping; unknown or missing keys are named."""
    if not isinstance(raw, dict):
        raise ElaError(f"config key '{name}' must be a mapping, got {raw!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ElaError(
            f"unknown config key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
            f"known keys of '{name}': {', '.join(known)}"
        )
    optional = {f.name for f in fields(cls) if f.default is not MISSING}  # e.g. what only one task reads
    missing = sorted(set(known) - set(raw) - optional)
    if missing:
        raise ElaError(f"missing config key(s) {', '.join(f'{name}.{k}' for k in missing)}")
    return cls(**raw)
