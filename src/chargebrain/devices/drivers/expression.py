"""Expression meters (`meter_expression`): readings computed from formulas.

An expression meter has no I/O of its own: the control cycle computes it once per cycle, after
reading the other devices and before planning (control/cycle.py), with the cycle's formula
environment (control/formula_env.py) and publishes the reading like a virtual meter's. So it
can serve as any meter role, e.g. a grid meter made of two others.

Each field of `ExpressionMeterConfig` is a formula or "" (not computed):
- `expr_current_l1..3` (mA): L2 and L3 reuse L1's formula when they are empty; while phase N
  is computed, `current` and `<x>.current` mean phase N. No current formula at all: the meter
  reports power only.
- `expr_power_w` (W): empty → the currents × the system voltage.
- `expr_import_wh`, `expr_export_wh` (Wh): empty → the power integrated over time (positive
  → import, negative → export).
- `expr_soc` (%): empty → none.

Bare names are the meter's own values of its previous computation (`current_l1`, `current`,
`power_w`, `import_wh`, `export_wh`, `soc`; 0 before the first) and `dt`, the seconds since
then (0 the first time), so `import_wh + M1.power_w * dt / 3600` integrates and
`(power_w * (20 - dt) + M1.power_w * dt) / 20` smooths. When one formula fails, nothing of the
meter changes this cycle and the cycle records a COM error with the formula's message (the
meter goes stale as a polled meter does). The own values live in memory only: after a restart
the integration starts from 0 again. `factor` and `invert` do not apply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from chargebrain.core.formula import FormulaEnv, FormulaError, compile_formula
from chargebrain.devices.base import MeterReading
from chargebrain.devices.config import ExpressionMeterConfig
from chargebrain.devices.status import integrate_wh

MODEL = "chargebrain,expression meter,1.0,"
FIELDS = ("current_l1", "current_l2", "current_l3", "power_w", "import_wh", "export_wh", "soc")
MAX_DT_S = 3600.0  # a longer gap (the meter was off) counts as this
MAX_ABS = 1e15  # values are kept inside this range (exact as floats, fit a Modbus float)


def _bounded(value: float) -> float:
    return max(-MAX_ABS, min(MAX_ABS, value))


class _Own:
    """The meter's own previous values and `dt` first, the live names after them."""

    __slots__ = ("_base", "_own", "_suffix")

    def __init__(self, base: FormulaEnv, own: Mapping[str, float], phase: int | None) -> None:
        self._base = base
        self._own = own
        self._suffix = f"_l{phase}" if phase is not None else ""

    def lookup(self, name: str) -> float | None:
        if self._suffix and (name == "current" or name.endswith(".current")):
            name += self._suffix
        value = self._own.get(name)
        return self._base.lookup(name) if value is None else value

    def param(self, rule_id: int) -> float | None:
        return self._base.param(rule_id)


@dataclass
class _State:
    values: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0.0))
    last_s: float | None = None
    import_wh: float = 0.0  # the integrated counters when there is no formula for them
    export_wh: float = 0.0


class ExpressionMeters:
    """The state (own previous values) of every expression meter, by dev_id."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    def forget_missing(self, dev_ids: set[str]) -> None:
        for dev_id in [k for k in self._states if k not in dev_ids]:
            del self._states[dev_id]

    def reset(self, dev_id: str) -> None:
        self._states.pop(dev_id, None)

    def compute(self, dev_id: str, config: ExpressionMeterConfig, env: FormulaEnv,
                now_s: float, voltage_v: int = 230) -> MeterReading:
        """This cycle's reading of the meter, or FormulaError (nothing changes then)."""
        state = self._states.get(dev_id)
        if state is None:
            state = self._states[dev_id] = _State()
        dt = 0.0 if state.last_s is None else min(MAX_DT_S, max(0.0, now_s - state.last_s))
        own = dict(state.values)
        own["dt"] = dt
        own["current"] = own["current_l1"]

        def run(field_name: str, text: str, phase: int | None = None) -> float:
            try:
                return _bounded(compile_formula(text).evaluate(_Own(env, own, phase)))
            except FormulaError as err:
                raise FormulaError(f"{field_name}: {err.problem}", err.pos) from None

        l1 = config.expr_current_l1
        texts = (l1, config.expr_current_l2 or l1, config.expr_current_l3 or l1)
        currents: tuple[int, int, int] | None = None
        if l1 or config.expr_current_l2 or config.expr_current_l3:
            values = [round(run(f"current_l{i + 1}", text, i + 1)) if text else 0
                      for i, text in enumerate(texts)]
            currents = (values[0], values[1], values[2])
        if config.expr_power_w:
            power = run("power_w", config.expr_power_w)
        elif currents is not None:
            power = sum(currents) * voltage_v / 1000.0
        else:
            power = 0.0
        import_wh = (run("import_wh", config.expr_import_wh) if config.expr_import_wh
                     else integrate_wh(state.import_wh, power, dt))
        export_wh = (run("export_wh", config.expr_export_wh) if config.expr_export_wh
                     else integrate_wh(state.export_wh, -power, dt))
        soc = run("soc", config.expr_soc) if config.expr_soc else None
        # all formulas succeeded: the new values become the own values
        state.last_s = now_s
        if not config.expr_import_wh:
            state.import_wh = import_wh
        if not config.expr_export_wh:
            state.export_wh = export_wh
        state.values = {
            "current_l1": float(currents[0]) if currents else 0.0,
            "current_l2": float(currents[1]) if currents else 0.0,
            "current_l3": float(currents[2]) if currents else 0.0,
            "power_w": power, "import_wh": import_wh, "export_wh": export_wh,
            "soc": soc if soc is not None else 0.0,
        }
        return MeterReading(
            currents_ma=currents, voltages_v=(voltage_v,) * 3,  # type: ignore[arg-type]
            power_w=round(power), import_wh=math.floor(import_wh),
            export_wh=math.floor(export_wh),
            soc=None if soc is None else round(max(0.0, min(100.0, soc))), model=MODEL)
