"""The pure authorisation gate the control cycle calls per EVSE and cycle."""

from __future__ import annotations

from datetime import UTC

from chargebrain.users.budgets import BudgetSpec, BudgetUse, period_start
from chargebrain.users.gate import EvseAuth, Gate, gate, waiting_evses
from chargebrain.users.model import Rfid, User
from chargebrain.users.sessions import Session

NOW = 1_715_000_000.0
ANNA = User(id="1", name="Anna", prio=3, budget=BudgetSpec(reset="daily", amount=10),
            rfids=(Rfid(id="A1", name="blue card", used_phases=1, prio=7,
                        budget=BudgetSpec(amount=15)),
                   Rfid(id="A2")))
BEN = User(id="2", name="Ben", display=False)
USERS = {u.id: u for u in (ANNA, BEN)}
SHARED = EvseAuth("E1", users=("1", "2"))
TODAY = period_start(ANNA.budget, NOW, UTC)  # type: ignore[arg-type]
FREE = EvseAuth("E2")


def run(evse, session, uses=None):
    return gate(evse, session, USERS, uses or {}, NOW, UTC)


def test_free_evse_charges_without_anyone():
    assert run(FREE, None) == Gate(True)
    assert run(FREE, Session("E2", NOW)).may_charge


def test_evse_with_users_waits_for_authorisation():
    idle = run(SHARED, None)  # nobody plugged in: nobody waits yet
    assert (idle.may_charge, idle.reason, idle.needs_auth) == (False, "auth", False)
    plugged = run(SHARED, Session("E1", NOW))
    assert (plugged.may_charge, plugged.reason, plugged.needs_auth) == (False, "auth", True)
    assert plugged.reason_text.startswith("waiting for authorisation")


def test_authorised_user_charges_with_their_priority():
    result = run(SHARED, Session("E1", NOW, user_id="1", auth_source="enter_rfid"))
    assert result.may_charge and not result.needs_auth
    assert (result.priority, result.phases_mask, result.label) == (3, None, "Anna")


def test_card_priority_phases_and_name_win_over_the_users():
    result = run(SHARED, Session("E1", NOW, user_id="1", rfid="A1", auth_source="wallbox"))
    assert (result.priority, result.phases_mask, result.label, result.rfid) == (
        7, 1, "blue card", "A1")


def test_user_not_assigned_or_deleted_is_not_authorised():
    other = EvseAuth("E3", users=("2",))
    assert run(other, Session("E3", NOW, user_id="1")).reason == "auth"
    assert run(SHARED, Session("E1", NOW, user_id="99")).reason == "auth"
    # the name is not shown when the user does not allow it
    assert run(SHARED, Session("E1", NOW, user_id="2")).label == ""


def test_identified_session_at_a_free_evse_still_carries_identity():
    result = run(FREE, Session("E2", NOW, user_id="1", rfid="A2"))
    assert result.may_charge and result.user_id == "1" and result.priority == 3


def test_overrides():
    session = Session("E1", NOW, user_id="1", charging_disabled=True, evse_rules_off=True,
                      user_rules_off=True, mamps=8000)
    result = run(SHARED, session)
    assert (result.may_charge, result.reason) == (False, "override")
    assert (result.overrides, result.ov_cur, result.max_ma) == (7, 8000, 8000)
    assert (result.evse_rules, result.user_rules) == (False, False)
    capped = run(SHARED, Session("E1", NOW, user_id="1", mamps=10000))
    assert capped.may_charge and capped.max_ma == 10000 and capped.overrides == 0


def test_override_bits_show_even_while_waiting_for_authorisation():
    result = run(SHARED, Session("E1", NOW, charging_disabled=True))
    assert result.reason == "auth" and result.overrides == 1


def test_used_up_user_budget_stops_charging():
    session = Session("E1", NOW, user_id="1", rfid="A2")
    full = run(SHARED, session, {"user:1": BudgetUse(TODAY, 9_000, 0)})
    assert full.may_charge and full.budget_left == 1.0
    empty = run(SHARED, session, {"user:1": BudgetUse(TODAY, 10_000, 0)})
    assert (empty.may_charge, empty.reason, empty.budget_left) == (False, "budget", 0.0)


def test_used_up_daily_budget_of_yesterday_does_not_count():
    yesterday = NOW - 86_400 * 2
    result = run(SHARED, Session("E1", NOW, user_id="1"),
                 {"user:1": BudgetUse(yesterday - yesterday % 86_400, 50_000, 0)})
    assert result.may_charge


def test_card_budget_replaces_the_users():
    session = Session("E1", NOW, user_id="1", rfid="A1")
    # the user's daily budget is used up, the card's one-off budget is not
    uses = {"user:1": BudgetUse(TODAY, 10_000, 0), "rfid:A1": BudgetUse(0.0, 14_000, 0)}
    result = run(SHARED, session, uses)
    assert result.may_charge and result.budget_left == 1.0
    uses["rfid:A1"] = BudgetUse(0.0, 15_000, 0)
    assert run(SHARED, session, uses).reason == "budget"


def test_override_c_is_reported_before_an_empty_budget():
    session = Session("E1", NOW, user_id="1", charging_disabled=True)
    result = run(SHARED, session, {"user:1": BudgetUse(TODAY, 10_000, 0)})
    assert result.reason == "override"


def test_from_config_reads_users_and_fixed_rfid():
    auth = EvseAuth.from_config("E1", {"users": ["1170223812"], "fixed_rfid": "CAFE",
                                       "label": "x"})
    assert auth == EvseAuth("E1", ("1170223812",), "CAFE")
    assert EvseAuth.from_config("E2", {}).needs_auth is False


def test_waiting_evses():
    evses = [SHARED, FREE, EvseAuth("E3", users=("1",)), EvseAuth("E4", users=("1",))]
    sessions = {"E1": Session("E1", NOW), "E2": Session("E2", NOW),
                "E3": Session("E3", NOW, user_id="1")}
    assert waiting_evses(evses, sessions, "1") == ["E1"]  # E3 is authorised, E4 empty
    assert waiting_evses(evses, sessions, "3") == []
