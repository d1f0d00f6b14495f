"""A parsed `/cnf` request with tolerant accessors for the parameters clients send."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from chargebrain.api.errors import bad_request

MAX_PARAM_LEN = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the admin, or nobody in particular (user credentials are checked per call)."""

    is_admin: bool = False
    via: str = "none"  # "basic", "localhost", "none"
    basic_failed: bool = False  # Basic credentials were sent and were wrong


@dataclass(slots=True)
class ApiRequest:
    cmd: str
    query: dict[str, str]
    body: bytes
    remote: str
    principal: Principal = field(default_factory=Principal)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # every name=value, in order

    # -- parameters ---------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return name in self.query

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.query.get(name)
        if value is None:
            if required:
                raise bad_request(f"missing parameter {name}")
            return default
        if len(value) > MAX_PARAM_LEN:
            raise bad_request(f"parameter {name} is too long")
        return value

    def required_text(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def integer(self, name: str, default: int | None = None, *, required: bool = False,
                lo: int | None = None, hi: int | None = None) -> int | None:
        """An integer parameter; `16000.0` and `1234.00` are accepted as integers."""
        raw = self.text(name, required=required)
        if raw is None:
            return default
        value = parse_int(raw, name)
        if lo is not None and value < lo:
            raise bad_request(f"{name} must be at least {lo}")
        if hi is not None and value > hi:
            raise bad_request(f"{name} must be at most {hi}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise bad_request(f"{name} must be 0 or 1")

    def json_body(self, *, required: bool = True) -> Any:
        if not self.body.strip():
            if required:
                raise bad_request("missing JSON body")
            return None
        try:
            return json.loads(self.body, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise bad_request("body is not valid JSON") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def parse_int(raw: str | float | int, name: str) -> int:
    """Parse an integer that may be written as a float (`16000.0`); refuse NaN, inf, fractions."""
    if isinstance(raw, bool):
        raise bad_request(f"{name} must be a number")
    if isinstance(raw, str):
        try:
            number: float | int = int(raw.strip(), 10)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                raise bad_request(f"{name} must be a number") from None
    else:
        number = raw
    if isinstance(number, float):
        if not math.isfinite(number) or number != int(number):
            raise bad_request(f"{name} must be a whole number")
        number = int(number)
    if not -(2**63) <= number < 2**63:  # what SQLite and 64-bit registers can hold
        raise bad_request(f"{name} is out of range")
    return number


def parse_query(raw_query: str) -> dict[str, str]:
    """Parse a query string; also accept one that arrived percent-encoded as a whole
    (`cmd%3Dmodbus%26device%3Devse`). The first occurrence of a name wins, except that the
    repeated `write`/`value` pairs of `cmd=modbus` are kept by `parse_query_pairs`."""
    return dict(reversed(parse_query_pairs(raw_query)))


def parse_query_pairs(raw_query: str) -> list[tuple[str, str]]:
    if "%" not in raw_query and "+" not in raw_query:
        # nothing to decode (the common case): what parse_qsl gives, without its cost
        return [(name, value) for name, _, value in
                (part.partition("=") for part in raw_query.split("&") if part)]
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    if not any(k == "cmd" for k, _ in pairs) and "%3d" in raw_query.lower():
        pairs = parse_qsl(unquote(raw_query), keep_blank_values=True)
    return pairs
