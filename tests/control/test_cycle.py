"""The control cycle over a real app: read → plan → write → publish, driven cycle by cycle."""

from __future__ import annotations

from chargebrain.devices.base import EvseSetpoint
from tests.control.helpers import (
    WriteCounter,
    add,
    dev_info,
    device,
    plug_sim,
    push_evse,
    push_meter,
    set_params,
)


async def test_sim_wallboxes_share_the_site_limit(site):
    await set_params(site, max_total_current=20000)
    e2 = await add(site, dev_id="E2", dev_type="evse_sim", max_charging_cur=16000)
    e3 = await add(site, dev_id="E3", dev_type="evse_sim", max_charging_cur=16000,
                   phase_rotation=120)
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    plug_sim(site, e3, phases=1, max_current_ma=16000)
    cycle = site.app.cycle
    await cycle.run_once()
    site.clock.advance(3)
    await cycle.run_once()
    info = await dev_info(site)
    boxes = {d["dev_id"]: d for d in info["devices"]}
    # E2 draws on all three phases, E3 (one phase, wired 120°) on building L2 only:
    # L2 carries both, so they share its 20 A equally
    assert boxes[e2]["last_set_charging_cur"] == 10000
    assert boxes[e3]["last_set_charging_cur"] == 10000
    assert boxes[e2]["state"] == 3 and boxes[e2]["current_l1"] == 10000
    assert boxes[e3]["phases"] == 1  # its own L1
    assert boxes[e2]["lreason"] == "site limit on L2"
    assert boxes[e2]["charging_enabled"] is True and boxes[e2]["paused"] is False
    assert info["params"]["cons_evse_power"] == round(40000 * 230 / 1000)
    assert boxes["E1"]["lreason"] == "no car connected"
    assert boxes["E1"]["last_set_charging_cur"] == 0


async def test_unchanged_setpoints_are_not_written_again(site):
    e2 = await add(site, dev_id="E2", dev_type="evse_sim", max_charging_cur=16000)
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    writes = WriteCounter(site, e2)
    local = WriteCounter(site, "E1")
    cycle = site.app.cycle
    await cycle.run_once()
    assert writes.calls == [EvseSetpoint(16000, one_phase=False)]
    assert local.calls == [EvseSetpoint(0, enabled=False, one_phase=False)]
    for _ in range(4):
        site.clock.advance(3)
        await cycle.run_once()
    assert (writes.count, local.count) == (1, 1)
    assert cycle.stats.skipped >= 8

    await set_params(site, max_total_current=10000)  # a real change is written once
    await cycle.run_once()
    await cycle.run_once()
    assert writes.calls[-1] == EvseSetpoint(10000, one_phase=False) and writes.count == 2


async def test_a_restarted_or_overwritten_device_gets_its_setpoint_again(site):
    cycle = site.app.cycle
    await cycle.run_once()
    local = WriteCounter(site, "E1")
    # someone else enables the local wallbox behind our back (cmd=modbus): the next reading
    # contradicts what we wrote, so the cycle writes again
    status, _ = await site.client.get("modbus", device="evse", write="8094", value="1")
    assert status == 200
    site.clock.advance(3)
    await cycle.run_once()
    assert local.calls == [EvseSetpoint(0, enabled=False, one_phase=False)]
    assert site.app.powerbrain.bank("evse").get_int("charging_enable") == 0

    e2 = await add(site, dev_id="E2", dev_type="evse_sim")
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    await cycle.run_once()
    status, _ = await site.client.get("reset_device", dev_id=e2)  # a new driver
    assert status == 200
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    writes = WriteCounter(site, e2)
    await cycle.run_once()
    assert writes.calls == [EvseSetpoint(16000, one_phase=False)]


async def test_observation_mode_reads_and_publishes_but_never_writes(site):
    await set_params(site, lb_enabled=False, disable_policy=0)
    e2 = await add(site, dev_id="E2", dev_type="evse_sim")
    e3 = await add(site, dev_id="E3", dev_type="evse_ajax")
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    counters = [WriteCounter(site, d) for d in ("E1", e2, e3)]
    await push_evse(site, e3, 3, (8000, 8000, 8000))
    for _ in range(3):
        await site.app.cycle.run_once()
        site.clock.advance(3)
    assert [c.count for c in counters] == [0, 0, 0]
    info = await device(site, e3)
    assert info["lreason"].startswith("observation mode")
    assert info["current_l1"] == 8000 and info["last_set_charging_cur"] == -1
    answer = await push_evse(site, e3, 3, (8000, 8000, 8000))
    assert answer["charging_enabled"] is False  # disable_policy 0: nobody controls it
    await set_params(site, lb_enabled=True)  # control again: everything is written
    await site.app.cycle.run_once()
    assert [c.count for c in counters] == [1, 1, 1]
    await set_params(site, lb_enabled=False)
    await site.app.cycle.run_once()
    await site.app.cycle.stop()  # stopping in observation mode leaves the boxes alone
    assert [c.count for c in counters] == [1, 1, 1]
    await set_params(site, lb_enabled=True)
    await site.app.cycle.run_once()  # back from observation: written again, not skipped
    assert [c.count for c in counters] == [2, 2, 2]


async def test_a_stale_grid_meter_counts_as_the_worst_case(site):
    await set_params(site, max_total_current=32000)
    m3 = await add(site, dev_id="M3", dev_type="meter_ajax", role=3, com_timeout_ms=10000)
    e2 = await add(site, dev_id="E2", dev_type="evse_sim")
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    cycle = site.app.cycle
    await push_meter(site, m3, (5000, 5000, 5000))
    await cycle.run_once()
    assert site.app.devices.get(e2).status.last_set_charging_cur_ma == 16000
    site.clock.advance(11)  # no push for longer than the meter's timeout
    await cycle.run_once()
    info = await device(site, e2)
    assert info["last_set_charging_cur"] == 0 and info["paused"] is True
    assert info["pause_reason"] == "stale_meter"
    assert "stale" in info["lreason"]
    assert (await device(site, m3))["com_err"] is True
    # fresh data again; the minimum pause (300 s) keeps it off, then it charges again
    site.clock.advance(301)
    await push_meter(site, m3, (5000, 5000, 5000))
    await cycle.run_once()
    assert site.app.devices.get(e2).status.last_set_charging_cur_ma == 16000


async def test_a_meter_that_never_delivered_is_not_zero_load(site):
    await add(site, dev_id="M3", dev_type="meter_ajax", role=1)
    e2 = await add(site, dev_id="E2", dev_type="evse_sim")
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    await site.app.cycle.run_once()
    assert site.app.devices.get(e2).status.last_set_charging_cur_ma == 0


async def test_an_evse_silent_for_3_minutes_is_booked_as_load(site):
    await set_params(site, max_total_current=32000)
    e2 = await add(site, dev_id="E2", dev_type="evse_ajax", com_timeout_ms=10000)
    e3 = await add(site, dev_id="E3", dev_type="evse_ajax", max_charging_cur=32000)
    cycle = site.app.cycle
    await push_evse(site, e2, 3, (16000, 16000, 16000))
    await push_evse(site, e3, 2)
    await cycle.run_once()
    assert site.app.devices.get(e3).status.last_set_charging_cur_ma == 16000
    site.clock.advance(11)  # E2 stops pushing: COM error from now on
    await push_evse(site, e3, 2)
    await cycle.run_once()
    e2_info = await device(site, e2)
    assert e2_info["com_err"] is True and e2_info["state"] == 6
    # within the grace time its last reading (16 A) is booked: E3 keeps 16 A of the 32 A
    assert site.app.devices.get(e3).status.last_set_charging_cur_ma == 16000
    for _ in range(4):
        site.clock.advance(45)
        await push_evse(site, e3, 2)
        await cycle.run_once()
    # 3 minutes of silence: its last power (11040 W) is booked as "error EVSE consumption"
    info = await dev_info(site)
    assert info["params"]["error_pwr"] == 11040
    e2_info = next(d for d in info["devices"] if d["dev_id"] == e2)
    assert e2_info["com_err_secs"] >= 180 and "booked" in e2_info["lreason"]
    assert site.app.devices.get(e3).status.last_set_charging_cur_ma == 16000


async def test_an_overdraft_is_recorded_and_cuts_the_budget(site):
    await set_params(site, max_total_current=20000)
    m3 = await add(site, dev_id="M3", dev_type="meter_ajax", role=3)
    e2 = await add(site, dev_id="E2", dev_type="evse_ajax")
    await push_meter(site, m3, (13000, 11000, 11000))
    await push_evse(site, e2, 3, (2000, 2000, 2000))  # a car about to finish draws 2 A
    site.clock.advance(10)
    await push_evse(site, e2, 3, (2000, 2000, 2000))
    await push_meter(site, m3, (25000, 13000, 13000))  # the house alone takes 23 A on L1
    await site.app.cycle.run_once()
    info = await dev_info(site)
    assert info["params"]["overdraft_cur"] == 5000
    assert site.app.params["overdraft_cur"] == 5000  # persisted
    e2_info = next(d for d in info["devices"] if d["dev_id"] == e2)
    # cutting E2 removes its 2 A of the 5 A overdraft; the 3 A nobody can command away cut
    # the budget for 5 minutes; room on L1: 20 − 3 − 23 < 6 A minimum: paused
    assert e2_info["last_set_charging_cur"] == 0 and e2_info["paused"] is True
    assert e2_info["lreason"] == ("site limit on L1, cut by 3000 mA after an overdraft "
                                  "(below the minimum current)")
    _, why = await site.client.get("explain", dev_id=e2)
    assert (why["reason"]["code"], why["reason"]["phase"]) == ("overdraft", 1)
    assert why["nodes"][0]["limit_ma"] == [17000, 17000, 17000]
    assert why["nodes"][0]["non_evse_ma"] == [23000, 11000, 11000]
    # the house load falls back: E2 charges again at once, inside the cut budget
    site.clock.advance(10)
    await push_evse(site, e2, 2)
    await push_meter(site, m3, (10000, 10000, 10000))
    await site.app.cycle.run_once()
    _, why = await site.client.get("explain", dev_id=e2)
    assert why["setpoint"]["current_ma"] == 7000  # 17 − 10 on L1
    # the penalty lasts 5 minutes, then the full limit is back
    site.clock.advance(301)
    await push_evse(site, e2, 2)
    await push_meter(site, m3, (10000, 10000, 10000))
    await site.app.cycle.run_once()
    _, why = await site.client.get("explain", dev_id=e2)
    assert why["nodes"][0]["limit_ma"] == [20000, 20000, 20000]
    assert why["setpoint"]["current_ma"] == 10000  # 20 − 10 on L1


async def test_virtual_meters_show_the_plan(site):
    await set_params(site, max_total_current=20000)
    m3 = await add(site, dev_id="M3", dev_type="meter_ajax", role=3)
    m4 = await add(site, dev_id="M4", dev_type="meter_virtual_evse_power")
    m5 = await add(site, dev_id="M5", dev_type="meter_virtual_grid_demand")
    m6 = await add(site, dev_id="M6", dev_type="meter_virtual_remaining_evse_power")
    m7 = await add(site, dev_id="M7", dev_type="meter_virtual_available_evse_power")
    e2 = await add(site, dev_id="E2", dev_type="evse_ajax")
    await push_meter(site, m3, (10000, 10000, 10000))
    await push_evse(site, e2, 3, (6000, 6000, 6000))
    await site.app.cycle.run_once()
    info = await dev_info(site)
    meters = {d["dev_id"]: d for d in info["devices"]}
    assert meters[m4]["power_w"] == 3 * 6000 * 230 // 1000 == info["params"]["cons_evse_power"]
    assert meters[m5]["power_w"] == 3 * 10000 * 230 // 1000
    assert (meters[m5]["current_l1"], meters[m5]["current_l3"]) == (10000, 10000)
    # house = grid − EVSE = 4 A per phase: 16 A per phase left for EVSEs
    assert meters[m7]["power_w"] == round(3 * 16000 * 230 / 1000)
    assert meters[m6]["power_w"] == meters[m7]["power_w"] - meters[m4]["power_w"]
    assert meters[m4]["role"] == 0  # virtual meters never feed back into the plan


async def test_a_failing_formula_site_limit_gives_nothing(site):
    await set_params(site, max_total_current="M3.current * 2")  # there is no M3
    e2 = await add(site, dev_id="E2", dev_type="evse_sim")
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    await site.app.cycle.run_once()
    assert site.app.devices.get(e2).status.last_set_charging_cur_ma == 0
    status, body = await site.client.get("explain", dev_id=e2)
    assert status == 200
    assert any("formula" in note for note in body["notes"])


async def test_phases_are_learned_and_rotated_into_the_building(site):
    await set_params(site, max_total_current=16000)
    e2 = await add(site, dev_id="E2", dev_type="evse_ajax", phase_rotation=240)
    e3 = await add(site, dev_id="E3", dev_type="evse_ajax")
    cycle = site.app.cycle
    await push_evse(site, e2, 2)
    await push_evse(site, e3, 2)
    await cycle.run_once()
    # nothing learned yet: both are assumed on all three phases and share 16 A
    assert [site.app.devices.get(d).status.last_set_charging_cur_ma for d in (e2, e3)] == [8000,
                                                                                         8000]
    # E2's car draws on its own L1 only, which is building L3 (240°); E3's on its L1
    await push_evse(site, e2, 3, (8000, 0, 0))
    await push_evse(site, e3, 3, (8000, 0, 0))
    await cycle.run_once()
    assert [site.app.devices.get(d).status.last_set_charging_cur_ma for d in (e2, e3)] == [16000,
                                                                                         16000]
    _, body = await site.client.get("explain", dev_id=e2)
    assert body["demand"]["phases"] == 1 and body["demand"]["phases_building"] == 4
    # unplugged: what was learned is forgotten
    await push_evse(site, e2, 1)
    await cycle.run_once()
    await push_evse(site, e2, 2)
    await cycle.run_once()
    _, body = await site.client.get("explain", dev_id=e2)
    assert body["demand"]["phases"] == 7


async def test_a_failing_before_cycle_hook_does_not_stop_load_management(site):
    e2 = await add(site, dev_id="E2", dev_type="evse_sim")
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    calls: list[float] = []

    def broken(now_s: float) -> None:
        calls.append(now_s)
        raise RuntimeError("simulation bug")

    site.app.cycle.before_cycle.append(broken)
    await site.app.cycle.run_once()
    assert calls and site.app.devices.get(e2).status.last_set_charging_cur_ma == 16000
