"""Global Charging Manager parameters: names, types, defaults, ranges and persistence.

`Params` holds the current values. `validate_updates` checks a whole `set_params` object before
anything is applied, so a request with one bad value changes nothing.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chargebrain.core.formula import FormulaError, compile_formula
from chargebrain.store.db import Store
from chargebrain.values import to_bool

NS = "params"


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    kind: type  # bool, int, str, or "formula" (int mA or a formula string) via kind=object
    default: Any
    min: float | None = None
    max: float | None = None
    persisted: bool = True
    writable: bool = True
    max_len: int = 256
    formula: bool = False  # a str param that holds a formula ("" = off)


def _p(name: str, kind: type, default: Any, lo: float | None = None, hi: float | None = None,
       **kw: Any) -> ParamSpec:
    return ParamSpec(name, kind, default, lo, hi, **kw)


# `object` marks "an integer in mA, or a formula string".
SPECS: dict[str, ParamSpec] = {s.name: s for s in [
    _p("title", str, "chargebrain"),
    _p("desc", str, "Standard-Konfiguration"),
    _p("lb_enabled", bool, True),
    _p("max_total_current", object, 32000, 0, 10_000_000),
    _p("max_total_cur_prc", int, 100, 0, 100, persisted=False),
    _p("reserve_current", int, 0, 0, 10_000_000),
    _p("overdraft_cur", int, 0, 0, 10_000_000),
    _p("max_total_evse_current", int, 0, 0, 10_000_000),  # 0 = no separate EVSE limit
    # PV surplus in W as a formula (docs/formulas.md); "" = from the meters
    _p("surplus_expr", str, "", formula=True),
    _p("disable_policy", int, 1, -1, 1),
    _p("max_imbalance", int, 20000, 0, 10_000_000),  # mA; 0 = off
    _p("imbalance_add", bool, False),
    _p("min_pause_time", int, 300, 0, 86400),
    _p("min_run_time", int, 300, 0, 86400),
    _p("phase_switch_delay", int, 300, 0, 86400),
    # PV surplus (docs/load-management.md "PV surplus")
    _p("surplus_start_delay", int, 60, 0, 86400),  # s the surplus must cover the minimum
    _p("surplus_stop_delay", int, 300, 0, 86400),  # s held at min below it (rule udur wins)
    _p("surplus_step", int, 100, 1, 10000),  # mA: surplus currents are rounded down to it
    _p("surplus_use_battery", bool, False),  # a home battery's discharge may feed cars
    _p("max_phase_switches", int, 4, 0, 1000),  # automatic 1p/3p switches per session, 0 = ∞
    _p("system_voltage", int, 230, 100, 400),
    _p("fcfs", bool, False),
    _p("price_model", int, 0, 0, 10),
    # transactions run from charging start to end instead of plug-in to unplug
    _p("ta_on_charging", bool, False),
    _p("localhost_is_admin", bool, False),
    _p("api_read_needs_auth", bool, False),
    _p("mqtt_url", str, ""),  # mqtt[s|3|5]://[user:pw@]host[:port]; "" = no MQTT (mqtt/)
    _p("mqtt_topic_serial", bool, False),  # topics cfos_mqtt_<serial>/… instead of cfos_mqtt/…
    _p("mqtt_api", bool, False),  # cfos_mqtt/api/<query> runs API commands as admin
    _p("mqtt_ha_discovery", bool, True),  # Home Assistant discovery while MQTT is on
    _p("mqtt_ca_file", str, ""),  # PEM CA file for mqtts:// brokers; "" = the system's CAs
    _p("mqtt_ctl", bool, False),  # cfos_mqtt/ctl drives wallboxes in observation mode
    _p("mqtt_ctl_timeout_s", int, 60, 2, 3600),  # silent ctl → disable_policy after this
    # the OCPP 1.6J server (docs/ocpp.md), read at start; the command line wins
    _p("ocpp_srv_port", int, 19520, 0, 65535),  # 0 = off
    _p("ocpp_srv_tls_mode", int, 0, 0, 1),  # 0 ws://, 1 wss:// (needs --ocpp-tls-cert)
    _p("rec_interval_s", int, 10, 0, 3600),  # usage graphs: seconds between samples; 0 = off
]}


class ParamError(ValueError):
    """A parameter update was refused; the message names the parameter and why."""


def validate_value(spec: ParamSpec, value: Any) -> Any:
    """Return `value` converted to the parameter's type, or raise ParamError."""
    name = spec.name
    if spec.kind is bool:
        flag = to_bool(value)
        if flag is None:
            raise ParamError(f"{name} must be true or false")
        return flag
    if spec.kind is str:
        if not isinstance(value, str):
            raise ParamError(f"{name} must be a string")
        if len(value) > spec.max_len:
            raise ParamError(f"{name} is longer than {spec.max_len} characters")
        if spec.formula:
            return _check_formula(name, value) if value.strip() else ""
        return value
    if spec.kind is object and isinstance(value, str) and not _is_number_text(value):
        if not value.strip() or len(value) > spec.max_len:
            raise ParamError(f"{name} must be a number or a formula")
        return _check_formula(name, value)
    number = _to_int(name, value)
    if spec.min is not None and number < spec.min:
        raise ParamError(f"{name} must be at least {spec.min:g}")
    if spec.max is not None and number > spec.max:
        raise ParamError(f"{name} must be at most {spec.max:g}")
    return number


def _check_formula(name: str, text: str) -> str:
    """The formula, trimmed, when it compiles; else ParamError with the position (counted in
    the text as given)."""
    try:
        compile_formula(text)
    except FormulaError as err:
        raise ParamError(f"{name}: {err}") from None
    return text.strip()


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ParamError(f"{name} must be a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ParamError(f"{name} must be a number") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParamError(f"{name} must be a finite number")
    if value != int(value):
        raise ParamError(f"{name} must be a whole number")
    return int(value)


class Params:
    """The live parameter values, backed by the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._values: dict[str, Any] = {s.name: s.default for s in SPECS.values()}
        # called with the names of the values that changed, after they are applied
        self.on_change: list[Callable[[frozenset[str]], None]] = []
        for name, value in store.kv_all(NS).items():
            if name in SPECS:
                self._values[name] = value

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def validate_updates(self, updates: dict[str, Any]) -> dict[str, Any]:
        """Check a whole update; return the converted values or raise ParamError."""
        if not isinstance(updates, dict):
            raise ParamError("params must be a JSON object")
        out = {}
        for name, value in updates.items():
            spec = SPECS.get(name)
            if spec is None or not spec.writable:
                raise ParamError(f"unknown parameter {name}")
            out[name] = validate_value(spec, value)
        return out

    def apply(self, updates: dict[str, Any]) -> None:
        """Apply already validated values; persist those that are persisted (one transaction)."""
        persisted = {k: v for k, v in updates.items() if SPECS[k].persisted}
        if persisted:
            self._store.kv_set_many(NS, persisted)
        self._update(updates)

    def apply_with(self, updates: dict[str, Any],
                   write_more: Callable[[sqlite3.Connection], None]) -> None:
        """Like `apply`, and run `write_more(conn)` in the same database transaction, so a
        request that changes parameters and other configuration commits all or nothing."""
        persisted = {k: v for k, v in updates.items() if SPECS[k].persisted}
        with self._store.transaction() as conn:
            conn.executemany(
                "INSERT INTO kv(ns, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT(ns, key) DO UPDATE SET value=excluded.value",
                [(NS, k, json.dumps(v)) for k, v in persisted.items()])
            write_more(conn)
        self._update(updates)

    def _update(self, updates: dict[str, Any]) -> None:
        changed = frozenset(k for k, v in updates.items() if self._values.get(k) != v)
        self._values.update(updates)
        if changed:
            for callback in list(self.on_change):
                callback(changed)

    def set_runtime(self, name: str, value: Any) -> None:
        """Set a value the system itself maintains (e.g. overdraft_cur) and persist it."""
        self.apply({name: value})
