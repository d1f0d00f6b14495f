"""The names a formula reads in the live system, and the evaluation of configured formulas.

`FormulaNames` (one per control cycle, `cycle.formulas`) builds a `LiveEnv` — a
`core.formula.FormulaEnv` — from the device registry, the last plan's site flows, the CM
variables, the params and the clock. The names (all lowercased when looked up):

- `M<n>.` / `E<n>.` members of every device with a reading: `current_l1..3` (mA),
  `current` (the phase being evaluated, see `PhaseEnv`), `power_w`, `import_wh`,
  `export_wh`, `com_err` (0/1), `com_err2` (1 after 12 s of outage), `id`; meters add `soc`
  where known; EVSEs add `offered`, `state` (1–5, 6 while offline), `min_current`,
  `max_current` (a formula maximum: its last value), `cphases` (phases drawing now),
  `txn_energy`, `charging_dur`, and `input1`/`input2` (0/1) where the box reports inputs
  (Power Brain S0 inputs). `PB.input1`/`PB.input2` are the built-in Power Brain's inputs.
  A device that never delivered a reading has only `com_err`,
  `com_err2` and `id`, so a formula reading it fails (safe side) instead of reading zeros.
  Groups (`E<n>` of an `evse_group`) have `max_current`.
- `GM.<meter>.<member>`: the site's global meters from the last plan — `grid_demand`,
  `consumed`, `produced`, `consumed_evse`, `available_evse`, `surplus`, `storage_home`,
  `storage_all`, `error`, each with `power_w`, `current`, `current_l1..3` (mA, measured for
  grid demand and EVSE draw, else the power spread over three phases).
  Device members are loaded on their first lookup (`LiveEnv`'s loader).
- `CM.<name>`: the CM variables (a formula variable is evaluated when read, at most once per
  environment; a variable that reads itself is an error) and the predefined
  `CM._num_charging`, `_num_charging1`, `_max_total_current`, `_max_total_evse_current`,
  `_surplus`, `_org_surplus`, `_max_total_current_prc`, `_dt`.
- `date.*`: `year`, `month` (0–11), `day`, `weekday` (Sunday 0), `yearday` (0–365), `hour`,
  `minute`, `second`, `daysecond`, `dayminute`, `dst`, `timestamp`, in the local time zone
  (`tz`, default the system's).

`FormulaNames.begin(now_s)` starts one cycle's `CycleFormulas`: it evaluates a configured
current (`max_total_current`, an EVSE's or a group's `max_charging_cur`) or the
`surplus_expr`, and on a failure answers the safe value with a note for `explain`, sets the
device's `last_error` and logs once per change of the error (not every cycle).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from chargebrain.core.formula import Formula, FormulaEnv, FormulaError, compile_formula
from chargebrain.devices.registry import Device, DeviceRegistry
from chargebrain.devices.types import Family, Kind

if TYPE_CHECKING:
    from chargebrain.cmvars import CmVars
    from chargebrain.control.virtual import SiteFlows

log = logging.getLogger(__name__)

MAX_FORMULA_MA = 10_000_000  # a formula current above this counts as this (the params' range)
COM_ERR2_S = 12.0  # `com_err2`: an outage longer than this
PHASE_NAMES = ("current_l1", "current_l2", "current_l3")
GLOBAL_METERS = ("grid_demand", "consumed", "produced", "consumed_evse", "available_evse",
                 "surplus", "storage_home", "storage_all", "error")


# -- environments ---------------------------------------------------------------------------------

class LiveEnv:
    """A FormulaEnv over one snapshot of values, with CM formula variables evaluated lazily.

    `loader(prefix)` supplies the values of a name's first part on its first lookup (a
    device's members: `m5` → `m5.power_w` …), so an environment costs nothing for the devices
    no formula reads."""

    __slots__ = ("_cache", "_formulas", "_loaded", "_loader", "_params", "_resolving",
                 "_values")

    def __init__(self, values: dict[str, float], formulas: Mapping[str, str] | None = None,
                 params: Mapping[int, float] | None = None,
                 loader: Callable[[str], Mapping[str, float]] | None = None) -> None:
        self._values = values  # lowercased name → value
        self._formulas = formulas or {}  # "cm.<name>" → formula text of formula variables
        self._params = params or {}
        self._loader = loader
        self._loaded: set[str] = set()
        self._cache: dict[str, float] = {}
        self._resolving: set[str] = set()

    def lookup(self, name: str) -> float | None:
        value = self._values.get(name)
        if value is not None:
            return value
        if name in self._formulas:
            return self._variable(name)
        if self._loader is not None:
            prefix, dot, _ = name.partition(".")
            if dot and prefix not in self._loaded:
                self._loaded.add(prefix)
                self._values.update(self._loader(prefix))
                return self._values.get(name)
        return None

    def param(self, rule_id: int) -> float | None:
        return self._params.get(rule_id)

    def values(self) -> dict[str, float]:
        """The plain values loaded so far (formula variables not included)."""
        return dict(self._values)

    def update(self, values: Mapping[str, float]) -> None:
        """New plain values (a device computed during the cycle, e.g. an expression meter)."""
        self._loaded.update(name.partition(".")[0] for name in values)
        self._values.update(values)
        self._cache.clear()

    def _variable(self, name: str) -> float:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        if name in self._resolving:
            raise FormulaError(f"{name} refers to itself")
        self._resolving.add(name)
        try:
            value = compile_formula(self._formulas[name]).evaluate(self)
        except FormulaError as err:
            if err.problem.startswith(name):
                raise
            where = f" at {err.pos}" if err.pos is not None else ""
            raise FormulaError(f"{name}: {err.problem}{where}") from None
        finally:
            self._resolving.discard(name)
        self._cache[name] = value
        return value


class OverlayEnv:
    """`base` with some names answered first from `own` (an expression meter's own fields,
    `dt`, and values of the moment such as a rule's `lb_cur`)."""

    __slots__ = ("_base", "_own")

    def __init__(self, base: FormulaEnv, own: Mapping[str, float]) -> None:
        self._base = base
        self._own = own

    def lookup(self, name: str) -> float | None:
        value = self._own.get(name)
        return self._base.lookup(name) if value is None else value

    def param(self, rule_id: int) -> float | None:
        return self._base.param(rule_id)


class PhaseEnv:
    """`base` while phase `phase` (1–3) is evaluated: `current` and `<x>.current` read the
    `current_l<phase>` members."""

    __slots__ = ("_base", "_suffix")

    def __init__(self, base: FormulaEnv, phase: int) -> None:
        self._base = base
        self._suffix = f"_l{phase}"

    def lookup(self, name: str) -> float | None:
        if name == "current" or name.endswith(".current"):
            name += self._suffix
        return self._base.lookup(name)

    def param(self, rule_id: int) -> float | None:
        return self._base.param(rule_id)


def reads_phase(formula: Formula) -> bool:
    """True when the formula reads `current` or some `<x>.current` (per-phase evaluation)."""
    return any(n == "current" or n.endswith(".current") for n in formula.names)


def per_phase_min(formula: Formula, env: FormulaEnv) -> float:
    """The formula's value; for a formula that reads `current`, the least of its values on
    the three phases (a limit that holds on every phase)."""
    if not reads_phase(formula):
        return formula.evaluate(env)
    return min(formula.evaluate(PhaseEnv(env, phase)) for phase in (1, 2, 3))


# -- the values ------------------------------------------------------------------------------

def date_values(now_s: float, tz: tzinfo | None = None) -> dict[str, float]:
    """The `date.*` names at `now_s` in `tz` (None: the system's local time)."""
    if tz is None:
        local = time.localtime(now_s)
        moment = datetime(*local[:6])
        dst = 1.0 if local.tm_isdst > 0 else 0.0
    else:
        moment = datetime.fromtimestamp(now_s, tz)
        offset = moment.dst()
        dst = 1.0 if offset is not None and offset.total_seconds() != 0 else 0.0
    daysecond = moment.hour * 3600 + moment.minute * 60 + moment.second
    return {
        "date.year": float(moment.year),
        "date.month": float(moment.month - 1),
        "date.day": float(moment.day),
        "date.weekday": float((moment.weekday() + 1) % 7),  # Sunday 0 … Saturday 6
        "date.yearday": float(moment.timetuple().tm_yday - 1),
        "date.hour": float(moment.hour),
        "date.minute": float(moment.minute),
        "date.second": float(moment.second),
        "date.daysecond": float(daysecond),
        "date.dayminute": float(daysecond // 60),
        "date.dst": dst,
        "date.timestamp": float(math.floor(now_s)),
    }


def spread_ma(power_w: float, voltage_v: int) -> tuple[float, float, float]:
    """A power spread evenly over three phases, as mA per phase."""
    per_phase = power_w * 1000.0 / (3 * max(1, voltage_v))
    return (per_phase, per_phase, per_phase)


def _phases(out: dict[str, float], prefix: str, currents: Any) -> None:
    for name, value in zip(PHASE_NAMES, currents, strict=True):
        out[f"{prefix}.{name}"] = float(value)


def device_values(device: Device, registry: DeviceRegistry, now_s: float, voltage_v: int,
                  max_current_ma: float | None = None) -> dict[str, float]:
    """The `M<n>.` / `E<n>.` members of one device (module docstring)."""
    prefix = device.dev_id.lower()
    status = device.status
    config = device.config
    outage_s = now_s - status.com_err_since_s if (
        status.com_err and status.com_err_since_s is not None) else 0.0
    out = {f"{prefix}.com_err": float(status.com_err),
           f"{prefix}.com_err2": float(status.com_err and outage_s > COM_ERR2_S),
           f"{prefix}.id": float(getattr(config, "id", 0))}
    if device.family is Family.GROUP:
        _max_current(out, prefix, config, max_current_ma)
        return out
    meter = status.meter_reading
    if device.kind is Kind.METER and meter is not None:
        currents = meter.currents_ma if meter.currents_ma is not None else spread_ma(
            meter.power_w, voltage_v)
        _phases(out, prefix, currents)
        out[f"{prefix}.power_w"] = float(meter.power_w)
        out[f"{prefix}.import_wh"] = float(meter.import_wh)
        out[f"{prefix}.export_wh"] = float(meter.export_wh)
        if meter.soc is not None:
            out[f"{prefix}.soc"] = float(meter.soc)
        return out
    evse = status.evse_reading
    if device.kind is Kind.EVSE and evse is not None:
        measured = registry.evse_measurement(device)
        _phases(out, prefix, measured.currents_ma)
        out[f"{prefix}.power_w"] = float(measured.power_w)
        out[f"{prefix}.import_wh"] = float(measured.energy_wh)
        out[f"{prefix}.export_wh"] = 0.0
        out[f"{prefix}.offered"] = float(evse.offered_ma)
        out[f"{prefix}.state"] = 6.0 if status.com_err else float(evse.state)
        out[f"{prefix}.cphases"] = float(bin(evse.phases_mask).count("1")
                                         if evse.charging else 0)
        out[f"{prefix}.txn_energy"] = float(status.ta_en_wh)
        out[f"{prefix}.charging_dur"] = float(status.charging_dur_s)
        if evse.inputs is not None:
            for bit in range(2):
                out[f"{prefix}.input{bit + 1}"] = float(evse.inputs >> bit & 1)
    if device.kind is Kind.EVSE:
        out[f"{prefix}.min_current"] = float(getattr(config, "min_charging_cur", 0))
        _max_current(out, prefix, config, max_current_ma)
    return out


def _max_current(out: dict[str, float], prefix: str, config: Any,
                 evaluated_ma: float | None) -> None:
    """`<dev>.max_current`: the configured number, or a formula maximum's last value."""
    limit = getattr(config, "max_charging_cur", None)
    if isinstance(limit, int):
        out[f"{prefix}.max_current"] = float(limit)
    elif evaluated_ma is not None:
        out[f"{prefix}.max_current"] = float(evaluated_ma)


def local_powerbrain(registry: DeviceRegistry) -> Device | None:
    """The built-in Power Brain's EVSE (dev_type evse_powerbrain, address `evse`), if any."""
    for device in registry.evses():
        if device.config.dev_type == "evse_powerbrain" and device.config.address == "evse":
            return device
    return None


def global_meter_values(flows: SiteFlows | None, registry: DeviceRegistry, voltage_v: int
                        ) -> dict[str, float]:
    """The `GM.*` names from the last plan's flows (nothing before the first plan) and the
    storage meters' readings."""
    out: dict[str, float] = {}
    storage = {5: 0.0, 6: 0.0}
    for device in registry.meters():
        reading = device.status.meter_reading
        role = getattr(device.config, "role", 0)
        if role in storage and reading is not None and device.enabled:
            storage[role] += reading.power_w
    powers: dict[str, tuple[float, Any]] = {
        "storage_home": (storage[5], None), "storage_all": (storage[6], None)}
    if flows is not None:
        d = flows.diagnostics
        grid = d.grid_power_w if d.grid_power_w is not None else (
            d.consumption_power_w - d.production_power_w + d.cons_evse_power_w)
        grid_ma = flows.grid_ma
        if grid_ma is None:
            grid_ma = tuple(n + e for n, e in zip(d.non_evse_ma, flows.evse_draw_ma,
                                                  strict=True))
        powers.update({
            "grid_demand": (grid, grid_ma),
            "consumed": (d.consumption_power_w, None),
            "produced": (d.production_power_w, None),
            "consumed_evse": (d.cons_evse_power_w, flows.evse_draw_ma),
            "available_evse": (d.avail_evse_power_w, None),
            "surplus": (d.surplus_w, None),
            "error": (d.error_power_w, None),
        })
    for name, (power, currents) in powers.items():
        prefix = f"gm.{name}"
        out[f"{prefix}.power_w"] = float(power)
        _phases(out, prefix, currents if currents is not None else spread_ma(power, voltage_v))
    return out


def _count_charging(registry: DeviceRegistry) -> int:
    count = 0
    for device in registry.evses():
        reading = device.status.evse_reading
        if reading is not None and reading.charging and not device.status.com_err:
            count += 1
    return count


# -- the live names and one cycle's evaluations ----------------------------------------------

class FormulaNames:
    """Builds the live environment and evaluates configured formulas (module docstring).

    `cm_vars` (app wiring) adds the CM variables; `flows` is set by the cycle after each plan;
    `tz` is the time zone of `date.*` (None: the system's)."""

    def __init__(self, registry: DeviceRegistry, params: Any, *,
                 cm_vars: CmVars | None = None, tz: tzinfo | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.registry = registry
        self.params = params
        self.cm_vars = cm_vars
        self.tz = tz
        self._clock = clock
        self.flows: SiteFlows | None = None
        self.site_limit_ma: int | None = None  # the evaluated max_total_current of the last cycle
        self.max_currents_ma: dict[str, int] = {}  # last evaluated formula maxima, by dev_id
        self.last_cycle_s: float | None = None
        self.dt_s = 0.0
        self._errors: dict[str, str] = {}  # what failed last time, by key: logged once

    def clock(self) -> float:
        return self._clock() if self._clock is not None else self.registry.clock()

    def attach(self, cm_vars: CmVars) -> None:
        """Read the CM variables, and evaluate their formulas (get_cm_vars) with these names."""
        self.cm_vars = cm_vars
        cm_vars.evaluate = self.value_of
        cm_vars.explain_error = self.error_of
        cm_vars.predefined = lambda: {k[3:]: v for k, v in self.predefined().items()}

    # -- environments ---------------------------------------------------------------------------

    def env(self, now_s: float | None = None) -> LiveEnv:
        """The names as they are now (or at `now_s`)."""
        now = self.clock() if now_s is None else now_s
        voltage = int(self.params["system_voltage"])
        registry = self.registry
        maxima = self.max_currents_ma

        def load_device(prefix: str) -> Mapping[str, float]:
            if prefix == "pb":  # PB.input1/2: the built-in Power Brain's own inputs
                local = local_powerbrain(registry)
                if local is None:
                    return {}
                own = device_values(local, registry, now, voltage)
                mine = local.dev_id.lower() + "."
                return {f"pb.{k[len(mine):]}": v for k, v in own.items()
                        if k.startswith(mine + "input")}
            device = registry.get(prefix.upper())
            if device is None:
                return {}
            return device_values(device, registry, now, voltage, maxima.get(device.dev_id))
        values: dict[str, float] = {}
        values.update(global_meter_values(self.flows, self.registry, voltage))
        values.update(date_values(now, self.tz))
        formulas: dict[str, str] = {}
        if self.cm_vars is not None:
            for item in self.cm_vars.items():
                name, expr = item
                key = f"cm.{name.lower()}"
                if key in values or key in formulas:
                    continue  # two names that differ only in case: the first (sorted) wins
                if isinstance(expr, str):
                    formulas[key] = expr
                else:
                    values[key] = float(expr)
        values.update(self.predefined())
        return LiveEnv(values, formulas, loader=load_device)

    def predefined(self) -> dict[str, float]:
        """The `CM._*` values."""
        charging = _count_charging(self.registry)
        site = self.site_limit_ma
        if site is None:
            raw = self.params["max_total_current"]
            site = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        evse_limit = int(self.params["max_total_evse_current"])
        surplus = float(self.flows.diagnostics.surplus_w) if self.flows is not None else 0.0
        out = {"cm._num_charging": float(charging),
               "cm._num_charging1": float(max(1, charging)),
               "cm._surplus": surplus,
               "cm._org_surplus": surplus,
               "cm._max_total_current_prc": float(self.params["max_total_cur_prc"]),
               "cm._dt": float(self.dt_s)}
        if site is not None:
            out["cm._max_total_current"] = float(site)
            out["cm._max_total_evse_current"] = float(evse_limit if evse_limit > 0 else site)
        return out

    def value_of(self, text: str) -> float | None:
        """A formula's value now, None when it fails (get_cm_vars)."""
        try:
            return compile_formula(text).evaluate(self.env())
        except FormulaError:
            return None

    def error_of(self, text: str) -> str | None:
        """Why a formula fails now, or None when it evaluates."""
        try:
            compile_formula(text).evaluate(self.env())
        except FormulaError as err:
            return str(err)
        return None

    # -- one cycle ------------------------------------------------------------------------------

    def begin(self, now_s: float) -> CycleFormulas:
        """The evaluations of one control cycle at `now_s`."""
        if self.last_cycle_s is not None and now_s > self.last_cycle_s:
            self.dt_s = now_s - self.last_cycle_s
        self.last_cycle_s = now_s
        return CycleFormulas(self, now_s)

    def report(self, key: str, error: str | None) -> bool:
        """Remember the outcome for `key`; log when it changed. True when it is new."""
        before = self._errors.get(key)
        if error == before:
            return False
        if error is None:
            del self._errors[key]
            log.info("%s: formula works again", key)
        else:
            self._errors[key] = error
            log.warning("%s: %s", key, error)
        return True

    def errors(self) -> dict[str, str]:
        """What fails now, by key (`max_total_current`, `E1.max_charging_cur`, …)."""
        return dict(self._errors)


class CycleFormulas:
    """One cycle's formula evaluations over one environment (built on first use)."""

    def __init__(self, names: FormulaNames, now_s: float) -> None:
        self.names = names
        self.now_s = now_s
        self._env: LiveEnv | None = None
        self.seen: set[str] = set()

    @property
    def env(self) -> LiveEnv:
        if self._env is None:
            self._env = self.names.env(self.now_s)
        return self._env

    def current_ma(self, value: Any, key: str, notes: list[str], *, safe_ma: int = 0,
                   device: Device | None = None) -> tuple[int, str | None]:
        """A configured current: an int as it is; a formula's value (per phase: the least),
        rounded down to whole mA and never below 0. On a failure: (`safe_ma`, the error), a
        note for explain, the device's last_error and one log line per change."""
        if isinstance(value, bool):
            return safe_ma, None
        if isinstance(value, int):
            return value, None
        self.seen.add(key)
        try:
            formula = compile_formula(str(value))
            result = per_phase_min(formula, self.env)
            ma = max(0, min(MAX_FORMULA_MA, math.floor(result)))
        except FormulaError as err:
            error = str(err)
            notes.append(f"{key} = {str(value)[:64]!r} failed ({error}); {safe_ma} mA")
            self.names.report(key, error)
            if device is not None:
                device.status.last_error = f"{key}: {error}"
            return safe_ma, error
        if self.names.report(key, None) and device is not None and \
                device.status.last_error.startswith(f"{key}:"):
            device.status.last_error = ""
        return ma, None

    def refresh(self, device: Device) -> None:
        """Take a device's new reading into this cycle's environment (if it is built)."""
        if self._env is not None:
            names = self.names
            self._env.update(device_values(device, names.registry, self.now_s,
                                           int(names.params["system_voltage"])))

    def number(self, text: str, key: str, notes: list[str]) -> float | None:
        """A formula's value (e.g. `surplus_expr`, W); None and a note when it fails."""
        self.seen.add(key)
        try:
            value = compile_formula(text).evaluate(self.env)
        except FormulaError as err:
            notes.append(f"{key} = {text[:64]!r} failed ({err})")
            self.names.report(key, str(err))
            return None
        self.names.report(key, None)
        return value

    def finish(self) -> None:
        """Forget errors of formulas that were not evaluated this cycle (removed ones)."""
        for key in [k for k in self.names.errors() if k not in self.seen]:
            self.names.report(key, None)
