"""Charging rules in the control cycle: per EVSE, per user and per RFID card.

Every cycle, after `control.inputs.evse_input` has built an EVSE's planner input, the cycle
asks `RulesStage.apply`. It evaluates the EVSE's own `charging_rules` (unless override E is
active) and the session's user/card rules (unless override U), each with its own memory, and
the **lower** result wins (no rules = no limit). The verdict changes the planner input:

- a limit below the configured maximum caps `max_current_ma` (`max_reason` names the rule);
- no rule lets it charge (0 mA, nothing fired, or below the minimum for a normal EVSE):
  `allowed=False` with the rule's text;
- a surplus verdict (PV-flag rules, legacy mode 5) sets `surplus=True` and
  `surplus_stop_delay_s` (the rule's undercut time): the planner then serves it from the PV
  surplus only and owns the start/stop hysteresis; its cap is at least the minimum, so the
  planner, not the rule, decides a start when the surplus covers it.

The rules look at the **previous** plan's site numbers (`SiteView.from_plan`): PV surplus, grid
power and per-phase grid currents, generation, the number of charging cars — the current
cycle's plan is not made yet. Time of day is local (`tz`; None = the system's zone).
Memory (undercut holds, trigger variables) lives here per EVSE and rule owner, and is dropped
at unplug, so a new session starts fresh.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any

from chargebrain.core.formula import FormulaEnv
from chargebrain.core.rules import (
    PhaseValues,
    Program,
    RuleContext,
    RuleError,
    RuleMemory,
    RuleResult,
    compile_rules,
    evaluate,
    validate_rules,
)
from chargebrain.core.site import EvseInput, MeterRole, PlanResult, SiteInput
from chargebrain.units import ZERO, Phases, add, phase_count, rotate_phases

EVSE = "evse"
USER = "user"


@dataclass(frozen=True, slots=True)
class SiteView:
    """The site numbers rules look at (whole site; currents per building phase, + import)."""

    surplus_w: float = 0.0
    grid_w: float = 0.0
    solar_w: float = 0.0
    grid_ma: Phases | None = None  # None: no fresh per-phase grid reading
    solar_ma: Phases = ZERO
    evse_draw_ma: Phases = ZERO
    num_charging: int = 0
    voltage_v: int = 230
    names: Mapping[str, float] | None = None  # formula names (m1.current_l1, e1.power_w …)

    @classmethod
    def from_plan(cls, site: SiteInput | None, result: PlanResult | None,
                  now_s: float) -> SiteView:
        """The view from the previous cycle's input and plan (empty before the first)."""
        if site is None or result is None:
            return cls()
        d = result.diagnostics
        volt = max(1, site.settings.system_voltage_v)
        grid_ma: Phases | None = None
        solar_ma: Phases = ZERO
        names: dict[str, float] = {}
        for m in site.meters:
            fresh = not m.is_stale(now_s)
            key = m.dev_id.lower()
            if m.currents_ma is not None:
                for i, c in enumerate(m.currents_ma):
                    names[f"{key}.current_l{i + 1}"] = float(c)
            names[f"{key}.power_w"] = float(m.power_w)
            if not fresh or m.currents_ma is None:
                continue
            if m.role == MeterRole.GRID and m.group_id == 0:
                grid_ma = m.currents_ma if grid_ma is None else add(grid_ma, m.currents_ma)
            elif m.role == MeterRole.PRODUCTION:
                solar_ma = add(solar_ma, m.currents_ma)
        draw: Phases = ZERO
        charging = 0
        for e in site.evses:
            key = e.dev_id.lower()
            if e.measured_ma is not None:
                own = e.measured_ma
                for i, c in enumerate(own):
                    names[f"{key}.current_l{i + 1}"] = float(c)
                if e.phase_rotation_deg in (0, 120, 240):
                    draw = add(draw, rotate_phases(own, e.phase_rotation_deg))
            names[f"{key}.power_w"] = float(e.last_power_w)
            charging += bool(e.charging)
        names["cm._num_charging"] = float(charging)
        names["cm._surplus"] = float(d.surplus_w)
        names["gm.surplus.power_w"] = float(d.surplus_w)
        if d.grid_power_w is not None:
            names["gm.grid_demand.power_w"] = float(d.grid_power_w)
        names["gm.produced.power_w"] = float(d.production_power_w)
        return cls(surplus_w=float(d.surplus_w), grid_w=float(d.grid_power_w or 0),
                   solar_w=float(d.production_power_w), grid_ma=grid_ma, solar_ma=solar_ma,
                   evse_draw_ma=draw, num_charging=charging, voltage_v=volt, names=names)

    def phase_values(self, building_phase: int) -> PhaseValues:
        """Per-phase values of one building phase (0-based) for rules without the PV flag."""
        i = building_phase
        if self.grid_ma is not None:
            grid = float(self.grid_ma[i])
            surplus = -grid + self.evse_draw_ma[i]
        else:
            grid = self.grid_w * 1000.0 / (3 * self.voltage_v)
            surplus = self.surplus_w * 1000.0 / (3 * self.voltage_v)
        return PhaseValues(surplus_ma=surplus, grid_import_ma=max(0.0, grid),
                           grid_export_ma=max(0.0, -grid), solar_ma=float(self.solar_ma[i]))


class _Names:
    """The formula environment of one evaluation: the cycle's formula environment when there
    is one, else the site names of the view; then local time (`date.*`)."""

    __slots__ = ("_base", "_names", "_time")

    def __init__(self, base: FormulaEnv | None, names: Mapping[str, float] | None,
                 time: Mapping[str, float]) -> None:
        self._base = base
        self._names = names or {}
        self._time = time

    def lookup(self, name: str) -> float | None:
        got = self._base.lookup(name) if self._base is not None else self._names.get(name)
        return got if got is not None else self._time.get(name)

    def param(self, rule_id: int) -> float | None:
        return self._base.param(rule_id) if self._base is not None else None


def _local_time(now_s: float, tz: tzinfo | None) -> tuple[int, int, dict[str, float]]:
    """(weekday 0 = Monday, minute of the day, `date.*` names)."""
    t = datetime.fromtimestamp(now_s, tz)
    minute = t.hour * 60 + t.minute
    names = {"date.year": t.year, "date.month": t.month - 1, "date.day": t.day,
             "date.weekday": (t.weekday() + 1) % 7, "date.hour": t.hour,
             "date.minute": t.minute, "date.second": t.second, "date.dayminute": minute,
             "date.daysecond": minute * 60 + t.second, "date.timestamp": int(now_s),
             "date.yearday": t.timetuple().tm_yday - 1}
    return t.weekday(), minute, {k: float(v) for k, v in names.items()}


@dataclass(frozen=True, slots=True)
class RulesVerdict:
    """The combined answer of an EVSE's and its user's rules.

    `limit_ma` None: no rule applies (no limit). `allowed` False: the rules do not let it
    charge now (`reason` says which rule). `max_ma` is the cap to apply (a surplus EVSE's is at
    least its minimum). `source` is "evse" or "user" (whose rules decided).
    """

    limit_ma: int | None
    allowed: bool = True
    max_ma: int | None = None
    surplus: bool = False
    stop_delay_s: float = 0.0
    reason: str = ""
    source: str = ""
    variables: Mapping[str, float] | None = None


NO_VERDICT = RulesVerdict(None)


class RulesStage:
    """Compiled rule programs (cached by content) and per-EVSE rule memory."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        self.tz = tz
        self._programs: dict[str, Program] = {}  # by content (JSON)
        self._by_identity: dict[int, tuple[Sequence[Any], Program]] = {}
        self._memory: dict[tuple[str, str], RuleMemory] = {}
        self.last: dict[str, RulesVerdict] = {}

    def program(self, rules: Sequence[Any]) -> Program:
        """The compiled form of a rule list (validated models or checked JSON objects).

        The same list object (a device's or user's configuration, replaced, never edited in
        place, when it changes) is answered by identity: dumping every EVSE's rules to JSON
        for the content key every cycle cost ~19 ms per 1000 EVSEs."""
        seen = self._by_identity.get(id(rules))
        if seen is not None and seen[0] is rules:
            return seen[1]
        program = self._compiled(rules)
        if len(self._by_identity) > 1024:
            self._by_identity.clear()
        self._by_identity[id(rules)] = (rules, program)  # the reference keeps the id unique
        return program

    def _compiled(self, rules: Sequence[Any]) -> Program:
        raw = [r.model_dump(by_alias=True) if hasattr(r, "model_dump") else r for r in rules]
        key = json.dumps(raw, sort_keys=True)
        program = self._programs.get(key)
        if program is None:
            if len(self._programs) > 256:
                self._programs.clear()
            try:
                program = compile_rules(validate_rules(raw))
            except RuleError:
                # stored before validation existed: such rules never let it charge
                program = compile_rules(validate_rules([{"mode": 0, "current": 0}]))
            self._programs[key] = program
        return program

    def forget(self, present: Iterable[str]) -> None:
        """Drop memory of EVSEs that no longer exist."""
        keep = set(present)
        for key in [k for k in self._memory if k[0] not in keep]:
            del self._memory[key]
        for dev_id in [k for k in self.last if k not in keep]:
            del self.last[dev_id]

    def apply(self, evse: EvseInput, evse_rules: Sequence[Any], *, evse_rules_on: bool = True,
              user_rules: Sequence[Any] = (), user_rules_on: bool = True,
              rules_owner: str = "", view: SiteView | None = None, now_s: float,
              notes: list[str] | None = None, env: FormulaEnv | None = None) -> EvseInput:
        """`evse` with the rules' verdict applied (see the module docstring). `env` resolves
        formula names (M1.current_l1, CM.x …); None = the view's site names."""
        verdict = self.decide(evse, evse_rules if evse_rules_on else (),
                              user_rules if user_rules_on else (), rules_owner,
                              view or SiteView(), now_s, env)
        self.last[evse.dev_id] = verdict
        if verdict.limit_ma is None:
            return evse
        if notes is not None:
            kind = "surplus EVSE" if verdict.surplus else "normal"
            notes.append(f"{evse.dev_id}: charging rules ({kind}): {verdict.reason}")
        return with_verdict(evse, verdict)

    def decide(self, evse: EvseInput, evse_rules: Sequence[Any], user_rules: Sequence[Any],
               rules_owner: str, view: SiteView, now_s: float,
               env: FormulaEnv | None = None) -> RulesVerdict:
        """The lower of the EVSE's and the user's/card's rule results."""
        dev_id = evse.dev_id
        if not evse.connected:  # a new session starts with fresh holds and triggers
            self._memory.pop((dev_id, EVSE), None)
            self._memory.pop((dev_id, USER), None)
        if not evse_rules and not user_rules:
            return NO_VERDICT
        ctx = self._context(evse, view, now_s, env)
        results: list[tuple[RuleResult, str]] = []
        for owner, rules, label in ((EVSE, evse_rules, "EVSE rules"),
                                    (USER, user_rules, rules_owner or "user rules")):
            if not rules:
                self._memory.pop((dev_id, owner), None)
                continue
            program = self.program(rules)
            result, memory = evaluate(program, ctx, self._memory.get((dev_id, owner)))
            self._memory[(dev_id, owner)] = memory
            if result.limit_ma is not None:
                results.append((result, label))
        if not results:
            return NO_VERDICT
        result, label = min(results, key=lambda r: r[0].limit_ma or 0)
        return _verdict(result, label, evse, ctx)

    def _context(self, evse: EvseInput, view: SiteView, now_s: float,
                 env: FormulaEnv | None) -> RuleContext:
        weekday, minute, time_names = _local_time(now_s, self.tz)
        mask = evse.phases_mask & 0b111 or 0b111
        rotation = evse.phase_rotation_deg if evse.phase_rotation_deg in (0, 120, 240) else 0
        shift = rotation // 120
        phases = tuple(view.phase_values((i + shift) % 3) for i in range(3) if mask >> i & 1)
        return RuleContext(
            now_s=now_s, weekday=weekday, dayminute=minute, surplus_w=view.surplus_w,
            grid_w=view.grid_w, solar_w=view.solar_w, voltage_v=view.voltage_v,
            charge_phases=phase_count(mask), phases=phases, num_charging=view.num_charging,
            min_current_ma=evse.min_current_ma, max_current_ma=evse.max_current_ma,
            env=_Names(env, view.names, time_names))


def _verdict(result: RuleResult, label: str, evse: EvseInput, ctx: RuleContext
             ) -> RulesVerdict:
    limit = result.limit_ma
    assert limit is not None
    reason = result.reason
    base = {"limit_ma": limit, "source": label, "variables": result.variables}
    if result.surplus and result.applied and limit >= 0:
        # A surplus EVSE: the planner starts it when the surplus covers its minimum (after
        # surplus_start_delay), holds it through clouds (its stop delay) and stops it; the
        # rule's value (the surplus current) caps it no lower than the minimum.
        return RulesVerdict(max_ma=max(limit, ctx.min_current_ma), surplus=True,
                            stop_delay_s=result.stop_delay_s, reason=f"{label}: {reason}",
                            **base)
    if limit <= 0 or not result.applied:
        return RulesVerdict(allowed=False, surplus=result.surplus, reason=f"{label}: {reason}",
                            **base)
    if result.surplus:
        return RulesVerdict(max_ma=max(limit, ctx.min_current_ma), surplus=True,
                            stop_delay_s=result.stop_delay_s, reason=f"{label}: {reason}",
                            **base)
    if limit < ctx.min_current_ma:
        return RulesVerdict(allowed=False, reason=f"{label}: {reason}: {limit} mA is below "
                            f"the minimum {ctx.min_current_ma} mA", **base)
    return RulesVerdict(max_ma=limit, reason=f"{label}: {reason}", **base)


def with_verdict(evse: EvseInput, verdict: RulesVerdict) -> EvseInput:
    """The planner input with a rules verdict applied (authorisation/override blocks stay)."""
    if verdict.limit_ma is None:
        return evse
    changes: dict[str, Any] = {"surplus": verdict.surplus,
                               "surplus_stop_delay_s": verdict.stop_delay_s}
    if not verdict.allowed:
        if evse.allowed:
            changes.update(allowed=False, not_allowed_reason=verdict.reason)
    elif verdict.max_ma is not None and verdict.max_ma < evse.max_current_ma:
        changes.update(max_current_ma=verdict.max_ma, max_reason=verdict.reason)
    return replace(evse, **changes)
