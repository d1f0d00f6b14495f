"""User objects: validation of set_user bodies, admin-only settings, the stored form."""

from __future__ import annotations

import pytest

from chargebrain.users.budgets import BudgetSpec
from chargebrain.users.ids import USER_ID_DIGITS, new_user_id
from chargebrain.users.model import (
    Rfid,
    User,
    UserError,
    admin_changes,
    parse_user,
    user_from_stored,
    user_to_json,
)

SEED_USER = {  # the seed's example object
    "id": "2167520770", "name": "wusel", "display": True, "dev_ids": ["E1"],
    "rfids": [{"id": "4711", "name": "TeSt", "ac_auth": True, "ac_ovch": False,
               "used_phases": 7}],
    "charging_rules": [],
}


def test_the_seed_example_parses():
    user, dev_ids, clears = parse_user(SEED_USER, None)
    assert user.id == "2167520770" and user.name == "wusel" and user.display
    assert dev_ids == ["E1"]
    assert user.rfids == (Rfid(id="4711", name="TeSt", ac_auth=True, ac_ovch=False,
                               used_phases=7),)
    assert clears == {"4711": False}


def test_numeric_id_is_accepted_as_string():
    user, _, _ = parse_user({"id": 2167520770}, None)
    assert user.id == "2167520770"


@pytest.mark.parametrize(("body", "message"), [
    ([], "user must be a JSON object"),
    ({"id": ""}, "id must be 1-64"),
    ({"id": "a b"}, "id must be 1-64"),
    ({"id": "1", "name": 5}, "user.name must be a string"),
    ({"id": "1", "name": "x" * 200}, "user.name must be at most"),
    ({"id": "1", "display": "yes"}, "user.display must be true or false"),
    ({"id": "1", "dev_ids": "E1"}, "dev_ids must be a list"),
    ({"id": "1", "prio": 1.5}, "user.prio must be a whole number"),
    ({"id": "1", "prio": 101}, "user.prio must be a whole number from 0 to 100"),
    ({"id": "1", "rfids": {}}, "rfids must be a list"),
    ({"id": "1", "rfids": [{"id": "4711"}, {"id": "4711"}]}, "rfid 4711 appears twice"),
    ({"id": "1", "rfids": [{"id": "ab"}, {"id": "AB"}]}, "rfid AB appears twice"),
    ({"id": "1", "rfids": [{"id": "1"}]}, "an rfid must differ from the user id"),
    ({"id": "1", "rfids": [{"id": "x", "used_phases": 8}]}, "rfids[0].used_phases"),
    ({"id": "1", "rfids": [{"id": "x", "colour": 1}]}, "unknown field rfids[0].colour"),
    ({"id": "1", "rfids": ["4711"]}, "rfids[0] must be a JSON object"),
    ({"id": "1", "budget": {"reset": "hourly", "amount": 1}}, "budget.reset must be one of"),
    ({"id": "1", "budget": {"amount": -1}}, "budget.amount must be a number"),
    ({"id": "1", "budget": {"amount": True}}, "budget.amount must be a number"),
    ({"id": "1", "budget": {"reset": "yearly", "day": 0, "amount": 1}}, "budget.day"),
    ({"id": "1", "budget": 5}, "budget must be null or a JSON object"),
    ({"id": "1", "charging_rules": [1]}, "charging_rules must be a list of rule objects"),
    ({"id": "1", "password": "x"}, "unknown field user.password"),
])
def test_bad_bodies_are_refused_with_a_clear_message(body, message):
    with pytest.raises(UserError) as err:
        parse_user(body, None)
    assert message in err.value.message
    assert err.value.status == 400


def test_fields_left_out_keep_their_values():
    old = User(id="1", name="anna", display=False, prio=3,
               budget=BudgetSpec(reset="daily", amount=20),
               rfids=(Rfid(id="AA", name="card", uses=4, max_uses=10),))
    user, dev_ids, _ = parse_user({"id": "1", "name": "anna b",
                                   "rfids": [{"id": "AA", "ac_ovch": True, "uses": 0}]}, old)
    assert dev_ids is None  # not given: the assignment stays
    assert user.display is False and user.prio == 3 and user.budget == old.budget
    card = user.rfids[0]
    assert card.name == "card" and card.ac_ovch and card.max_uses == 10
    assert card.uses == 4  # maintained by the system: a sent value is ignored


def test_budget_used_is_read_only_and_clear_used_asks_for_a_reset():
    user, _, clears = parse_user({"id": "1", "budget": {"reset": "weekly", "amount": 120,
                                                        "time_budget": True, "used": 99}},
                                 None)
    assert user.budget == BudgetSpec(reset="weekly", day=1, amount=120.0, time_budget=True)
    assert clears == {"user": False}
    _, _, clears = parse_user({"id": "1", "budget": {"amount": 5, "clear_used": True}}, None)
    assert clears == {"user": True}


def test_admin_changes_lists_admin_only_settings():
    old = User(id="1", name="a", rfids=(Rfid(id="AA"),))
    same_for_user = User(id="1", name="b", display=False,
                         rfids=(Rfid(id="AA", name="x", ac_ovch=True, used_phases=1),
                                Rfid(id="BB")))
    assert admin_changes(old, same_for_user) == []
    richer = User(id="1", prio=5, budget=BudgetSpec(amount=1),
                  rfids=(Rfid(id="AA", valid_until=5), Rfid(id="BB", prio=2, max_uses=3)))
    assert admin_changes(old, richer) == ["budget", "prio", "rfids.max_uses", "rfids.prio",
                                          "rfids.valid_until"]


def test_stored_form_round_trips():
    user = User(id="42", name="Ö", display=False, show_tile=False, prio=2,
                budget=BudgetSpec(reset="yearly", day=100, amount=300.5, time_budget=False),
                rfids=(Rfid(id="04A1", name="blue", ac_auth=False, ac_ovch=True,
                            used_phases=1, prio=7, valid_until=1_900_000_000, max_uses=5,
                            uses=2, budget=BudgetSpec(amount=15)),),
                charging_rules=({"mode": 0, "current": 6000},))
    assert user_from_stored(user_to_json(user)) == user


def test_card_validity():
    assert Rfid(id="x").usable(1e12) == ""
    assert Rfid(id="x", valid_until=100).usable(100) == ""
    assert Rfid(id="x", valid_until=100).usable(101) == "card expired"
    assert Rfid(id="x", max_uses=2, uses=1).usable(0) == ""
    assert Rfid(id="x", max_uses=2, uses=2).usable(0) == "card has no uses left"


def test_new_user_ids_are_long_random_and_avoid_taken_ones():
    ids = {new_user_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == USER_ID_DIGITS and i.isdigit() and i[0] != "0" for i in ids)
    calls: list[str] = []

    def taken(candidate: str) -> bool:
        calls.append(candidate)
        return len(calls) == 1  # the first candidate is taken

    result = new_user_id(taken)
    assert len(calls) == 2 and result == calls[1] and result != calls[0]
