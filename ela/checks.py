"""The checks every config dataclass makes of its keys: each failure names the key and what it accepts."""

from __future__ import annotations

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
