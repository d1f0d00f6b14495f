"""Tolerant conversion of client-supplied values shared by parameters and pushed device data."""

from __future__ import annotations

from typing import Any

_TEXT_BOOLS = {"0": False, "1": True, "false": False, "true": True}


def to_bool(value: Any) -> bool | None:
    """`value` as a bool when it is one (true/false, 0/1, "0"/"1"/"true"/"false"), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _TEXT_BOOLS.get(value.lower())
    return None
