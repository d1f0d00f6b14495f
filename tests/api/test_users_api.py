"""The users API over a real server: CRUD, credential rules, enter_rfid, override_device,
get_transactions. Each refused request is checked to have changed nothing."""

from __future__ import annotations

import csv
import io

import pytest

from tests.support.server import basic
from tests.users.helpers import new_user, plug, sync_session, unplug

NO_AUTH = None


@pytest.fixture
async def site(cb):
    """A running app whose failure slowdown does not wait (it is tested in test_auth.py)."""
    cb.app.auth.max_delay_s = 0.0
    return cb


async def users_state(site):
    status, users = await site.client.get("get_users")
    status2, devices = await site.client.get("get_devices")
    assert status == status2 == 200
    return users, devices


async def e1_users(site) -> list[str]:
    status, devices = await site.client.get("get_devices")
    assert status == 200
    return next(d for d in devices if d["dev_id"] == "E1")["users"]


# -- get_new_user_id / set_user / get_users / del_user ----------------------------------------

async def test_get_new_user_id_is_admin_only_and_unique(site):
    status, first = await site.client.get("get_new_user_id")
    _, second = await site.client.get("get_new_user_id")
    assert status == 200 and isinstance(first, str) and first.isdigit() and first != second
    assert (await site.client.get("get_new_user_id", auth=NO_AUTH))[0] == 401


async def test_create_user_and_dev_ids_sync_with_the_evse_users(site):
    uid = await new_user(site, name="wusel", display=True, dev_ids=["E1"],
                         rfids=[{"id": "4711", "name": "TeSt", "ac_auth": True,
                                 "ac_ovch": False, "used_phases": 7}],
                         charging_rules=[])
    status, users = await site.client.get("get_users")
    assert status == 200
    (user,) = users
    assert user["id"] == uid and user["name"] == "wusel" and user["dev_ids"] == ["E1"]
    assert user["rfids"][0]["id"] == "4711" and user["rfids"][0]["used_phases"] == 7
    assert await e1_users(site) == [uid]
    # the assignment can also be changed from the user side …
    assert await site.client.post("set_user", {"id": uid, "dev_ids": []}) == (200, "ok")
    assert await e1_users(site) == []
    # … and from the EVSE side, and dev_ids follows
    status, _ = await site.client.post("set_device", {"devices": [{"dev_id": "E1",
                                                                   "users": [uid]}]})
    assert status == 200
    _, user = await site.client.get("get_user", id=uid)
    assert user["dev_ids"] == ["E1"]


async def test_user_change_survives_a_restart(tmp_path):
    from tests.support.server import running_app

    async with running_app(tmp_path / "data", modbus=False) as site:
        uid = await new_user(site, name="anna", dev_ids=["E1"], rfids=[{"id": "CAFE01"}],
                             budget={"reset": "daily", "amount": 20})
    async with running_app(tmp_path / "data", modbus=False) as site:
        status, user = await site.client.get("get_user", id=uid)
        assert status == 200
        assert (user["name"], user["dev_ids"], user["rfids"][0]["id"]) == ("anna", ["E1"],
                                                                          "CAFE01")
        assert user["budget"] == {"reset": "daily", "day": 1, "amount": 20.0,
                                  "time_budget": False, "used": 0.0}


async def test_create_needs_admin(site):
    status, body = await site.client.post("set_user", {"id": "123456", "name": "x"},
                                          auth=NO_AUTH)
    assert status == 401 and "admin" in body
    status, body = await site.client.post("set_user", {"id": "123456"},
                                          auth=basic("admin", "wrong"))
    assert status == 401
    assert (await site.client.get("get_users"))[1] == []


async def test_missing_id_and_bad_bodies(site):
    before = await users_state(site)
    assert await site.client.post("set_user", {"name": "x"}) == (
        400, "missing user id (get one with cmd=get_new_user_id)")
    assert (await site.client.post("set_user", "not json{"))[0] == 400
    assert (await site.client.post("set_user", [1, 2]))[0] == 400
    status, body = await site.client.post("set_user", {"id": "77", "rfids": [{"id": ""}]})
    assert status == 400 and "rfids[0].id" in body
    status, body = await site.client.post("set_user", {"id": "77", "dev_ids": ["E9"]})
    assert (status, body) == (404, "unknown device E9")
    status, body = await site.client.post("set_user", {"id": "77", "dev_ids": ["M1"]})
    assert (status, body) == (400, "M1 is not an EVSE")
    assert await users_state(site) == before


async def test_credentials_are_unique_across_users(site):
    first = await new_user(site, rfids=[{"id": "AABB"}])
    before = await users_state(site)
    status, body = await site.client.post("set_user", {"id": "42", "rfids": [{"id": "aabb"}]})
    assert (status, body) == (400, "rfid aabb is already in use")
    status, body = await site.client.post("set_user", {"id": "43", "rfids": [{"id": first}]})
    assert status == 400 and "already in use" in body
    status, body = await site.client.post("set_user", {"id": "AABB"})
    assert (status, body) == (400, "user id is already in use")
    assert await users_state(site) == before


async def test_user_updates_own_settings_with_their_id(site):
    uid = await new_user(site, name="anna", dev_ids=["E1"], prio=2,
                         budget={"reset": "daily", "amount": 10},
                         rfids=[{"id": "A1", "max_uses": 5}])
    _, own = await site.client.get("get_user", auth=NO_AUTH, id=uid)
    own["name"] = "anna b"
    own["rfids"].append({"id": "A2", "name": "second card"})
    own["rfids"][0]["ac_ovch"] = True
    assert await site.client.post("set_user", own, auth=NO_AUTH) == (200, "ok")
    _, user = await site.client.get("get_user", id=uid)
    assert user["name"] == "anna b" and [c["id"] for c in user["rfids"]] == ["A1", "A2"]
    assert user["rfids"][0]["ac_ovch"] and user["rfids"][0]["max_uses"] == 5


@pytest.mark.parametrize(("change", "field"), [
    ({"dev_ids": []}, "dev_ids"),
    ({"prio": 9}, "prio"),
    ({"budget": {"reset": "daily", "amount": 999}}, "budget"),
    ({"budget": {"reset": "daily", "amount": 10, "clear_used": True}}, "budget.clear_used"),
    ({"rfids": [{"id": "A1", "max_uses": 0}]}, "rfids.max_uses"),
    ({"rfids": [{"id": "A1", "max_uses": 5}, {"id": "A9", "prio": 3}]}, "rfids.prio"),
])
async def test_user_may_not_change_admin_settings(site, change, field):
    uid = await new_user(site, dev_ids=["E1"], prio=2, budget={"reset": "daily", "amount": 10},
                         rfids=[{"id": "A1", "max_uses": 5}])
    before = await users_state(site)
    status, body = await site.client.post("set_user", {"id": uid, **change}, auth=NO_AUTH)
    assert (status, body) == (403, f"only the admin may change {field}")
    assert await users_state(site) == before


async def test_get_user_by_credential(site):
    uid = await new_user(site, name="anna", rfids=[{"id": "04A1B2"}, {"id": "1234"}])
    for params in ({"id": uid}, {"rfid": "1234"}, {"rfid": "04a1b2"}):
        status, user = await site.client.get("get_user", auth=NO_AUTH, **params)
        assert status == 200 and user["id"] == uid, params
    assert (await site.client.get("get_user", auth=NO_AUTH, id="99999"))[0] == 403
    assert (await site.client.get("get_user", auth=NO_AUTH, rfid="9999"))[0] == 403
    assert (await site.client.get("get_user", auth=NO_AUTH))[0] == 401
    assert (await site.client.get("get_user", id="99999"))[0] == 404  # admin, unknown id
    assert (await site.client.get("get_user"))[0] == 400  # admin, no id
    status, user = await site.client.get("get_user", rfid="1234")
    assert status == 200 and user["id"] == uid


async def test_del_user(site):
    uid = await new_user(site, dev_ids=["E1"], rfids=[{"id": "C0FFEE"}])
    assert await site.client.get("del_user", auth=NO_AUTH, id=uid) == (
        401, "authentication required")
    assert await site.client.get("del_user", id=uid) == (200, "ok")
    assert await site.client.get("get_users") == (200, [])
    assert await e1_users(site) == []
    assert (await site.client.get("del_user", id=uid))[0] == 404
    assert (await site.client.get("enter_rfid", auth=NO_AUTH, rfid="C0FFEE"))[0] == 403


# -- enter_rfid -------------------------------------------------------------------------------

async def test_enter_rfid_authorises_the_waiting_evse(site):
    uid = await new_user(site, dev_ids=["E1"], rfids=[{"id": "4711"}])
    gate = site.app.users.gate_for
    config = {"users": [uid]}
    await plug(site)
    assert gate("E1", config, 0).reason == "auth"
    assert await site.client.get("enter_rfid", auth=NO_AUTH, rfid="4711") == (200, "ok")
    result = gate("E1", config, 0)
    assert result.may_charge and result.user_id == uid and result.rfid == "4711"
    _, user = await site.client.get("get_user", id=uid)
    assert user["rfids"][0]["uses"] == 1
    await unplug(site)
    result = gate("E1", config, 0)
    assert (result.may_charge, result.reason, result.needs_auth) == (False, "auth", False)
    await plug(site)  # a new plug-in needs a new authorisation
    assert gate("E1", config, 0).needs_auth


async def test_enter_rfid_refusals_change_nothing(site):
    await new_user(site, dev_ids=["E1"], rfids=[{"id": "4711"}])
    other = await new_user(site, rfids=[{"id": "5555"}])
    await new_user(site, dev_ids=["E1"], rfids=[{"id": "6666", "ac_auth": False},
                                                {"id": "7777", "valid_until": 1000}])
    await plug(site)
    session = site.app.users.sessions.get("E1")
    cases = [
        ({"rfid": "0000"}, 403, "unknown RFID/PIN"),
        ({"rfid": "5555", "dev_id": "E1"}, 403, "this user may not charge at E1"),
        ({"rfid": other}, 400, "no EVSE is waiting for this RFID/PIN; give dev_id"),
        ({"rfid": "6666", "dev_id": "E1"}, 403, "this card does not authorise charging"),
        ({"rfid": "7777", "dev_id": "E1"}, 403, "card expired"),
        ({"rfid": "4711", "dev_id": "E9"}, 404, "unknown device E9"),
        ({"rfid": "4711", "dev_id": "M1"}, 400, "M1 is not an EVSE"),
        ({}, 400, "missing parameter rfid"),
    ]
    for params, status, message in cases:
        assert await site.client.get("enter_rfid", auth=NO_AUTH, **params) == (status,
                                                                               message), params
    assert site.app.users.sessions.get("E1") == session


async def test_enter_rfid_before_plug_in_waits_at_the_users_only_evse(site):
    uid = await new_user(site, dev_ids=["E1"], rfids=[{"id": "4711"}])
    assert await site.client.get("enter_rfid", auth=NO_AUTH, rfid="4711") == (200, "ok")
    await plug(site)
    assert site.app.users.sessions.get("E1").user_id == uid


async def test_card_with_max_uses_runs_out(site):
    await new_user(site, dev_ids=["E1"], rfids=[{"id": "4711", "max_uses": 1}])
    await plug(site)
    assert await site.client.get("enter_rfid", auth=NO_AUTH, rfid="4711",
                                 dev_id="E1") == (200, "ok")
    await unplug(site)
    await plug(site)
    assert await site.client.get("enter_rfid", auth=NO_AUTH, rfid="4711", dev_id="E1") == (
        403, "card has no uses left")


async def test_rfid_reported_by_the_wallbox_authorises(site):
    uid = await new_user(site, dev_ids=["E1"], rfids=[{"id": "04A1B2C3"}])
    await plug(site, rfid="04a1b2c3")
    session = site.app.users.sessions.get("E1")
    assert (session.user_id, session.rfid, session.auth_source) == (uid, "04A1B2C3", "wallbox")


async def test_fixed_rfid_authorises_when_nothing_was_presented(site):
    uid = await new_user(site, dev_ids=["E1"], rfids=[{"id": "F1XED"}])
    status, _ = await site.client.post("set_device", {"devices": [{"dev_id": "E1",
                                                                   "fixed_rfid": "F1XED"}]})
    assert status == 200
    await plug(site)
    session = site.app.users.sessions.get("E1")
    assert (session.user_id, session.rfid, session.auth_source) == (uid, "F1XED", "fixed_rfid")


# -- override_device --------------------------------------------------------------------------

async def test_override_permissions_and_effects(site):
    uid = await new_user(site, dev_ids=["E1"], rfids=[{"id": "4711"}])
    other = await new_user(site, dev_ids=["E1"], rfids=[{"id": "5555"}])
    await plug(site)
    assert await site.client.get("enter_rfid", auth=NO_AUTH, rfid="4711",
                                 dev_id="E1") == (200, "ok")
    book = site.app.users.sessions

    async def override(auth, **params):
        return await site.client.get("override_device", auth=auth, dev_id="E1", **params)

    assert await override(NO_AUTH, flags="C") == (
        401, "authentication required: admin password or the user's PIN/RFID")
    assert await override(NO_AUTH, flags="C", rfid="0000") == (403, "unknown RFID/PIN")
    assert await override(NO_AUTH, flags="C", rfid="5555") == (
        403, "this RFID/PIN may not override E1")
    assert await override(NO_AUTH, flags="E", rfid="4711") == (
        403, "flags E/e need the admin password")
    assert await override(NO_AUTH, flags="X", rfid="4711") == (
        400, "unknown override flag X (use C c E e U u)")
    assert await override(NO_AUTH, rfid="4711") == (
        400, "nothing to override: give flags, mamps and/or phases")
    assert await override(NO_AUTH, mamps="100", rfid="4711") == (
        400, "mamps must be 0 (no cap) or 6000 to 1000000")
    assert book.get("E1").overrides == 0 and book.get("E1").mamps is None

    assert await override(NO_AUTH, flags="CU", mamps="16000.0", rfid="4711") == (200, "ok")
    result = site.app.users.gate_for("E1", {"users": [uid, other]}, 0)
    assert (result.may_charge, result.reason, result.overrides, result.ov_cur) == (
        False, "override", 0b101, 16000)
    assert await override(None, flags="Ee") == (401, "authentication required: admin password "
                                                     "or the user's PIN/RFID")
    assert await override("default", flags="E") == (200, "ok")  # admin
    assert book.get("E1").overrides == 0b111
    assert await override(NO_AUTH, flags="cu", mamps="0", rfid="4711") == (200, "ok")
    assert await override("default", flags="e") == (200, "ok")
    result = site.app.users.gate_for("E1", {"users": [uid, other]}, 0)
    assert result.may_charge and result.overrides == 0 and result.max_ma is None
    # overrides end with the session
    assert await override(NO_AUTH, flags="C", rfid="4711") == (200, "ok")
    await unplug(site)
    await plug(site)
    assert book.get("E1").overrides == 0


async def test_override_without_a_car_waits_for_the_next_session(site):
    """Integrations set limits whenever their user does, car or not: the override is
    accepted, shown at once, applied to the next session and ended by its unplug."""
    assert await site.client.get("override_device", dev_id="E1", mamps="10000.0",
                                 flags="U", auth="default") == (200, "ok")
    status, info = await site.client.get("get_dev_info")
    assert status == 200
    (e1,) = [d for d in info["devices"] if d["dev_id"] == "E1"]
    assert e1["ov_cur"] == 10000 and e1["overrides"] & 0b100
    book = site.app.users.sessions
    await plug(site)
    assert book.get("E1").mamps == 10000 and book.get("E1").overrides & 0b100
    assert site.app.users.gate_for("E1", {}, 0).ov_cur == 10000
    await unplug(site)
    await plug(site)
    assert book.get("E1").mamps is None and book.get("E1").overrides == 0


async def test_override_right_after_plugging_in_is_accepted(site):
    status, body = await site.client.get("sim_vehicle", dev_id="E1", plugged=1)
    assert status == 200, body
    # no cycle has run since the car arrived: still accepted, and it holds for this session
    assert await site.client.get("override_device", dev_id="E1", mamps="12000",
                                 auth="default") == (200, "ok")
    await sync_session(site, "E1")
    assert site.app.users.sessions.get("E1").mamps == 12000


async def test_override_needs_a_known_evse(site):
    assert await site.client.get("override_device", dev_id="E7", flags="C") == (
        404, "unknown device E7")
    assert await site.client.get("override_device", flags="C") == (
        400, "missing parameter dev_id")


# -- get_transactions -------------------------------------------------------------------------

async def test_transactions_admin_all_user_own(site):
    anna = await new_user(site, name="Anna", rfids=[{"id": "A1"}])
    ben = await new_user(site, name="Ben", rfids=[{"id": "B1"}])
    log = site.app.transactions
    log.observe("E1", True, True, 1000, "A1", anna, 100.0)
    log.observe("E1", False, False, 1500, None, None, 200.0)
    log.observe("E1", True, True, 1500, "B1", ben, 300.0)
    log.observe("E1", False, False, 1700, None, None, 400.0)
    status, rows = await site.client.get("get_transactions")
    assert status == 200
    assert [(r["user_id"], r["user_name"], r["energy_wh"]) for r in rows] == [
        (anna, "Anna", 500), (ben, "Ben", 200)]
    assert (await site.client.get("get_transactions", user=ben))[1][0]["user_id"] == ben
    status, own = await site.client.get("get_transactions", auth=NO_AUTH, rfid="A1")
    assert status == 200 and [r["user_id"] for r in own] == [anna]
    status, own = await site.client.get("get_transactions", auth=NO_AUTH, user=ben)
    assert status == 200 and [r["user_id"] for r in own] == [ben]
    assert (await site.client.get("get_transactions", auth=NO_AUTH))[0] == 401
    assert (await site.client.get("get_transactions", auth=NO_AUTH, user="1"))[0] == 403
    assert (await site.client.get("get_transactions", format="xml"))[0] == 400
    status, text = await site.client.get("get_transactions", auth=NO_AUTH, user=anna,
                                         format="csv")
    assert status == 200
    table = list(csv.DictReader(io.StringIO(text)))
    assert [(r["user_id"], r["energy_kwh"], r["status"]) for r in table] == [
        (anna, "0.500", "closed")]


async def test_csv_answer_is_csv(site):
    status, text = await site.client.raw("GET", "/cnf?cmd=get_transactions&format=csv")
    assert status == 200 and text.startswith("id,dev_id,start,end")


async def test_plug_in_shows_in_the_session_and_sync_is_real(site):
    # the helper reads the real driver: without a car nothing is plugged in
    await sync_session(site, "E1")
    assert site.app.users.sessions.get("E1") is None


async def test_http_input_wallbox_reports_the_card(site):
    """An HTTP-input wallbox (set_ajax_evse) with assigned users: its `rfid` authorises, and
    the answer tells it to charge; overrides show in get_dev_info."""
    uid = await new_user(site, name="Cleo", rfids=[{"id": "AB12CD"}])
    status, body = await site.client.post("set_device", {"devices": [
        {"dev_type": "evse_ajax", "users": [uid]}]})
    assert (status, body) == (200, "ok")
    (dev_id,) = [d["dev_id"] for d in (await site.client.get("get_devices"))[1]
                 if d["dev_type"] == "evse_ajax"]
    push = {"state": 2, "max_charging_current": 16000, "current": [0, 0, 0],
            "total_energy": 1000}

    async def report(**extra):
        status, answer = await site.client.post("set_ajax_evse", {**push, **extra},
                                                dev_id=dev_id)
        assert status == 200, answer
        await site.app.cycle.run_once()
        status, answer = await site.client.post("set_ajax_evse", {**push, **extra},
                                                dev_id=dev_id)
        assert status == 200, answer
        info = next(d for d in (await site.client.get("get_dev_info"))[1]["devices"]
                    if d["dev_id"] == dev_id)
        return answer, info

    answer, info = await report()
    assert answer["charging_enabled"] is False and info["needs_auth"] is True
    answer, info = await report(rfid="ab12cd")
    assert answer["charging_enabled"] is True and info["needs_auth"] is False
    assert await site.client.get("override_device", auth=None, dev_id=dev_id, mamps="10000.0",
                                 rfid="AB12CD") == (200, "ok")
    answer, info = await report(rfid="ab12cd")
    assert (info["ov_cur"], info["overrides"]) == (10000, 0)
    assert answer["charging_current"] <= 10000
    rows = (await site.client.get("get_transactions", dev_id=dev_id))[1]
    assert [(r["user_id"], r["rfid"], r["status"]) for r in rows] == [(uid, "AB12CD",
                                                                       "running")]
