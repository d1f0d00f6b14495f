"""From the named values of a defined meter (Modbus or HTTP) to a `MeterReading`.

`compute` adds the definition's `expr` variables (formulas over the other variables, e.g.
`power_w_l1 = current_l1 * voltage_l1 / 1000`); one that cannot be computed is missing and
named in the problems the driver reports (`read_problem`, shown as `last_error` without a COM
error). The values are already in the definition's target units (V, mA, W, Wh). What a meter does
not provide is derived, as the original does: per-phase currents from per-phase power and
voltage, total power from the per-phase powers, else from the apparent power (then the
reading says `is_va`), else from voltage × current. Voltages a meter does not report are the
site's nominal voltage. A current takes the sign of its phase's power when the meter reports
both (most report currents unsigned). Counters never go below 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from chargebrain.core.formula import FormulaError
from chargebrain.devices.base import MeterReading
from chargebrain.devices.definitions import MeterDefinition

Value = float | str
PHASES = ("l1", "l2", "l3")


def _number(values: Mapping[str, Value], name: str) -> float | None:
    value = values.get(name)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if value is None or not math.isfinite(value):
        return None
    return value


class _Numbers:
    """The formula environment of `compute`: the meter's numeric values by lowercased name
    (no rule parameters in a meter definition)."""

    def __init__(self, numbers: dict[str, float]) -> None:
        self.lookup = numbers.get

    def param(self, rule_id: int) -> float | None:
        return None


def compute(definition: MeterDefinition, values: Mapping[str, Value]
            ) -> tuple[dict[str, Value], list[str]]:
    """`values` with the definition's `expr` variables computed (in dependency order), and
    what could not be computed: a variable whose formula fails (a value it uses is missing or
    not a number, a division by zero…) is left out and named in the problems; the others
    stay as they are."""
    out = dict(values)
    if not definition.computed:
        return out, []
    numbers = {name.lower(): n for name in out if (n := _number(out, name)) is not None}
    env = _Numbers(numbers)  # the live dict: each result joins it for the variables after
    problems = []
    for variable in definition.computed:
        assert variable.formula is not None
        try:
            result = variable.formula.evaluate(env) * variable.resolution
        except FormulaError as err:
            problems.append(f"{variable.name}: cannot compute {variable.expr!r} ({err})")
            continue
        if not math.isfinite(result):
            problems.append(f"{variable.name}: {variable.expr!r} is not a finite number")
            continue
        out[variable.name] = result
        numbers[variable.name.lower()] = result
    return out, problems


def model_text(definition: MeterDefinition, values: Mapping[str, Value]) -> str:
    """`manufacturer type,version,firmware,serial` from what the meter names of itself."""
    name = " ".join(str(p).strip() for p in (definition.manufacturer,
                                             values.get("type_designation", "")) if p)
    parts = [name or definition.label or definition.name]
    parts += [_plain(values[k]) for k in ("version", "firmware_version", "serial")
              if k in values]
    return ",".join(parts)


def _plain(value: Value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def meter_reading(definition: MeterDefinition, values: Mapping[str, Value],
                  voltage_v: int) -> MeterReading:
    """The reading for `values` (variable name → value in target units)."""
    volts = [_number(values, f"voltage_{p}") for p in PHASES]
    voltages = tuple(round(v) if v is not None else voltage_v for v in volts)
    amps = [_number(values, f"current_{p}") for p in PHASES]
    phase_powers = [_number(values, f"power_w_{p}") for p in PHASES]
    currents: tuple[int, int, int] | None = None
    if any(a is not None for a in amps):
        # many meters report current unsigned: it takes the sign of its phase's power
        currents = tuple(round(-abs(a) if p is not None and p < 0 else a)  # type: ignore[assignment]
                         for a, p in zip((a or 0 for a in amps), phase_powers, strict=True))
    elif any(p is not None for p in phase_powers):
        currents = tuple(round((p or 0) * 1000 / (v or voltage_v))  # type: ignore[assignment]
                         for p, v in zip(phase_powers, voltages, strict=True))
    power = _number(values, "power_w")
    is_va: bool | None = None
    if power is None and any(p is not None for p in phase_powers):
        power = sum(p or 0 for p in phase_powers)
    if power is None and _number(values, "power_va") is not None:
        power, is_va = _number(values, "power_va"), True
    if power is None:
        power = sum(v * c for v, c in zip(voltages, currents or (0, 0, 0), strict=True)) / 1000
    import_wh = _number(values, "import_wh")
    export_wh = _number(values, "export_wh")
    soc = _number(values, "soc")
    return MeterReading(
        currents_ma=currents,
        voltages_v=voltages,  # type: ignore[arg-type]
        power_w=round(power),
        import_wh=max(0, round(import_wh)) if import_wh is not None else 0,
        export_wh=max(0, round(export_wh)) if export_wh is not None else 0,
        soc=min(100, max(0, round(soc))) if soc is not None else None,
        model=model_text(definition, values),
        is_va=is_va,
    )
