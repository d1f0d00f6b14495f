"""Charging rules over the real HTTP server: validated by set_params / set_device / set_user
(bad → 400, nothing changed), and in effect in cmd=explain: EVSE vs user rules, lower wins,
override E/U."""

from __future__ import annotations

import pytest

BAD_RULES = [
    [{"mode": 9}],
    [{"cond": {"type": "formula", "value": "16000 -"}, "action": {"type": "end"}}],
    [{"action": {"type": "goto"}}],
    [{"mode": 0, "current": 6000, "colour": "red"}],
]


async def e1_config(site) -> dict:
    status, devices = await site.client.get("get_devices")
    assert status == 200
    return next(d for d in devices if d["dev_id"] == "E1")


async def explain_e1(site) -> dict:
    site.clock.advance(3)
    await site.app.cycle.run_once()
    status, body = await site.client.get("explain", dev_id="E1", auth=None)
    assert status == 200
    return body


async def set_e1_rules(site, rules, cmd: str = "set_params") -> tuple[int, str]:
    config = await e1_config(site)
    config["charging_rules"] = rules
    return await site.client.post(cmd, {"devices": [config]})


@pytest.mark.parametrize("bad", BAD_RULES)
@pytest.mark.parametrize("cmd", ["set_params", "set_device"])
async def test_bad_device_rules_are_refused_and_nothing_changes(site, cmd, bad):
    assert await set_e1_rules(site, [{"mode": 0, "current": 8000}], cmd) == (200, "ok")
    before = await e1_config(site)
    status, body = await set_e1_rules(site, bad, cmd)
    assert status == 400 and "charging_rules.0" in body, body
    assert await e1_config(site) == before


async def test_bad_user_rules_are_refused_and_nothing_changes(site):
    status, uid = await site.client.get("get_new_user_id")
    assert await site.client.post("set_user", {"id": uid, "name": "Ann"}) == (200, "ok")
    status, before = await site.client.get("get_users")
    for bad in BAD_RULES:
        status, body = await site.client.post("set_user", {"id": uid, "charging_rules": bad})
        assert status == 400 and "user.charging_rules.0" in body, body
        status, body = await site.client.post(
            "set_user", {"id": uid, "rfids": [{"id": "4711", "charging_rules": bad}]})
        assert status == 400 and "charging_rules.0" in body, body
    assert (await site.client.get("get_users"))[1] == before


async def test_rules_take_effect_lower_wins_and_overrides_switch_them_off(site):
    status, body = await site.client.get("sim_vehicle", dev_id="E1", plugged=1)
    assert status == 200, body
    body = await explain_e1(site)
    assert body["setpoint"]["current_ma"] == 16000 and body["demand"]["max_reason"] == ""

    # the EVSE's rule caps it
    assert await set_e1_rules(site, [{"mode": 0, "current": 10000}]) == (200, "ok")
    body = await explain_e1(site)
    assert body["demand"]["max_current_ma"] == 10000
    assert body["demand"]["max_reason"] == "EVSE rules: rule #1: absolute current"
    assert body["setpoint"]["current_ma"] == 10000
    assert "E1: charging rules (normal): EVSE rules: rule #1: absolute current" in body["notes"]

    # a user with a lower rule authorises the session: the lower (user) wins
    status, uid = await site.client.get("get_new_user_id")
    user = {"id": uid, "name": "Ann", "dev_ids": ["E1"], "rfids": [{"id": "4711"}],
            "charging_rules": [{"action": {"type": "set", "value": "7000 + 500"}}]}
    assert await site.client.post("set_user", user) == (200, "ok")
    assert await site.client.get("enter_rfid", auth=None, rfid="4711",
                                 dev_id="E1") == (200, "ok")
    body = await explain_e1(site)
    assert body["demand"]["authorised"] is True
    assert body["demand"]["max_current_ma"] == 7500
    assert body["demand"]["max_reason"] == "user Ann: rule #1: value"
    assert body["setpoint"]["current_ma"] == 7500

    # override U: the user's rules are off → the EVSE's 10 A again
    assert await site.client.get("override_device", dev_id="E1", flags="U",
                                 auth="default") == (200, "ok")
    body = await explain_e1(site)
    assert body["setpoint"]["current_ma"] == 10000

    # override E as well: no rules at all
    assert await site.client.get("override_device", dev_id="E1", flags="E",
                                 auth="default") == (200, "ok")
    body = await explain_e1(site)
    assert body["setpoint"]["current_ma"] == 16000 and body["demand"]["max_reason"] == ""

    # u: the user's rules again (E still off)
    assert await site.client.get("override_device", dev_id="E1", flags="u",
                                 auth="default") == (200, "ok")
    body = await explain_e1(site)
    assert body["setpoint"]["current_ma"] == 7500


async def test_a_rule_saying_zero_stops_charging_with_its_reason(site):
    status, body = await site.client.get("sim_vehicle", dev_id="E1", plugged=1)
    assert status == 200, body
    off = [{"id": 4, "action": {"type": "set", "value": 0, "end": True}}]
    assert await set_e1_rules(site, off) == (200, "ok")
    body = await explain_e1(site)
    assert body["setpoint"]["current_ma"] == 0
    assert body["demand"]["allowed"] is False
    assert body["demand"]["reason"] == "EVSE rules: rule 4: value"


async def test_mode_5_follows_the_previous_plans_surplus_from_a_pushed_grid_meter(site):
    """The rules see the surplus the last plan measured: 5.52 kW exported on 3 phases →
    8 A per phase; a surplus EVSE with the rule's udur as its stop delay."""
    from tests.control.helpers import add, push_meter

    await add(site, dev_id="M3", dev_type="meter_ajax", role=3, com_timeout_ms=60000)
    status, body = await site.client.get("sim_vehicle", dev_id="E1", plugged=1)
    assert status == 200, body
    # no start delay: the planner may serve it at once
    # (the surplus hysteresis itself is tested in tests/core/test_surplus.py)
    status, body = await site.client.post("set_params", {"surplus_start_delay": 0})
    assert (status, body) == (200, "ok")
    # no 1p/3p switching while plugged (a switchable box is judged by the rules on its L1,
    # see tests/control/test_phase_switching.py): the rule divides by three phases
    site.app.powerbrain.bank("evse").set("s0_inputs", 0x0600)
    assert await set_e1_rules(site, [{"mode": 5, "udur": 300}]) == (200, "ok")
    await push_meter(site, "M3", (-8000, -8000, -8000), power_w=-5520)
    body = await explain_e1(site)  # no plan before this one: the rule knows no surplus yet
    # ... so its value is 0, a surplus EVSE capped no lower than its minimum; the planner sees
    # the export itself and (no start delay) starts it at the minimum
    assert body["demand"]["allowed"] is True, body["demand"]
    assert body["demand"]["max_current_ma"] == 6000
    assert body["setpoint"]["current_ma"] == 6000
    await push_meter(site, "M3", (-8000, -8000, -8000), power_w=-5520)
    body = await explain_e1(site)
    assert body["demand"]["allowed"] is True
    assert body["demand"]["max_current_ma"] == 8000
    assert body["demand"]["max_reason"] == "EVSE rules: rule #1: solar surplus"
    assert ("E1: charging rules (surplus EVSE): EVSE rules: rule #1: solar surplus"
            in body["notes"])
    record = site.app.cycle.last
    evse = record.evse("E1")
    assert evse.surplus and evse.surplus_stop_delay_s == 300
    assert body["setpoint"]["current_ma"] == 8000  # the planner serves it from the surplus


async def test_a_rule_that_sets_a_cm_variable_shows_in_get_cm_vars_and_formulas(site):
    """A rule's set-variable action gives CM.<name> its value (memory only): get_cm_vars
    shows it and a formula elsewhere (here a CM formula variable) reads it."""
    assert await site.client.post(
        "set_cm_vars", {"vars": [{"name": "boost", "expr": 0},
                                 {"name": "twice", "expr": "CM.boost * 2"}]}) == (200, "ok")
    status, body = await site.client.get("sim_vehicle", dev_id="E1", plugged=1)
    assert status == 200, body
    rules = [{"cond": {"type": "always"},
              "action": {"type": "set_var", "var": "CM.Boost", "value": "4000 + 500"}},
             {"action": {"type": "set", "value": "CM.boost + 6000"}}]
    assert await set_e1_rules(site, rules) == (200, "ok")
    body = await explain_e1(site)
    assert body["demand"]["max_current_ma"] == 10500
    status, got = await site.client.get("get_cm_vars")
    values = {v["name"]: v["value"] for v in got["vars"]}
    assert values["boost"] == 4500 and values["twice"] == 9000
    assert "Boost" not in values  # matched to the existing variable case-insensitively
