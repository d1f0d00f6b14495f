"""`cmd=explain`: public, 404 for unknown ids, 400 for meters and groups, and what it says."""

from __future__ import annotations

from tests.control.helpers import add, plug_sim, push_evse, set_params


async def test_explain_refuses_what_is_not_a_wallbox(site):
    assert await site.client.get("explain", dev_id="E9", auth=None) == (404, "unknown device")
    status, body = await site.client.get("explain", dev_id="M1", auth=None)
    assert (status, body) == (400, "M1 is a meter; explain works for wallboxes")
    await add(site, dev_id="E5", dev_type="evse_group")
    status, body = await site.client.get("explain", dev_id="E5", auth=None)
    assert status == 400 and "charging group" in body
    assert await site.client.get("explain", auth=None) == (400, "missing parameter dev_id")


async def test_explain_before_the_first_cycle(site):
    status, body = await site.client.get("explain", dev_id="E1", auth=None)
    assert status == 200
    assert body["setpoint"] is None and body["reason"]["code"] == "no_cycle_yet"


async def test_explain_names_the_binding_group_phase_and_timers(site):
    await set_params(site, max_total_current=32000, min_pause_time=300)
    await add(site, dev_id="E5", dev_type="evse_group", max_charging_cur=14000, name="Garage")
    e2 = await add(site, dev_id="E2", dev_type="evse_sim", group=5, phase_rotation=120)
    e3 = await add(site, dev_id="E3", dev_type="evse_sim", group=5, prio=2)
    plug_sim(site, e2, phases=1, max_current_ma=16000)
    plug_sim(site, e3, phases=3, max_current_ma=16000)
    await site.app.cycle.run_once()
    status, body = await site.client.get("explain", dev_id=e2, auth=None)
    # E2 (prio 1, phases not known yet: all three assumed) finds nothing left in the group
    assert body["setpoint"]["current_ma"] == 0 and body["setpoint"]["paused"] is True
    assert body["setpoint"]["pause_reason"] == "priority"
    assert body["reason"]["code"] == "priority"
    assert (body["reason"]["group"], body["reason"]["phase"]) == (5, 1)
    assert body["demand"]["phases"] == 7  # nothing drawn yet: all three assumed
    # it never ran: a wait, not a held pause (it would start as soon as there is room)
    assert body["timers"]["pause_held"] is False and body["timers"]["min_pause_left_s"] == 0
    site.clock.advance(3)
    await site.app.cycle.run_once()

    status, body = await site.client.get("explain", dev_id=e3, auth=None)
    assert status == 200
    assert body["mode"] == "load management" and body["cycle"] == 2
    # E3 (prio 2) is served first and takes the whole 14 A of the group
    assert body["setpoint"]["current_ma"] == 14000
    assert body["setpoint"]["last_set_charging_cur"] == 14000
    assert body["reason"]["code"] == "group_limit" and body["reason"]["group"] == 5
    assert body["demand"]["priority"] == 2 and body["demand"]["group"] == 5
    assert [n["group"] for n in body["nodes"]] == [5, 0]
    garage, site_node = body["nodes"]
    assert garage["name"] == "Garage" and garage["limit_ma"] == [14000, 14000, 14000]
    assert site_node["name"] == "site" and site_node["limit_ma"] == [32000, 32000, 32000]
    assert body["timers"]["running_since"] is not None and body["timers"]["pause_s"] == 0

    site.clock.advance(97)
    await site.app.cycle.run_once()
    _, body = await site.client.get("explain", dev_id=e2, auth=None)
    assert body["timers"]["pause_s"] == 100 and body["timers"]["min_pause_left_s"] == 0
    assert body["reason"]["code"] == "priority"
    info = next(d for d in (await site.client.get("get_dev_info"))[1]["devices"]
                if d["dev_id"] == e2)
    assert (info["paused"], info["pause_time"], info["pause_min_time"]) == (True, 100, 300)


async def test_explain_says_why_an_evse_does_not_charge(site):
    e2 = await add(site, dev_id="E2", dev_type="evse_ajax", max_charging_cur="M3.current")
    await push_evse(site, e2, 2)
    await site.app.cycle.run_once()
    _, body = await site.client.get("explain", dev_id=e2, auth=None)
    assert body["demand"]["allowed"] is False
    # no meter M3: the formula fails at run time, so this EVSE alone may not charge
    assert body["demand"]["reason"] == ("max current formula failed: formula: unknown name "
                                        "m3.current at 0")
    assert body["reason"]["code"] == "not_allowed"
    _, body = await site.client.get("explain", dev_id="E1", auth=None)
    assert body["reason"]["code"] == "not_connected"
    assert body["demand"]["connected"] is False
