"""Charging Manager variables (`CM.<name>`): named numbers or formulas set over the API.

A variable's `expr` is a number or a formula string (core.formula; a formula that does not
compile is refused with its position). A number's value is the number itself; a formula's is
what the attached evaluator (`CmVars.evaluate`, the app attaches the live names of
control/formula_env.py) makes of it now, None while none is attached or when it fails
(`CmVars.explain_error` then says why).

Predefined variables (`PREDEFINED`, `CM._num_charging` …) are computed by the control cycle
and not stored here: setting one is refused, except `_max_total_current_prc`, which is the
param `max_total_cur_prc` under another name (`WRITABLE`): setting it sets the param.

Persistence (kv namespace `cm_vars`, key = name, value = expr): a change is written only when
the stored value differs (the original saves only then, to spare flash), and `tmp` changes are
kept in memory only, so the persisted value comes back after a restart. Every update is checked
as a whole before anything changes (`prepare`), then applied in one database transaction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chargebrain.core.formula import FormulaError, compile_formula
from chargebrain.params import ParamError
from chargebrain.store.db import Store

NS = "cm_vars"
MAX_VARS = 256
MAX_NAME_LEN = 64
MAX_FORMULA_LEN = 256
MAX_ABS_VALUE = 1e15  # keeps values exact as floats and inside a Modbus float register
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")

Expr = int | float | str
PREDEFINED = ("_num_charging", "_num_charging1", "_max_total_current",
              "_max_total_evse_current", "_surplus", "_org_surplus", "_max_total_current_prc",
              "_dt")
WRITABLE = {"_max_total_current_prc": "max_total_cur_prc"}  # predefined name → its param


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


def check_formula(name: str, text: str, *, compiles: bool = True) -> str:
    """A formula string as stored: trimmed, 1-256 printable characters that compile (unless
    `compiles` is False: rows loaded from the store are kept even when they do not)."""
    formula = text.strip()
    if not formula:
        raise CmVarError(f"{name}: expr must be a number or a formula")
    if len(formula) > MAX_FORMULA_LEN:
        raise CmVarError(f"{name}: formula is longer than {MAX_FORMULA_LEN} characters")
    if any(not ch.isprintable() for ch in formula):
        raise CmVarError(f"{name}: formula contains control characters")
    if compiles:
        try:
            compile_formula(text)  # positions count in the text as given
        except FormulaError as err:
            raise CmVarError(f"{name}: {err}") from None
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
    params: tuple[tuple[str, Any], ...] = ()  # writable predefined variables: param updates


def same_expr(a: Any, b: Any) -> bool:
    """Equal for the purpose of "persist only when the value changed" (1 == 1.0, types of
    numbers aside; a formula equals only the same text)."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b


class CmVars:
    """The live variables: persisted ones plus `tmp` overlays (memory only)."""

    def __init__(self, store: Store,
                 evaluate: Callable[[str], float | None] | None = None,
                 params: Any = None) -> None:
        self._store = store
        # evaluates a formula string (None: no formula engine attached, value unknown)
        self.evaluate = evaluate
        # why a formula fails now (None: it evaluates, or no engine attached)
        self.explain_error: Callable[[str], str | None] | None = None
        # the predefined variables' values now ("_num_charging" → 2.0 …)
        self.predefined: Callable[[], dict[str, float]] | None = None
        self.params = params  # chargebrain.params.Params behind WRITABLE
        self._vars: dict[str, Expr] = {}
        for name, expr in store.kv_all(NS).items():
            if _loadable(name, expr):
                self._vars[name] = expr

    def __len__(self) -> int:
        return len(self._vars)

    def items(self) -> list[tuple[str, Expr]]:
        """Every (name, expr), sorted by name."""
        return sorted(self._vars.items())

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
        """Every variable as `{"name", "expr", "value"}`, sorted by name; a formula that fails
        now has `value` None and `error` (the message with its position)."""
        out: list[dict[str, Any]] = []
        for name in sorted(self._vars):
            expr = self._vars[name]
            item: dict[str, Any] = {"name": name, "expr": expr, "value": self.value(name)}
            if item["value"] is None and isinstance(expr, str) and self.explain_error:
                error = self.explain_error(expr)
                if error:
                    item["error"] = error
            out.append(item)
        return out

    def predefined_list(self) -> list[dict[str, Any]]:
        """The predefined variables as `{"name", "value", "writable"}` (value None: unknown
        now, e.g. `_max_total_current` before the first cycle when it is a formula)."""
        values = self.predefined() if self.predefined is not None else {}
        return [{"name": name, "value": values.get(name), "writable": name in WRITABLE}
                for name in PREDEFINED]

    def prepare(self, items: Iterable[tuple[Any, Any]], *, clear: bool = False,
                persist: bool = True, from_text: bool = False) -> VarUpdate:
        """Check a whole update (names, values, the variable limit) without changing anything.

        `items` are (name, expr) pairs; `from_text` when the values are query-string text."""
        checked: list[tuple[str, Expr]] = []
        params: dict[str, Any] = {}
        for raw_name, raw_expr in items:
            name = check_name(raw_name)
            if from_text:
                if not isinstance(raw_expr, str):
                    raise CmVarError(f"{name}: missing value")
                expr = parse_text(name, raw_expr)
            else:
                expr = parse_expr(name, raw_expr)
            if name.lower() in PREDEFINED:
                params.update(self._predefined_update(name.lower(), expr))
                continue
            checked.append((name, expr))
        names = set() if clear else set(self._vars)
        names.update(name for name, _ in checked)
        if len(names) > MAX_VARS:
            raise CmVarError(f"too many variables (at most {MAX_VARS})")
        return VarUpdate(tuple(checked), clear=clear, persist=persist,
                         params=tuple(params.items()))

    def _predefined_update(self, name: str, expr: Expr) -> dict[str, Any]:
        """The param update behind a writable predefined variable, or CmVarError."""
        param = WRITABLE.get(name)
        if param is None:
            raise CmVarError(f"{name} is predefined and read-only")
        if isinstance(expr, str):
            raise CmVarError(f"{name} must be a number")
        if self.params is None:
            raise CmVarError(f"{name} cannot be set here")
        try:
            return dict(self.params.validate_updates({param: expr}))
        except ParamError as err:
            raise CmVarError(f"{name}: {err}") from None

    def set_from_rules(self, values: Mapping[str, float]) -> int:
        """Values a charging rule's "set variable" / "trigger variable" action gave `CM.<name>`
        this cycle (`values` as the rule engine reports them: lowercased dotted names). They
        are kept in memory only, like `tmp=1` (a rule sets them again every cycle; writing
        them to flash every cycle would wear it out), so the persisted value returns after a
        restart. An existing variable is matched case-insensitively; `CM._*` (predefined,
        the engine's own `_rule_id`/`_undercut`) and other devices' variables are left alone;
        new names stop at MAX_VARS. Returns how many values changed."""
        changed = 0
        by_lower = {name.lower(): name for name in self._vars}
        for key, value in values.items():
            if not key.startswith("cm.") or key.startswith("cm._"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
                continue
            name = by_lower.get(key[3:], key[3:])
            if _NAME.match(name) is None:
                continue
            if name not in self._vars and len(self._vars) >= MAX_VARS:
                continue
            number: Expr = int(value) if float(value).is_integer() else float(value)
            if name in self._vars and same_expr(self._vars[name], number):
                continue
            self._vars[name] = number
            by_lower[name.lower()] = name
            changed += 1
        return changed

    def apply(self, update: VarUpdate) -> int:
        """Apply a prepared update; persist (unless tmp) what differs from the store, in one
        transaction. Returns the number of rows written or deleted."""
        if update.params and self.params is not None:
            self.params.apply(dict(update.params))
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
        if isinstance(expr, str):
            check_formula(name, expr, compiles=False)
        else:
            parse_expr(name, expr)
    except CmVarError:
        return False
    return True
