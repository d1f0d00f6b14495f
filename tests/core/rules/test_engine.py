"""The rule engine with a fake clock: windows, weekdays, undercut, links, goto, every mode."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from chargebrain.core.rules import (
    PhaseValues,
    RuleContext,
    RuleMemory,
    RuleResult,
    compile_rules,
    evaluate,
    validate_rules,
)

MON, TUE, WED, SAT, SUN = 0, 1, 2, 5, 6


@dataclass
class Names:
    """A formula environment: a dict of lower-case names and rule parameters."""

    values: dict[str, float] = field(default_factory=dict)
    params: dict[int, float] = field(default_factory=dict)

    def lookup(self, name: str) -> float | None:
        return self.values.get(name)

    def param(self, rule_id: int) -> float | None:
        return self.params.get(rule_id)


def at(hhmm: str, weekday: int = MON, **kw: object) -> RuleContext:
    h, m = hhmm.split(":")
    return RuleContext(now_s=kw.pop("now_s", 0.0), weekday=weekday,  # type: ignore[arg-type]
                       dayminute=int(h) * 60 + int(m), **kw)  # type: ignore[arg-type]


def run(rules: list[dict], ctx: RuleContext, memory: RuleMemory | None = None
        ) -> tuple[RuleResult, RuleMemory]:
    return evaluate(compile_rules(validate_rules(rules)), ctx, memory)


def limit(rules: list[dict], ctx: RuleContext) -> int | None:
    return run(rules, ctx)[0].limit_ma


class Clock:
    """A fake clock that walks a rule list through time, carrying the memory."""

    def __init__(self, rules: list[dict], base: RuleContext) -> None:
        self.program = compile_rules(validate_rules(rules))
        self.base = base
        self.memory = RuleMemory()
        self.t = 0.0

    def step(self, to_s: float, **changes: object) -> RuleResult:
        self.t = to_s
        ctx = replace(self.base, now_s=to_s, **changes)  # type: ignore[arg-type]
        result, self.memory = evaluate(self.program, ctx, self.memory)
        return result


# -- no rules, start value ------------------------------------------------------------------

def test_no_rules_means_no_limit_and_a_rule_list_starts_at_zero():
    assert limit([], at("12:00")) is None
    assert limit([{"enabled": False, "mode": 0, "current": 10000}], at("12:00")) is None
    # one rule that does not apply: the value stays at its start, 0 (no charging)
    result, _ = run([{"mode": 0, "current": 10000, "time": 1320, "dur": 60}], at("12:00"))
    assert result.limit_ma == 0 and not result.applied
    assert result.reason == "no rule applies"


# -- windows and weekdays -------------------------------------------------------------------

NIGHT = {"mode": 0, "current": 6000, "time": 22 * 60, "dur": 8 * 60, "days": 0b0011111}


@pytest.mark.parametrize(("hhmm", "weekday", "expected"), [
    ("21:59", MON, 0), ("22:00", MON, 6000), ("23:59", MON, 6000),
    ("00:00", TUE, 6000), ("05:59", TUE, 6000), ("06:00", TUE, 0),
    # Friday night's window runs into Saturday morning (the day it starts on counts)
    ("23:00", 4, 6000), ("03:00", SAT, 6000), ("23:00", SAT, 0), ("03:00", SUN, 0),
    # Sunday is off, so Monday 03:00 (the tail of Sunday's window) is off too
    ("03:00", MON, 0),
])
def test_legacy_window_across_midnight_with_weekdays(hhmm, weekday, expected):
    assert limit([NIGHT], at(hhmm, weekday)) == expected


def test_legacy_whole_day_window_and_days_bits():
    rule = {"mode": 0, "current": 10000, "days": 1 << SAT | 1 << SUN}
    assert limit([rule], at("12:00", SAT)) == 10000
    assert limit([rule], at("12:00", SUN)) == 10000
    assert limit([rule], at("12:00", WED)) == 0


@pytest.mark.parametrize(("hhmm", "expected"), [
    ("21:59", 0), ("22:00", 11000), ("02:00", 11000), ("05:59", 11000), ("06:00", 0)])
def test_time_condition_across_midnight(hhmm, expected):
    rule = {"cond": {"type": "time", "start": 22 * 60, "end": 6 * 60},
            "action": {"type": "set", "value": 11000}}
    assert limit([rule], at(hhmm)) == expected


def test_new_rule_weekdays_and_not():
    rule = {"days": 1 << SAT | 1 << SUN, "cond": {"type": "time", "start": 600, "end": 720,
                                                 "not": True},
            "action": {"type": "set", "value": 16000}}
    assert limit([rule], at("09:00", SAT)) == 16000  # outside 10–12 on a weekend day
    assert limit([rule], at("11:00", SAT)) == 0  # inside: Not makes it false
    assert limit([rule], at("09:00", MON)) == 0  # not a rule day: ignored


def test_time_range_with_parameters():
    """The reference example: parameters 12 = 600 and 13 = 720 → 10:00–12:00."""
    rules = [{"id": 12, "action": {"type": "param", "value": 600}},
             {"id": 13, "action": {"type": "param", "value": 720}},
             {"cond": {"type": "time_range", "start": "param(12)", "end": "param(13)"},
              "action": {"type": "set", "value": 9000}}]
    assert limit(rules, at("09:59")) == 0
    assert limit(rules, at("10:00")) == 9000
    assert limit(rules, at("11:59")) == 9000
    assert limit(rules, at("12:00")) == 0


# -- undercut through a cloud ---------------------------------------------------------------

SURPLUS_RULE = {"id": 1, "solar": True,
                "cond": {"type": "surplus", "value": 6500, "undercut_s": 300},
                "action": {"type": "surplus", "end": True}}


def test_undercut_holds_the_minimum_through_a_300_s_cloud_then_stops():
    clock = Clock([SURPLUS_RULE], at("12:00", charge_phases=3, min_current_ma=6000))
    sunny, cloudy = 5500.0, 800.0  # W: 7.97 A per phase on 3 phases, then 1.16 A
    r = clock.step(0, surplus_w=sunny)
    assert r.surplus and r.limit_ma == 7971 and not r.undercut
    assert r.reason == "rule 1: PV surplus" and r.stop_delay_s == 300
    for t in (3, 60, 150, 299):
        r = clock.step(t, surplus_w=cloudy)
        assert (r.limit_ma, r.undercut, r.surplus) == (6000, True, True), t
    r = clock.step(300, surplus_w=cloudy)
    assert r.limit_ma == 0 and not r.undercut and not r.applied  # hold over: stop
    r = clock.step(303, surplus_w=sunny)
    assert r.limit_ma == 7971


def test_a_short_cloud_restarts_the_hold_when_the_sun_returns():
    clock = Clock([SURPLUS_RULE], at("12:00", charge_phases=3))
    clock.step(0, surplus_w=5500)
    assert clock.step(200, surplus_w=500).undercut
    assert not clock.step(210, surplus_w=5500).undercut  # sun again: the hold ends
    assert clock.step(500, surplus_w=500).limit_ma == 6000  # a new 300 s hold from 210 s…
    assert clock.step(505, surplus_w=500).limit_ma == 6000
    assert clock.step(509, surplus_w=500).limit_ma == 6000
    assert clock.step(510, surplus_w=500).limit_ma == 0  # …from the last time it held


def test_a_rule_can_clear_the_undercut_flag():
    rules = [SURPLUS_RULE | {"action": {"type": "surplus"}},
             {"action": {"type": "set_var", "var": "CM._undercut", "value": 0}}]
    clock = Clock(rules, at("12:00", charge_phases=3))
    clock.step(0, surplus_w=5500)
    r = clock.step(10, surplus_w=500)
    assert r.limit_ma == 724  # held, but the flag cleared: no lift to the minimum


# -- And / Or / Go to -----------------------------------------------------------------------

def _and(cond: dict) -> dict:
    return {"cond": cond, "action": {"type": "and"}}


def test_and_links_conditions():
    rules = [_and({"type": "time", "start": 600, "end": 900}),
             {"cond": {"type": "charging_cars", "value": 2},
              "action": {"type": "set", "value": 8000}}]
    assert limit(rules, at("11:00", num_charging=2)) == 8000
    assert limit(rules, at("11:00", num_charging=1)) == 0  # own condition false
    assert limit(rules, at("16:00", num_charging=2)) == 0  # linked condition false


def test_or_links_conditions_and_chains():
    rules = [{"cond": {"type": "time", "start": 0, "end": 360}, "action": {"type": "or"}},
             {"cond": {"type": "time", "start": 1320, "end": 1440}, "action": {"type": "or"}},
             {"cond": {"type": "formula", "value": "CM.boost"},
              "action": {"type": "set", "value": 12000}}]
    env = Names({"cm.boost": 0.0})
    assert limit(rules, at("03:00", env=env)) == 12000
    assert limit(rules, at("23:00", env=env)) == 12000
    assert limit(rules, at("12:00", env=env)) == 0
    assert limit(rules, at("12:00", env=Names({"cm.boost": 1.0}))) == 12000


def test_goto_jumps_to_the_first_rule_with_that_id_and_end_stops():
    rules = [{"id": 1, "cond": {"type": "formula", "value": "CM.mode == 1"},
              "action": {"type": "goto", "goto": 5}},
             {"id": 2, "action": {"type": "set", "value": 6000, "end": True}},
             {"id": 5, "action": {"type": "set", "value": 16000, "end": True}},
             {"id": 6, "action": {"type": "set", "value": 7000}}]
    assert limit(rules, at("12:00", env=Names({"cm.mode": 1.0}))) == 16000
    assert limit(rules, at("12:00", env=Names({"cm.mode": 0.0}))) == 6000
    # a goto to an id that does not exist goes on with the next rule
    missing = [{"action": {"type": "goto", "goto": 99}},
               {"id": 2, "action": {"type": "set", "value": 6500}}]
    assert limit(missing, at("12:00")) == 6500


def test_goto_loop_is_cut_by_the_guard():
    rules = [{"id": 1, "action": {"type": "set", "value": 7000}},
             {"id": 2, "action": {"type": "goto", "goto": 1}}]
    result, _ = run(rules, at("12:00"))
    assert result.limit_ma == 7000
    assert result.errors and "goto loop" in result.errors[0]
    assert "goto loop" in result.reason


# -- variables and triggers -----------------------------------------------------------------

def test_set_variable_is_readable_further_down_and_reported():
    rules = [{"action": {"type": "set_var", "var": "CM.cap", "value": "9000 + 1000"}},
             {"action": {"type": "set", "value": "CM.cap"}}]
    result, _ = run(rules, at("12:00", env=Names()))
    assert result.limit_ma == 10000 and result.variables["cm.cap"] == 10000


def test_trigger_variable_runs_its_duration_and_rearms_only_after_expiry():
    rules = [{"cond": {"type": "formula", "value": "E1.button"},
              "action": {"type": "trigger_var", "var": "CM.boost", "duration": 60}},
             {"cond": {"type": "formula", "value": "CM.boost"},
              "action": {"type": "set", "value": 16000}}]
    pressed, idle = Names({"e1.button": 1.0}), Names({"e1.button": 0.0})
    clock = Clock(rules, at("12:00"))
    r = clock.step(0, env=pressed)
    assert r.limit_ma == 16000 and r.variables["cm.boost"] == 1
    assert clock.step(30, env=pressed).limit_ma == 16000  # still held: no re-arm
    assert clock.step(59, env=idle).limit_ma == 16000
    r = clock.step(60, env=idle)
    assert r.limit_ma == 0 and r.variables["cm.boost"] == 0  # expired 60 s after 0, not 30
    assert clock.step(61, env=pressed).limit_ma == 16000  # re-armed


def test_retrigger_variable_restarts_while_the_condition_holds():
    rules = [{"cond": {"type": "formula", "value": "E1.button"},
              "action": {"type": "retrigger_var", "var": "CM.boost", "duration": 60}},
             {"cond": {"type": "formula", "value": "CM.boost"},
              "action": {"type": "set", "value": 16000}}]
    pressed, idle = Names({"e1.button": 1.0}), Names({"e1.button": 0.0})
    clock = Clock(rules, at("12:00"))
    clock.step(0, env=pressed)
    clock.step(50, env=pressed)
    assert clock.step(100, env=idle).limit_ma == 16000  # 60 s from 50
    assert clock.step(110, env=idle).limit_ma == 0


# -- conditions on measurements -------------------------------------------------------------

def test_measurement_conditions_per_phase_without_the_pv_flag():
    phases = (PhaseValues(grid_import_ma=12000), PhaseValues(grid_import_ma=3000),
              PhaseValues(grid_import_ma=3000))
    rule = {"cond": {"type": "grid_import", "value": 10000},
            "action": {"type": "set", "value": 6000}}
    other = {"cond": {"type": "grid_import", "value": 10000, "not": True},
             "action": {"type": "set", "value": 16000}}
    # evaluated per phase: L1 has 12 A import, L2/L3 not; the lowest result is the limit
    assert limit([rule, other], at("12:00", phases=phases)) == 6000
    low = tuple(PhaseValues(grid_import_ma=3000) for _ in range(3))
    assert limit([rule, other], at("12:00", phases=low)) == 16000


def test_feed_in_solar_and_input_conditions():
    export = {"cond": {"type": "grid_export", "value": 2000}, "action": {"type": "set",
                                                                          "value": 7000}}
    ctx = at("12:00", phases=(PhaseValues(grid_export_ma=2500),))
    assert limit([export], ctx) == 7000
    solar = {"solar": True, "cond": {"type": "solar", "value": 6000},
             "action": {"type": "solar", "factor": 0.5}}
    assert limit([solar], at("12:00", solar_w=8280, charge_phases=3)) == 6000
    assert limit([solar], at("12:00", solar_w=4000, charge_phases=3)) == 0
    inp = {"cond": {"type": "input", "device": "M1", "input": 1},
           "action": {"type": "set", "value": 0}}
    rest = {"cond": {"type": "input", "device": "M1", "input": 1, "not": True},
            "action": {"type": "set", "value": 16000}}
    assert limit([inp, rest], at("12:00", env=Names({"m1.input1": 1.0}))) == 0
    assert limit([inp, rest], at("12:00", env=Names({"m1.input1": 0.0}))) == 16000


def test_deliver_actions_with_the_pv_flag_use_the_sum_over_predicted_phases():
    for kind, field_ in (("surplus", "surplus_w"), ("grid_import", "grid_w"),
                         ("solar", "solar_w")):
        rule = {"solar": True, "action": {"type": kind, "factor": 2}}
        ctx = at("12:00", charge_phases=1, **{field_: 1380.0})
        assert limit([rule], ctx) == 12000, kind
    rule = {"solar": True, "action": {"type": "grid_export"}}
    assert limit([rule], at("12:00", grid_w=-4140, charge_phases=3)) == 6000


# -- legacy modes ---------------------------------------------------------------------------

def test_legacy_mode_0_absolute_current_and_formula():
    assert limit([{"mode": 0, "current": 10000}], at("12:00")) == 10000
    flat = {"mode": 0, "expr": "16000 - M1.current"}
    env = Names({"m1.current_l1": 9000.0, "m1.current_l2": 2000.0, "m1.current_l3": 0.0})
    three = tuple(PhaseValues() for _ in range(3))
    # per phase: 7 A on L1, 14 A on L2, 16 A on L3 → the EVSE may draw 7 A
    assert limit([flat], at("12:00", env=env, phases=three)) == 7000


def test_legacy_mode_1_relative_to_the_evse_maximum():
    assert limit([{"mode": 1, "current": -4000}], at("12:00", max_current_ma=16000)) == 12000
    assert limit([{"mode": 1, "current": 2000}], at("12:00", max_current_ma=10000)) == 12000


def test_legacy_modes_2_to_4_follow_the_solar_current():
    ctx = at("12:00", solar_w=6900, charge_phases=3)  # 10 A per phase
    assert limit([{"mode": 2}], ctx) == 10000
    assert limit([{"mode": 3, "current": 2000}], ctx) == 12000
    assert limit([{"mode": 3, "current": -2000}], ctx) == 8000
    assert limit([{"mode": 4, "current": 3000}], ctx) == 7000
    env = Names({"m2.current_l1": 2500.0})
    assert limit([{"mode": 4, "expr": "M2.current"}],
                 at("12:00", solar_w=6900, charge_phases=3, env=env)) == 7500
    # `solar` is the start threshold of modes 2–4
    assert limit([{"mode": 2, "solar": 12000}], ctx) == 0


def test_legacy_mode_5_solar_surplus():
    """Mode 5: a surplus EVSE at surplus ÷ (voltage × phases), rounded down to 100 mA; its
    udur is the stop delay. Below the minimum the rule says what there is — the start delay,
    the hold at the minimum through clouds and the stop are the planner's (core.plan,
    tests/core/test_surplus.py), so the two never hold twice."""
    rule = {"mode": 5, "udur": 300}
    clock = Clock([rule], at("12:00", charge_phases=3, min_current_ma=6000))
    r = clock.step(0, surplus_w=0)
    assert (r.limit_ma, r.surplus, r.applied) == (0, True, True)  # night: nothing
    r = clock.step(5, surplus_w=-2000)
    assert (r.limit_ma, r.surplus) == (0, True)  # importing: 0, never "not a surplus EVSE"
    r = clock.step(10, surplus_w=5500)
    assert (r.limit_ma, r.surplus, r.stop_delay_s) == (7900, True, 300)  # rounded to 100 mA
    assert r.reason == "rule #1: solar surplus"
    assert clock.step(20, surplus_w=8500).limit_ma == 12300
    assert clock.step(30, surplus_w=2000).limit_ma == 2800  # cloud: what there is
    # on one phase 1.4 kW is a 6 A current
    one = Clock([rule], at("12:00", charge_phases=1))
    assert one.step(0, surplus_w=1400).limit_ma == 6000


def test_legacy_mode_5_with_its_own_solar_threshold_holds_for_udur():
    """A `solar` threshold (mA) is the rule's own condition, with udur as its undercut."""
    rule = {"mode": 5, "udur": 300, "solar": 7000}
    clock = Clock([rule], at("12:00", charge_phases=3, min_current_ma=6000))
    assert clock.step(0, surplus_w=5500).limit_ma == 7900
    assert clock.step(30, surplus_w=2000).limit_ma == 6000  # below: held at the minimum
    assert clock.step(299, surplus_w=2000).limit_ma == 6000
    assert clock.step(300, surplus_w=2000).limit_ma == 0  # longer than udur: stops


def test_legacy_mode_5_with_a_night_rule_like_the_reference_tip():
    rules = [{"mode": 5, "udur": 300}, {"mode": 0, "current": 6000, "time": 1260, "dur": 540}]
    day, _ = run(rules, at("12:00", surplus_w=5500, charge_phases=3))
    assert (day.limit_ma, day.surplus) == (7900, True)
    night, _ = run(rules, at("23:00", surplus_w=0, charge_phases=3))
    assert (night.limit_ma, night.surplus) == (6000, False)
    assert night.reason == "rule #2: absolute current"


def test_legacy_input_and_price_level():
    rule = {"mode": 0, "current": 16000, "input": "M1.input1=0"}
    assert limit([rule], at("12:00", env=Names({"m1.input1": 0.0}))) == 16000
    assert limit([rule], at("12:00", env=Names({"m1.input1": 1.0}))) == 0
    assert limit([rule], at("12:00", env=Names())) == 0  # unknown input: not active
    cheap = {"mode": 0, "current": 16000, "price_level": -5}
    assert limit([cheap], at("12:00", env=Names({"cm._price_level": -6.0}))) == 16000
    assert limit([cheap], at("12:00", env=Names({"cm._price_level": -4.0}))) == 0


# -- the reference recipes ------------------------------------------------------------------

FALLBACK = [
    {"id": 1, "solar": True, "cond": {"type": "surplus", "value": 6500, "undercut_s": 300},
     "action": {"type": "surplus", "end": True}},
    {"id": 2, "solar": True, "action": {"type": "set", "value": -1, "end": True}},
    {"id": 3, "cond": {"type": "time", "start": 21 * 60, "end": 6 * 60},
     "action": {"type": "set", "value": 6000}},
]


def test_surplus_with_fallback_rule():
    sunny = at("12:00", surplus_w=6900, charge_phases=3)  # 10 A per phase
    r, _ = run(FALLBACK, sunny)
    assert (r.limit_ma, r.surplus, r.reason) == (10000, True, "rule 1: PV surplus")
    r, _ = run(FALLBACK, at("12:00", surplus_w=3000, charge_phases=3))
    assert (r.limit_ma, r.surplus) == (0, False)  # −1: not a surplus EVSE, no normal rule
    r, _ = run(FALLBACK, at("23:00", surplus_w=0, charge_phases=3))
    assert (r.limit_ma, r.surplus, r.reason) == (6000, False, "rule 3: value")


def test_normal_rule_may_use_lb_cur_for_a_minimum_grid_current():
    rules = [FALLBACK[0], {"action": {"type": "set", "value": "max(10000, lb_cur)"}}]
    r, _ = run(rules, at("12:00", surplus_w=9660, charge_phases=3))  # 14 A surplus
    assert (r.limit_ma, r.surplus) == (14000, False)
    r, _ = run(rules, at("12:00", surplus_w=0, charge_phases=3))
    assert r.limit_ma == 10000


def test_flat_grid_import_limit_formula():
    rule = {"cond": {"type": "always"}, "action": {"type": "set", "value": "16000 - M1.current"}}
    env = Names({"m1.current_l1": 4000.0, "m1.current_l2": 11000.0, "m1.current_l3": 0.0})
    three = tuple(PhaseValues() for _ in range(3))
    result, _ = run([rule], at("12:00", env=env, phases=three))
    assert result.limit_ma == 5000 and result.reason == "rule #1: value"


def test_a_failing_formula_falls_to_zero_and_says_why():
    rule = {"action": {"type": "set", "value": "16000 / CM.zero"}}
    result, _ = run([rule], at("12:00", env=Names({"cm.zero": 0.0})))
    assert result.limit_ma == 0
    assert "division by zero" in result.reason
    cond = {"cond": {"type": "formula", "value": "E9.nothing"},
            "action": {"type": "set", "value": 16000}}
    result, _ = run([cond], at("12:00", env=Names()))
    assert result.limit_ma == 0 and result.errors
