"""The charging-rule engine: a pure function from rules, a context and memory to a limit.

    program = compile_rules(validated_rules)           # once per configuration change
    result, memory = evaluate(program, ctx, memory)      # every cycle

No I/O and no clock: the time (`now_s` for holds and triggers, weekday and minute of the local
day for windows) and every measurement come in `RuleContext`; what must survive to the next
cycle (undercut holds, trigger variables) is `RuleMemory`, handed back. Tests drive it with a
fake clock.

Evaluation (docs/charging-rules.md): the rule value starts at 0 mA per phase. Rules with the
PV-surplus flag (`solar: true`, legacy mode 5) run first, top to bottom; a result ≥ 0 makes the
EVSE a surplus EVSE, −1 opts out. Then the other rules run, starting from that value (readable
as `lb_cur`); if one of them set the value, it replaces the surplus value and the EVSE charges
as a normal one. `End` stops a pass. A value below the EVSE's minimum while some
rule is in its undercut hold (`_undercut`) becomes the minimum. The rules run once per phase
the EVSE charges on (`M1.current` is that phase's current); the lowest result is the limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from chargebrain.core.formula import Formula, FormulaEnv, FormulaError, compile_formula
from chargebrain.core.rules.schema import INPUT_RE, LegacyRule, Rule

MAX_STEPS = 1000  # loop guard for `goto`
NO_SURPLUS = -1.0  # a PV rule's "this EVSE does not take part in surplus charging"

Value = float | Formula


class PhaseValues(NamedTuple):
    """Per-phase measurements for rules without the PV flag (mA, the phase's own value)."""

    surplus_ma: float = 0.0
    grid_import_ma: float = 0.0
    grid_export_ma: float = 0.0
    solar_ma: float = 0.0


@dataclass(frozen=True, slots=True)
class RuleContext:
    """Everything a rule may look at, for one EVSE in one cycle.

    `now_s` is the caller's clock (holds and triggers are measured on it); `weekday` (0 Monday …
    6 Sunday) and `dayminute` (0–1439) are local time. Powers are whole-site W (`grid_w` + =
    import); rules with the PV flag divide them by `voltage_v` × `charge_phases` (the phases
    the car charges on, predicted). `phases` holds one `PhaseValues` per phase the EVSE charges
    on, for rules without the flag. `env` resolves formula names (`M1.current_l1`, `CM.x` …).
    """

    now_s: float
    weekday: int
    dayminute: int
    surplus_w: float = 0.0
    grid_w: float = 0.0
    solar_w: float = 0.0
    voltage_v: int = 230
    charge_phases: int = 3
    phases: tuple[PhaseValues, ...] = (PhaseValues(),)
    num_charging: int = 0
    min_current_ma: int = 6000
    max_current_ma: int = 16000
    step_ma: int = 100  # legacy mode 5 rounds the surplus current down to this step
    env: FormulaEnv | None = None


@dataclass(frozen=True, slots=True)
class RuleMemory:
    """Per-rule state between cycles: when each held condition last held (key: pass, rule
    position, phase) and until when each triggered variable stays 1."""

    held_s: Mapping[str, float] = field(default_factory=dict)
    triggers_s: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What the rules say about one EVSE.

    `limit_ma` None: no active rule, no limit. 0 (or below the minimum): the rules do not let it
    charge. `surplus`: a surplus EVSE (charges from the PV surplus only); `stop_delay_s` is its
    undercut time (how long it may stay at the minimum when the surplus drops). `reason` names
    the rule that decided ("rule 2: solar surplus"); `variables` are those the rules set
    (lower-case names, `cm.x` / `e1.x`); `errors` are formula failures (their value fell to 0).
    """

    limit_ma: int | None
    surplus: bool = False
    stop_delay_s: float = 0.0
    reason: str = ""
    rule_id: int = 0
    undercut: bool = False
    variables: Mapping[str, float] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    applied: bool = False  # a rule's action set the value (False: the start value, 0)


NO_RULES = RuleResult(None)


# -- compiled form ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Cond:
    kind: str  # time, time_range, surplus, grid_import, grid_export, solar, charging_cars,
    # formula, input, always, legacy
    negate: bool = False
    undercut_s: float = 0.0
    start: Value = 0.0
    end: Value = 0.0
    value: Value = 0.0
    input_name: str = ""  # "m1.input1"
    input_level: int = 1
    # legacy only
    window: tuple[int, int] | None = None  # (start minute, duration minutes); None = all day
    price_level: int = 0
    threshold: str = ""  # "", "solar" or "surplus": legacy modes 2–5
    threshold_ma: float = 0.0  # 0 with "surplus": the EVSE's minimum


@dataclass(frozen=True, slots=True)
class _Action:
    kind: str
    value: Value | None = None
    factor: Value = 1.0
    var: str = ""
    duration: Value = 0.0
    goto: int = 0
    end: bool = False
    mode: int = -1  # legacy mode


@dataclass(frozen=True, slots=True)
class Step:
    """One compiled rule."""

    index: int
    rule_id: int
    days: int
    pv: bool
    cond: _Cond
    action: _Action
    legacy: bool = False

    @property
    def label(self) -> str:
        return f"rule {self.rule_id}" if self.rule_id else f"rule #{self.index + 1}"


@dataclass(frozen=True, slots=True)
class Program:
    """A compiled rule list, split into the PV-surplus pass and the normal pass."""

    pv: tuple[Step, ...] = ()
    normal: tuple[Step, ...] = ()
    per_phase: bool = True  # some rule may give each phase its own result

    @property
    def empty(self) -> bool:
        return not self.pv and not self.normal


def _value(v: float | str | None) -> Value:
    if v is None:
        return 0.0
    return float(v) if isinstance(v, (int, float)) else compile_formula(v)


def compile_rules(rules: list[Rule | LegacyRule]) -> Program:
    """Compile validated rules (schema.validate_rules); disabled rules are left out."""
    pv: list[Step] = []
    normal: list[Step] = []
    for index, rule in enumerate(rules):
        if not rule.enabled:
            continue
        step = _legacy_step(index, rule) if isinstance(rule, LegacyRule) else _step(index, rule)
        (pv if step.pv else normal).append(step)
    steps = pv + normal
    return Program(tuple(pv), tuple(normal), any(_phase_dependent(s) for s in steps))


_PER_PHASE_CONDS = {"surplus", "grid_import", "grid_export", "solar"}


def _phase_dependent(step: Step) -> bool:
    """May this rule differ between phases? (formulas may read `X.current`; without the PV
    flag measurement conditions and deliver actions read the phase's own value)"""
    c, a = step.cond, step.action
    values = (c.start, c.end, c.value, a.value, a.factor, a.duration)
    if any(v is not None and not isinstance(v, float) for v in values):
        return True
    if step.pv or step.legacy:
        return False
    return c.kind in _PER_PHASE_CONDS or a.kind in _DELIVER


def _step(index: int, rule: Rule) -> Step:
    c = rule.cond
    cond = _Cond(kind=c.type, negate=c.not_, undercut_s=float(c.undercut_s))
    if c.type == "time":
        cond = _Cond("time", c.not_, float(c.undercut_s), start=float(c.start),
                     end=float(c.end))
    elif c.type == "time_range":
        cond = _Cond("time_range", c.not_, float(c.undercut_s), start=_value(c.start),
                     end=_value(c.end))
    elif c.type == "input":
        cond = _Cond("input", c.not_, float(c.undercut_s),
                     input_name=f"{c.device.lower()}.input{c.input}")
    elif c.type != "always":
        cond = _Cond(c.type, c.not_, float(c.undercut_s), value=_value(c.value))
    a = rule.action
    action = _Action(a.type, None if a.value is None else _value(a.value), _value(a.factor),
                     a.var.lower(), _value(a.duration), a.goto, a.end or a.type == "end")
    return Step(index, rule.id, rule.days, rule.solar, cond, action)


def _legacy_step(index: int, rule: LegacyRule) -> Step:
    input_name, level = "", 1
    if rule.input:
        m = INPUT_RE.match(rule.input)
        assert m is not None  # validated
        input_name = f"{m.group(1).lower()}.input{int(m.group(2))}"
        level = int(m.group(3) or 1)
    threshold = "surplus" if rule.mode == 5 else "solar" if rule.mode in (2, 3, 4) else ""
    cond = _Cond("legacy", False, float(rule.udur), input_name=input_name, input_level=level,
                 window=(rule.time, rule.dur) if rule.dur else None,
                 price_level=rule.price_level, threshold=threshold,
                 threshold_ma=float(rule.solar))
    amount: Value = _value(rule.expr) if rule.expr else float(rule.current)
    action = _Action("legacy", amount, mode=rule.mode)
    return Step(index, 0, rule.days, rule.mode == 5, cond, action, legacy=True)


# -- evaluation -------------------------------------------------------------------------------

class _Env:
    """Formula names during one pass: rule variables over the caller's env; `X.current` is
    the current of the phase being evaluated."""

    __slots__ = ("base", "lb_cur", "params", "phase", "rule_val", "vars")

    def __init__(self, base: FormulaEnv | None, phase: int, variables: dict[str, float],
                 params: dict[int, float], lb_cur: float) -> None:
        self.base = base
        self.phase = phase
        self.vars = variables
        self.params = params
        self.lb_cur = lb_cur
        self.rule_val = 0.0

    def lookup(self, name: str) -> float | None:
        if name in self.vars:
            return self.vars[name]
        if name in ("cm._rule_val", "_rule_val"):
            return self.rule_val
        if name == "lb_cur" or name.startswith("lb_cur_l"):
            return self.lb_cur
        if name in ("cm._undercut", "_undercut"):
            return self.vars.get("cm._undercut", 0.0)
        if self.base is None:
            return None
        if name.endswith(".current"):
            got = self.base.lookup(f"{name}_l{self.phase}")
            if got is not None:
                return got
        return self.base.lookup(name)

    def param(self, rule_id: int) -> float | None:
        if rule_id in self.params:
            return self.params[rule_id]
        return self.base.param(rule_id) if self.base is not None else None


class _Run:
    """The mutable state of one pass for one phase."""

    def __init__(self, ctx: RuleContext, memory: RuleMemory, held: dict[str, float],
                 triggers: dict[str, float], env: _Env, tag: str) -> None:
        self.ctx = ctx
        self.memory = memory
        self.held = held
        self.triggers = triggers
        self.env = env
        self.tag = tag
        self.value = 0.0
        self.fired = False  # some condition held (after links)
        self.applied = False  # some action set the value
        self.undercut = False
        self.reason = ""
        self.rule_id = 0
        self.errors: list[str] = []

    def number(self, value: Value, step: Step, what: str) -> float | None:
        if isinstance(value, float):
            return value
        try:
            return value.evaluate(self.env)
        except FormulaError as exc:
            self.errors.append(f"{step.label} {what}: {exc}")
            return None


def _per_phase(ctx: RuleContext, w: float) -> float:
    """A whole-site power as mA per charging phase (the PV flag's view)."""
    return w * 1000.0 / (max(1, ctx.voltage_v) * max(1, ctx.charge_phases))


def _quantity(kind: str, step: Step, run: _Run) -> float:
    ctx = run.ctx
    if kind == "charging_cars":
        return float(ctx.num_charging)
    if step.pv or step.legacy:
        if kind == "surplus":
            return _per_phase(ctx, ctx.surplus_w)
        if kind == "grid_import":
            return _per_phase(ctx, max(0.0, ctx.grid_w))
        if kind == "grid_export":
            return _per_phase(ctx, max(0.0, -ctx.grid_w))
        return _per_phase(ctx, ctx.solar_w)
    p = ctx.phases[run.env.phase - 1]
    return {"surplus": p.surplus_ma, "grid_import": p.grid_import_ma,
            "grid_export": p.grid_export_ma, "solar": p.solar_ma}[kind]


def _in_window(minute: int, start: float, end: float) -> bool:
    if start == end:
        return True
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # across midnight


def _legacy_window(step: Step, ctx: RuleContext) -> bool:
    """Legacy: `days` name the day a window starts on; a window may run past midnight."""
    if step.cond.window is None:
        return bool(step.days >> ctx.weekday & 1)
    start, dur = step.cond.window
    minute = ctx.dayminute
    if start <= minute < start + dur:
        return bool(step.days >> ctx.weekday & 1)
    if minute < start + dur - 1440:  # in the part after midnight of yesterday's window
        return bool(step.days >> ((ctx.weekday - 1) % 7) & 1)
    return False


def _input_active(name: str, level: int, run: _Run) -> bool:
    got = run.env.lookup(name)
    if got is None:
        return False
    return (got != 0) == (level == 1)


def _raw_condition(step: Step, run: _Run) -> bool:
    c = step.cond
    ctx = run.ctx
    kind = c.kind
    if kind == "always":
        return True
    if kind == "time":
        return _in_window(ctx.dayminute, float(c.start), float(c.end))  # type: ignore[arg-type]
    if kind == "time_range":
        start = run.number(c.start, step, "start")
        end = run.number(c.end, step, "end")
        return start is not None and end is not None and _in_window(ctx.dayminute, start, end)
    if kind == "input":
        return _input_active(c.input_name, c.input_level, run)
    if kind == "formula":
        got = run.number(c.value, step, "condition")
        return got is not None and got > 0
    if kind == "legacy":
        return _legacy_condition(step, run)
    threshold = run.number(c.value, step, "condition")
    return threshold is not None and _quantity(kind, step, run) >= threshold


def _legacy_condition(step: Step, run: _Run) -> bool:
    c = step.cond
    ctx = run.ctx
    if not _legacy_window(step, ctx):
        return False
    if c.input_name and not _input_active(c.input_name, c.input_level, run):
        return False
    if c.price_level:
        level = run.env.lookup("cm._price_level")
        if level is None or level > c.price_level:
            return False
    if c.threshold == "surplus":
        # Mode 5 without its own `solar` threshold: whether the surplus covers the minimum,
        # and for how long (start delay, the `udur` hold through clouds), is the planner's
        # call (core.plan): the rule only says "a surplus EVSE now" (its window, days, input).
        if not c.threshold_ma:
            return True
        return _quantity("surplus", step, run) >= c.threshold_ma
    if c.threshold == "solar" and c.threshold_ma:
        return _quantity("solar", step, run) >= c.threshold_ma
    return True


def _condition(step: Step, run: _Run, phase: int) -> bool:
    """The rule's own condition with Not and its undercut hold."""
    holds = _raw_condition(step, run) != step.cond.negate
    hold_s = step.cond.undercut_s
    if hold_s <= 0:
        return holds
    key = f"{run.tag}{step.index}:{phase}"
    if holds:
        run.held[key] = run.ctx.now_s
        return True
    since = run.memory.held_s.get(key)
    if since is not None and run.ctx.now_s - since < hold_s:
        run.held[key] = since
        run.undercut = True
        return True
    return False


_DELIVER = {"surplus": "surplus", "solar": "solar", "grid_import": "grid_import",
            "grid_export": "grid_export"}
_TEXT = {"set": "value", "surplus": "PV surplus", "solar": "solar power",
         "grid_import": "grid supply", "grid_export": "feed-in"}
_LEGACY_TEXT = {0: "absolute current", 1: "relative current", 2: "solar current",
                3: "relative solar current", 4: "solar current minus value",
                5: "solar surplus"}


def _act(step: Step, run: _Run) -> int | None:
    """Run the action; the index of the next step for `goto` (None: go on)."""
    a = step.action
    env = run.env
    kind = a.kind
    if kind == "set" or kind in _DELIVER:
        if kind == "set":
            amount = run.number(a.value or 0.0, step, "value")
        else:
            factor = run.number(a.factor, step, "factor")
            amount = None if factor is None else _quantity(kind, step, run) * factor
        run.value = 0.0 if amount is None else amount
        run.reason = f"{step.label}: {_TEXT[kind]}"
        run.applied = True
    elif kind == "legacy":
        _legacy_act(step, run)
        run.applied = True
    elif kind == "set_var":
        got = run.number(a.value or 0.0, step, "value")
        if got is not None:
            env.vars[a.var] = got
            if a.var == "cm._rule_id":
                run.rule_id = int(got)
    elif kind in ("trigger_var", "retrigger_var"):
        until = run.triggers.get(a.var)
        if kind == "retrigger_var" or until is None or run.ctx.now_s >= until:
            dur = run.number(a.duration, step, "duration") or 0.0
            run.triggers[a.var] = run.ctx.now_s + max(0.0, dur)
        env.vars[a.var] = 1.0 if run.ctx.now_s < run.triggers[a.var] else 0.0
    elif kind == "param":
        got = run.number(a.value or 0.0, step, "value")
        if got is not None:
            env.params[step.rule_id] = got
    return None


def _legacy_act(step: Step, run: _Run) -> None:
    a = step.action
    ctx = run.ctx
    mode = a.mode
    amount = run.number(a.value or 0.0, step, "expr")
    if amount is None:
        run.value = 0.0
    elif mode == 0:
        run.value = amount
    elif mode == 1:
        run.value = ctx.max_current_ma + amount
    elif mode == 5:
        step_ma = max(1, ctx.step_ma)
        # no surplus (grid import) is 0, never the −1 that opts out of surplus charging
        run.value = max(0.0, math.floor(_quantity("surplus", step, run) / step_ma) * step_ma)
    else:
        solar = _quantity("solar", step, run)
        run.value = {2: solar, 3: solar + amount, 4: solar - amount}[mode]
    run.reason = f"{step.label}: {_LEGACY_TEXT[mode]}"


def _run_pass(steps: tuple[Step, ...], run: _Run, phase: int) -> None:
    ctx = run.ctx
    i = 0
    count = 0
    link: tuple[str, bool] | None = None
    while i < len(steps):
        count += 1
        if count > MAX_STEPS:
            run.errors.append(f"rules stopped after {MAX_STEPS} steps (goto loop?)")
            return
        step = steps[i]
        i += 1
        if not step.legacy and not step.days >> ctx.weekday & 1:
            continue
        run.env.rule_val = run.value
        own = _condition(step, run, phase)
        result = own
        if link is not None:
            result = (own and link[1]) if link[0] == "and" else (own or link[1])
            link = None
        kind = step.action.kind
        if kind in ("and", "or"):
            link = (kind, result)
            continue
        if not result:
            continue
        run.fired = True
        if step.rule_id:
            run.rule_id = step.rule_id
            run.env.vars["cm._rule_id"] = float(step.rule_id)
        if kind == "goto":
            target = next((k for k, s in enumerate(steps) if s.rule_id == step.action.goto),
                          None)
            if target is not None:
                i = target
            continue
        _act(step, run)
        if step.action.end:
            return


def _stop_delay(steps: tuple[Step, ...], weekday: int) -> float:
    return max((s.cond.undercut_s for s in steps if s.legacy or s.days >> weekday & 1),
               default=0.0)


@dataclass
class _PhaseOutcome:
    value: float
    surplus: bool
    reason: str
    rule_id: int
    undercut: bool
    variables: dict[str, float]
    errors: list[str]
    applied: bool


def evaluate(program: Program, ctx: RuleContext, memory: RuleMemory | None = None
             ) -> tuple[RuleResult, RuleMemory]:
    """The rules' limit for one EVSE now, and the memory for the next cycle."""
    memory = memory or RuleMemory()
    if program.empty:
        return NO_RULES, RuleMemory()
    held: dict[str, float] = {}
    triggers: dict[str, float] = dict(memory.triggers_s)
    best: _PhaseOutcome | None = None
    phases = max(1, len(ctx.phases)) if program.per_phase else 1
    for phase in range(1, phases + 1):
        outcome = _evaluate_phase(program, ctx, memory, held, triggers, phase)
        if best is None or outcome.value < best.value:
            best = outcome
    assert best is not None
    variables = dict(best.variables)
    now = ctx.now_s
    for var, until in list(triggers.items()):
        variables[var] = 1.0 if now < until else 0.0
        if now >= until:
            del triggers[var]
    limit = max(0, int(best.value))
    reason = best.reason or "no rule applies"
    if best.undercut and limit < ctx.min_current_ma:
        limit = ctx.min_current_ma
        reason = f"{reason} (undercut: held at the minimum)" if best.reason else \
            "undercut: held at the minimum"
    if best.errors:
        reason = f"{reason}; {best.errors[0]}"
    stop_delay = _stop_delay(program.pv, ctx.weekday) if best.surplus else 0.0
    result = RuleResult(limit, best.surplus, stop_delay, reason, best.rule_id, best.undercut,
                        variables, tuple(best.errors), best.applied or best.undercut)
    return result, RuleMemory(held, triggers)


def _evaluate_phase(program: Program, ctx: RuleContext, memory: RuleMemory,
                    held: dict[str, float], triggers: dict[str, float], phase: int
                    ) -> _PhaseOutcome:
    variables: dict[str, float] = {}
    now = ctx.now_s
    for var, until in triggers.items():
        variables[var] = 1.0 if now < until else 0.0
    params: dict[int, float] = {}
    env = _Env(ctx.env, phase, variables, params, 0.0)
    surplus = False
    value = 0.0
    reason = ""
    rule_id = 0
    undercut = False
    applied = False
    errors: list[str] = []
    if program.pv:
        run = _Run(ctx, memory, held, triggers, env, "p")
        _run_pass(program.pv, run, phase)
        errors += run.errors
        undercut = run.undercut
        rule_id = run.rule_id
        if run.value > NO_SURPLUS:
            surplus, value, applied = True, max(0.0, run.value), run.applied
            reason = run.reason or "no PV-surplus rule applies"
    if program.normal:
        env.lb_cur = value
        run = _Run(ctx, memory, held, triggers, env, "n")
        run.value = value
        _run_pass(program.normal, run, phase)
        errors += run.errors
        undercut = undercut or run.undercut
        if run.applied:
            surplus, value, applied = False, run.value, True
            reason = run.reason or reason
            rule_id = run.rule_id or rule_id
    if variables.get("cm._undercut") is not None:
        undercut = variables["cm._undercut"] > 0
    return _PhaseOutcome(value, surplus, reason, rule_id, undercut, variables, errors, applied)
