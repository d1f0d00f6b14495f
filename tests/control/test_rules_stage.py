"""The rules stage: EVSE vs user/card rules (lower wins), overrides E/U, the planner input."""

from __future__ import annotations

from datetime import UTC, datetime

from chargebrain.control.rules_stage import RulesStage, SiteView
from chargebrain.core.site import (
    Diagnostics,
    EvseInput,
    MeterInput,
    MeterRole,
    PlanMemory,
    PlanResult,
    SiteInput,
)

NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()  # a Monday
NIGHT = datetime(2026, 12, 7, 23, 0, tzinfo=UTC).timestamp()
EVSE = EvseInput(dev_id="E1", connected=True, min_current_ma=6000, max_current_ma=16000)

TEN_A = [{"mode": 0, "current": 10000}]
EIGHT_A = [{"action": {"type": "set", "value": 8000}}]
SURPLUS = [{"mode": 5, "udur": 300}]


def stage() -> RulesStage:
    return RulesStage(tz=UTC)


def test_no_rules_change_nothing():
    assert stage().apply(EVSE, [], now_s=NOON) is EVSE


def test_lower_of_evse_and_user_rules_wins_and_is_named():
    s = stage()
    out = s.apply(EVSE, TEN_A, user_rules=EIGHT_A, rules_owner="user Alice", now_s=NOON)
    assert out.max_current_ma == 8000 and out.allowed
    assert out.max_reason == "user Alice: rule #1: value"
    out = s.apply(EVSE, EIGHT_A, user_rules=TEN_A, rules_owner="user Alice", now_s=NOON)
    assert out.max_current_ma == 8000 and out.max_reason == "EVSE rules: rule #1: value"


def test_override_e_and_u_switch_the_rule_sets_off():
    s = stage()
    out = s.apply(EVSE, EIGHT_A, evse_rules_on=False, user_rules=TEN_A, now_s=NOON)
    assert out.max_current_ma == 10000  # E: only the user's rules
    out = s.apply(EVSE, EIGHT_A, user_rules=[{"mode": 0, "current": 7000}],
                  user_rules_on=False, now_s=NOON)
    assert out.max_current_ma == 8000  # U: only the EVSE's rules
    out = s.apply(EVSE, EIGHT_A, evse_rules_on=False, user_rules=TEN_A, user_rules_on=False,
                  now_s=NOON)
    assert out == EVSE


def test_a_rule_saying_zero_blocks_charging_with_its_text():
    night_only = [{"mode": 0, "current": 16000, "time": 22 * 60, "dur": 480}]
    notes: list[str] = []
    out = stage().apply(EVSE, night_only, now_s=NOON, notes=notes)
    assert not out.allowed and out.not_allowed_reason == "EVSE rules: no rule applies"
    assert notes == ["E1: charging rules (normal): EVSE rules: no rule applies"]
    out = stage().apply(EVSE, night_only, now_s=NIGHT)
    assert out.allowed and out.max_current_ma == 16000


def test_below_the_minimum_is_not_allowed_for_a_normal_evse():
    out = stage().apply(EVSE, [{"mode": 0, "current": 4000}], now_s=NOON)
    assert not out.allowed and "4000 mA is below the minimum 6000 mA" in out.not_allowed_reason


def test_an_authorisation_block_keeps_its_own_reason():
    blocked = EvseInput(dev_id="E1", connected=True, allowed=False,
                        not_allowed_reason="budget used up")
    out = stage().apply(blocked, [{"mode": 0, "current": 0}], now_s=NOON)
    assert out.not_allowed_reason == "budget used up"


def _plan(surplus_w: int) -> tuple[SiteInput, PlanResult]:
    site = SiteInput(meters=(MeterInput("M1", MeterRole.GRID, currents_ma=(-8000, -8000, -8000),
                                        power_w=-surplus_w, read_at_s=NOON),))
    return site, PlanResult({}, PlanMemory(), Diagnostics(surplus_w=surplus_w,
                                                          grid_power_w=-surplus_w))


def test_mode_5_makes_a_surplus_evse_with_its_stop_delay():
    site, result = _plan(5500)
    view = SiteView.from_plan(site, result, NOON)
    assert view.surplus_w == 5500 and view.grid_ma == (-8000, -8000, -8000)
    out = stage().apply(EVSE, SURPLUS, view=view, now_s=NOON)
    assert out.surplus and out.surplus_stop_delay_s == 300 and out.allowed
    assert out.max_current_ma == 7900 and out.max_reason == "EVSE rules: rule #1: solar surplus"


def test_mode_5_leaves_start_and_hold_to_the_planner():
    """At night and in a cloud mode 5 still makes a surplus EVSE (capped no lower than its
    minimum): whether it starts, how long it is held at the minimum (the rule's udur as its
    stop delay) and when it stops is the planner's (tests/core/test_surplus.py)."""
    s = stage()
    site, result = _plan(0)
    out = s.apply(EVSE, SURPLUS, view=SiteView.from_plan(site, result, NIGHT), now_s=NIGHT)
    assert out.allowed and out.surplus and out.max_current_ma == 6000
    assert out.surplus_stop_delay_s == 300
    site, result = _plan(1000)
    cloud = SiteView.from_plan(site, result, NOON)
    for t in (200, 300, 3000):
        out = s.apply(EVSE, SURPLUS, view=cloud, now_s=NOON + t)
        assert out.allowed and out.surplus and out.max_current_ma == 6000


HELD = [{"solar": True, "cond": {"type": "surplus", "value": 6000, "undercut_s": 300},
         "action": {"type": "surplus"}}]


def test_a_held_condition_holds_through_a_cloud_and_unplug_forgets_the_hold():
    s = stage()
    site, result = _plan(5500)
    s.apply(EVSE, HELD, view=SiteView.from_plan(site, result, NOON), now_s=NOON)
    site, result = _plan(1000)
    cloud = SiteView.from_plan(site, result, NOON)
    out = s.apply(EVSE, HELD, view=cloud, now_s=NOON + 200)
    assert out.allowed and out.surplus and out.max_current_ma == 6000  # undercut: the minimum
    out = s.apply(EVSE, HELD, view=cloud, now_s=NOON + 300)
    assert not out.allowed
    s.apply(EVSE, HELD, view=SiteView.from_plan(*_plan(5500), NOON), now_s=NOON + 310)
    gone = EvseInput(dev_id="E1", connected=False)
    s.apply(gone, HELD, now_s=NOON + 320)
    out = s.apply(EVSE, HELD, view=cloud, now_s=NOON + 330)
    assert not out.allowed  # a new session: no hold from the last one


def test_a_surplus_rule_below_the_minimum_leaves_the_start_to_the_planner():
    rules = [{"solar": True, "action": {"type": "surplus"}}]  # deliver whatever there is
    site, result = _plan(2760)  # 4 A per phase on 3 phases
    out = stage().apply(EVSE, rules, view=SiteView.from_plan(site, result, NOON), now_s=NOON)
    assert out.allowed and out.surplus and out.max_current_ma == 6000


def test_the_gate_hands_on_the_cards_rules_before_the_users():
    from chargebrain.users.gate import EvseAuth, gate
    from chargebrain.users.model import Rfid, User
    from chargebrain.users.sessions import Session

    card_rules = ({"mode": 0, "current": 7000},)
    user_rules = ({"mode": 0, "current": 9000},)
    ann = User(id="1", name="Ann", charging_rules=user_rules,
               rfids=(Rfid(id="4711", name="Blue", charging_rules=card_rules),
                      Rfid(id="4712")))
    users = {"1": ann}
    evse = EvseAuth("E1", users=("1",))
    by_card = gate(evse, Session("E1", 0, user_id="1", rfid="4711"), users, {}, 0, UTC)
    assert (by_card.rules, by_card.rules_owner) == (card_rules, "RFID card Blue")
    plain_card = gate(evse, Session("E1", 0, user_id="1", rfid="4712"), users, {}, 0, UTC)
    assert (plain_card.rules, plain_card.rules_owner) == (user_rules, "user Ann")
    off = gate(evse, Session("E1", 0, user_id="1", rfid="4711", evse_rules_off=True,
                             user_rules_off=True), users, {}, 0, UTC)
    assert (off.evse_rules, off.user_rules) == (False, False)
