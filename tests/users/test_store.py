"""The user table over a real SQLite file: persistence and credential lookup."""

from __future__ import annotations

from chargebrain.store.db import Store
from chargebrain.users.model import Rfid, User
from chargebrain.users.store import UserStore


def test_users_survive_reopening_the_database(tmp_path):
    store = Store.open(tmp_path)
    users = UserStore(store)
    users.save(User(id="1", name="anna", rfids=(Rfid(id="AA11"),)))
    users.save(User(id="2", name="ben"))
    users.save(User(id="1", name="anna b", rfids=(Rfid(id="AA11", uses=3),)))
    store.close()

    reopened = UserStore(Store.open(tmp_path))
    assert [u.id for u in reopened.all()] == ["1", "2"]  # creation order
    assert reopened.get("1") == User(id="1", name="anna b", rfids=(Rfid(id="AA11", uses=3),))


def test_resolve_by_user_id_pin_or_rfid_case_insensitively(tmp_path):
    users = UserStore(Store.open(tmp_path))
    users.save(User(id="1001", rfids=(Rfid(id="04A1B2C3"), Rfid(id="4711"))))
    users.save(User(id="1002"))
    cred = users.resolve("1001")
    assert cred is not None and cred.user.id == "1001" and cred.rfid is None and cred.authorises
    cred = users.resolve("04a1b2c3")  # wallboxes report hex ids in lower case
    assert cred is not None and cred.rfid_id == "04A1B2C3"
    assert users.resolve("4711").user.id == "1001"
    assert users.resolve("1002").user.id == "1002"
    assert users.resolve("4712") is None
    assert users.resolve("") is None
    assert users.resolve("100") is None  # a prefix is not a match


def test_delete_inside_a_transaction(tmp_path):
    store = Store.open(tmp_path)
    users = UserStore(store)
    users.save(User(id="1"))
    with store.transaction() as conn:
        users.erase(conn, "1")
    users.forget("1")
    assert users.get("1") is None
    assert UserStore(store).all() == []


def test_taken_secrets(tmp_path):
    users = UserStore(Store.open(tmp_path))
    users.save(User(id="1", rfids=(Rfid(id="AbC"),)))
    users.save(User(id="2", rfids=(Rfid(id="x"),)))
    assert users.taken_secrets() == {"1", "abc", "2", "x"}
    assert users.taken_secrets(except_user="1") == {"2", "x"}
