"""Rule validation: both shapes, clear refusals with the field named, a stable stored form."""

from __future__ import annotations

import pytest

from chargebrain.core.rules import LegacyRule, Rule, RuleError, rules_to_json, validate_rules


def test_both_shapes_in_one_list():
    rules = validate_rules([
        {"mode": 5, "udur": 300},
        {"id": 3, "solar": True, "cond": {"type": "surplus", "value": 6500, "undercut_s": 300,
                                          "not": False},
         "action": {"type": "surplus", "factor": 1, "end": True}},
        {"action": {"type": "set", "value": "16000 - M1.current"}},
    ])
    assert isinstance(rules[0], LegacyRule) and isinstance(rules[1], Rule)
    assert rules[2].cond.type == "always"  # type: ignore[union-attr]


def test_stored_form_round_trips_and_uses_the_not_key():
    raw = [{"id": 1, "cond": {"type": "time", "start": 1320, "end": 360, "not": True},
            "action": {"type": "set", "value": 6000}}, {"mode": 1, "current": -2000}]
    stored = rules_to_json(validate_rules(raw))
    assert stored[0]["cond"]["not"] is True and "not_" not in stored[0]["cond"]
    assert rules_to_json(validate_rules(stored)) == stored


@pytest.mark.parametrize(("raw", "message"), [
    ([{"mode": 6}], "charging_rules.0.mode"),
    ([{"mode": 0, "current": -1}], "negative only in modes 1 and 3"),
    ([{"days": 128}], "charging_rules.0.days"),
    ([{"input": "garage door"}], "input must look like M1.input1"),
    ([{"expr": "16000 - "}], "charging_rules.0.expr: formula"),
    ([{"colour": 1}], "charging_rules.0.colour"),
    ([{"action": {"type": "fly"}}], "charging_rules.0.action.type"),
    ([{"action": {"type": "set"}}], "needs a value"),
    ([{"action": {"type": "set_var", "var": "x", "value": 1}}], "var must look like CM.name"),
    ([{"action": {"type": "goto"}}], "needs the target rule id"),
    ([{"action": {"type": "param", "value": 600}}], "parameter rule needs an id"),
    ([{"cond": {"type": "formula", "value": "1 +, 2"}, "action": {"type": "end"}}],
     "charging_rules.0.cond.value: formula: unexpected ',' at 3"),
    ([{"cond": {"type": "time", "start": 2000}, "action": {"type": "end"}}],
     "charging_rules.0.cond.start"),
    ([{"cond": {"type": "weather"}, "action": {"type": "end"}}], "charging_rules.0.cond"),
    ([{"cond": {"type": "surplus", "value": float("nan")}, "action": {"type": "end"}}],
     "charging_rules.0.cond.value"),
    ([{"cond": {"type": "always", "undercut_s": -1}, "action": {"type": "end"}}],
     "undercut_s"),
    ([{"mode": 0}] * 101, "at most 100 rules"),
    ({"mode": 0}, "must be a list"),
])
def test_bad_rules_are_refused_with_the_place_named(raw, message):
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace("+", r"\+")):
        validate_rules(raw)
