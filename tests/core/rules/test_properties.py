"""Properties of the engine over random rule lists: it never raises, the limit is a whole
number of mA ≥ 0, the same inputs give the same answer, and a held rule never outlives its
undercut time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chargebrain.core.formula import DictEnv
from chargebrain.core.rules import (
    PhaseValues,
    RuleContext,
    RuleMemory,
    compile_rules,
    evaluate,
    validate_rules,
)

values = st.one_of(st.integers(-2000, 40000), st.sampled_from(
    ["16000 - M1.current", "CM.x * 1000", "param(1)", "1 / CM.zero", "E9.unknown",
     "lb_cur + 1000", "CM._rule_val - 500", "max(6000, lb_cur)"]))
conds = st.one_of(
    st.builds(lambda a, b: {"type": "time", "start": a, "end": b},
              st.integers(0, 1439), st.integers(0, 1440)),
    st.builds(lambda k, v, n, u: {"type": k, "value": v, "not": n, "undercut_s": u},
              st.sampled_from(["surplus", "grid_import", "grid_export", "solar",
                               "charging_cars", "formula"]),
              values, st.booleans(), st.sampled_from([0, 60, 300])),
    st.just({"type": "always"}),
    st.builds(lambda n: {"type": "input", "device": "M1", "input": n}, st.integers(0, 2)),
)
actions = st.one_of(
    st.builds(lambda v, e: {"type": "set", "value": v, "end": e}, values, st.booleans()),
    st.builds(lambda k, f: {"type": k, "factor": f},
              st.sampled_from(["surplus", "solar", "grid_import", "grid_export"]),
              st.sampled_from([1, 0.5, 2, "CM.x"])),
    st.sampled_from([{"type": "and"}, {"type": "or"}, {"type": "end"}]),
    st.builds(lambda g: {"type": "goto", "goto": g}, st.integers(1, 4)),
    st.builds(lambda v: {"type": "set_var", "var": "CM.x", "value": v}, values),
    st.builds(lambda d: {"type": "trigger_var", "var": "CM.t", "duration": d},
              st.integers(0, 600)),
    st.builds(lambda d: {"type": "retrigger_var", "var": "CM.t", "duration": d},
              st.integers(0, 600)),
)
new_rules = st.builds(
    lambda i, s, c, a, d: {"id": i or (1 if a.get("type") == "param" else 0), "solar": s,
                           "days": d, "cond": c, "action": a},
    st.integers(0, 4), st.booleans(), conds, actions, st.integers(0, 127))
param_rules = st.builds(lambda i, v: {"id": i, "action": {"type": "param", "value": v}},
                        st.integers(1, 4), values)
legacy_rules = st.builds(
    lambda m, c, t, d, u, days, e: {"mode": m, "current": c if m in (1, 3) else abs(c),
                                    "time": t, "dur": d, "udur": u, "days": days, "expr": e},
    st.integers(0, 5), st.integers(-5000, 20000), st.integers(0, 1439), st.integers(0, 1440),
    st.sampled_from([0, 300]), st.integers(0, 127),
    st.sampled_from(["", "16000 - M1.current", "CM.x"]))
rule_lists = st.lists(st.one_of(new_rules, param_rules, legacy_rules), max_size=8)
contexts = st.builds(
    lambda t, wd, m, s, g, so, pp, n: RuleContext(
        now_s=t, weekday=wd, dayminute=m, surplus_w=s, grid_w=g, solar_w=so, charge_phases=pp,
        phases=tuple(PhaseValues(s / 3, max(0, g) / 3, max(0, -g) / 3, so / 3)
                     for _ in range(pp)),
        num_charging=n,
        env=DictEnv({"m1.current_l1": 5000, "m1.current_l2": 0, "m1.current_l3": 12000,
                     "cm.x": 3, "cm.zero": 0, "m1.input1": 1})),
    st.floats(0, 1e6), st.integers(0, 6), st.integers(0, 1439), st.floats(-2e4, 2e4),
    st.floats(-2e4, 2e4), st.floats(0, 2e4), st.integers(1, 3), st.integers(0, 5))


@settings(max_examples=300, deadline=None)
@given(rule_lists, contexts)
def test_random_rule_lists_never_raise_and_are_deterministic(raw, ctx):
    program = compile_rules(validate_rules(raw))
    first, memory = evaluate(program, ctx, RuleMemory())
    again, _ = evaluate(program, ctx, RuleMemory())
    assert first == again
    if first.limit_ma is not None:
        assert isinstance(first.limit_ma, int) and first.limit_ma >= 0
    later, _ = evaluate(program, ctx, memory)  # the same moment again, with memory
    assert later.limit_ma == first.limit_ma


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 900), st.integers(0, 2000))
def test_a_hold_never_outlives_its_undercut_time(hold_s, later_s):
    rules = [{"solar": True, "cond": {"type": "surplus", "value": 6000, "undercut_s": hold_s},
              "action": {"type": "surplus"}}]
    program = compile_rules(validate_rules(rules))
    sunny = RuleContext(now_s=0.0, weekday=0, dayminute=720, surplus_w=6000, charge_phases=3)
    _, memory = evaluate(program, sunny, RuleMemory())
    dark = RuleContext(now_s=float(later_s), weekday=0, dayminute=720, surplus_w=0,
                       charge_phases=3)
    result, _ = evaluate(program, dark, memory)
    assert result.undercut == (later_s < hold_s)
    assert result.limit_ma == (6000 if later_s < hold_s else 0)
