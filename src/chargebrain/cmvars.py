"""Charging Manager variables (`CM.<name>`): named numbers or formulas set over the API.

A variable's `expr` is a number or a formula string. There is no formula engine yet, so a
formula is stored as given and its `value` is None until an evaluator is attached
(`CmVars.evaluate`); a number's value is the number itself.

Persistence (kv namespace `cm_vars`, key = name, value = expr): a change is written only when
the stored value differs (the original saves only then, to spare flash), and `tmp` changes are
kept in memory only, so the persisted value comes back after a restart. Every update is checked
as a whole before anything changes (`prepare`), then applied in one database transaction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chargebrain.store.db import Store

NS = "cm_vars"
MAX_VARS = 256
MAX_NAME_LEN = 64
MAX_FORMULA_LEN = 256
MAX_ABS_VALUE = 1e15  # keeps values exact as floats and inside a Modbus float register
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")

Expr = int | float | str


class CmVarError(ValueError):
    """A refused variable update; the message says which variable and why."""


def check_name(name: Any) -> str:
    """A valid variable name (letters, digits, underscore, 1-64 characters) or CmVarError."""
    if not isinstance(name, str) or not name:
        raise CmVarError("variable name must be a non-empty string")
    if len(name) > MAX_NAME_LEN:
        raise CmVarError(f"variable name is longer than {MAX_NAME_LEN} characters")
    if _NAME.match(name) is None:
        raise CmVarError("variable name may contain only letters, digits and underscore")
    return name


def check_number(name: str, value: float | int) -> float | int:
    """A finite number within ±MAX_ABS_VALUE, or CmVarError."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CmVarError(f"{name}: value must be a finite number")
    if abs(value) > MAX_ABS_VALUE:
        raise CmVarError(f"{name}: value must be between -1e15 and 1e15")
    return value


def check_formula(name: str, text: str) -> str:
    """A formula string as stored: trimmed, 1-256 printable characters."""
    formula = text.strip()
    if not formula:
        raise CmVarError(f"{name}: expr must be a number or a formula")
    if len(formula) > MAX_FORMULA_LEN:
        raise CmVarError(f"{name}: formula is longer than {MAX_FORMULA_LEN} characters")
    if any(not ch.isprintable() for ch in formula):
        raise CmVarError(f"{name}: formula contains control characters")
    return formula


def parse_expr(name: str, raw: Any) -> Expr:
    """A JSON `expr` (number or formula string) checked and normalised."""
    if isinstance(raw, bool) or raw is None or not isinstance(raw, (int, float, str)):
        raise CmVarError(f"{name}: expr must be a number or a formula string")
    if isinstance(raw, str):
        return parse_text(name, raw)
    return check_number(name, raw)


def parse_text(name: str, raw: str) -> Expr:
    """A query-string value: a number when it reads as one (`42`, `1.5`, `-3e2`), otherwise a
    formula. `nan`/`inf` are refused rather than taken as names."""
    text = raw.strip()
    try:
        return check_number(name, int(text, 10))
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return check_formula(name, text)
    if not math.isfinite(number):
        raise CmVarError(f"{name}: value must be a finite number")
    return check_number(name, number)


@dataclass(frozen=True, slots=True)
class VarUpdate:
    """One checked change: clear first (`clear`), then set `items` in order."""

    items: tuple[tuple[str, Expr], ...]
    clear: bool = False
    persist: bool = True


def same_expr(a: Any, b: Any) -> bool:
    """Equal for the purpose of "persist only when the value changed" (1 == 1.0, types of
    numbers aside; a formula equals only the same text)."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b


class CmVars:
    """The live variables: persisted ones plus `tmp` overlays (memory only)."""

    def __init__(self, store: Store,
                 evaluate: Callable[[str], float | None] | None = None) -> None:
        self._store = store
        # evaluates a formula string (None: no formula engine attached, value unknown)
        self.evaluate = evaluate
        self._vars: dict[str, Expr] = {}
        for name, expr in store.kv_all(NS).items():
            if _loadable(name, expr):
                self._vars[name] = expr

    def __len__(self) -> int:
        return len(self._vars)

    def expr(self, name: str) -> Expr | None:
        """The `expr` of a variable, or None when it does not exist."""
        return self._vars.get(name)

    def value(self, name: str) -> float | int | None:
        """The current value: the number, a formula's evaluation, or None."""
        expr = self._vars.get(name)
        if expr is None or not isinstance(expr, str):
            return expr
        if self.evaluate is None:
            return None
        result = self.evaluate(expr)
        if result is None or not math.isfinite(result):
            return None
        return result

    def as_list(self) -> list[dict[str, Any]]:
        """Every variable as `{"name", "expr", "value"}`, sorted by name."""
        return [{"name": name, "expr": self._vars[name], "value": self.value(name)}
                for name in sorted(self._vars)]

    def prepare(self, items: Iterable[tuple[Any, Any]], *, clear: bool = False,
                persist: bool = True, from_text: bool = False) -> VarUpdate:
        """Check a whole update (names, values, the variable limit) without changing anything.

        `items` are (name, expr) pairs; `from_text` when the values are query-string text."""
        checked: list[tuple[str, Expr]] = []
        for raw_name, raw_expr in items:
            name = check_name(raw_name)
            if from_text:
                if not isinstance(raw_expr, str):
                    raise CmVarError(f"{name}: missing value")
                expr = parse_text(name, raw_expr)
            else:
                expr = parse_expr(name, raw_expr)
            checked.append((name, expr))
        names = set() if clear else set(self._vars)
        names.update(name for name, _ in checked)
        if len(names) > MAX_VARS:
            raise CmVarError(f"too many variables (at most {MAX_VARS})")
        return VarUpdate(tuple(checked), clear=clear, persist=persist)

    def apply(self, update: VarUpdate) -> int:
        """Apply a prepared update; persist (unless tmp) what differs from the store, in one
        transaction. Returns the number of rows written or deleted."""
        final = {} if update.clear else dict(self._vars)
        for name, expr in update.items:
            final[name] = expr
        written = 0
        if update.persist:
            stored = self._store.kv_all(NS)
            to_write = {name: final[name] for name in dict(update.items)
                        if name not in stored or not same_expr(stored[name], final[name])}
            to_delete = [name for name in stored if name not in final] if update.clear else []
            if to_write or to_delete:
                with self._store.transaction() as conn:
                    conn.executemany("DELETE FROM kv WHERE ns=? AND key=?",
                                     [(NS, name) for name in to_delete])
                    conn.executemany(
                        "INSERT INTO kv(ns, key, value) VALUES (?, ?, ?)"
                        " ON CONFLICT(ns, key) DO UPDATE SET value=excluded.value",
                        [(NS, name, _json(expr)) for name, expr in to_write.items()])
                written = len(to_write) + len(to_delete)
        self._vars = final
        return written


def _json(expr: Expr) -> str:
    return json.dumps(expr, allow_nan=False)


def _loadable(name: Any, expr: Any) -> bool:
    """Only well-formed rows are loaded (a damaged row must not stop the start-up)."""
    try:
        check_name(name)
        parse_expr(name, expr)
    except CmVarError:
        return False
    return True
