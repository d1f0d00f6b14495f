"""Automatic 1p/3p switching over a running app: an `evse_sim` box and the local Power Brain
(register 8087 relay_select) go to one phase when only L1 has room, and back to three phases
once three fitted for `phase_switch_delay`."""

from __future__ import annotations

import itertools

from chargebrain.sim.vehicle import VirtualCar
from tests.control.helpers import add, device, plug_sim, push_meter, set_params


async def test_boxes_switch_to_one_phase_and_back_after_the_delay(site):
    # no imbalance limit: two boxes on L1 alone are the point here
    await set_params(site, max_total_current=32000, phase_switch_delay=300, max_imbalance=0)
    m3 = await add(site, dev_id="M3", dev_type="meter_ajax", role=1, com_timeout_ms=600000)
    e2 = await add(site, dev_id="E2", dev_type="evse_sim", max_charging_cur=16000)
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    status, _ = await site.client.get("sim_vehicle", dev_id="E1", plugged=1, phases=3)
    assert status == 200
    bank = site.app.powerbrain.bank("evse")
    sim = site.app.devices.get(e2).driver
    cycle = site.app.cycle

    # house load fills L2 and L3: 4 A left there, 32 A on L1
    await push_meter(site, m3, (0, 28000, 28000))
    await cycle.run_once()
    site.clock.advance(3)
    await cycle.run_once()
    info = await device(site, e2)
    assert sim.one_phase is True
    assert info["last_set_charging_cur"] == 16000 and info["paused"] is False
    assert info["phases"] == 1 and info["current_l1"] == 16000 and info["current_l2"] == 0
    assert "one_phase" in info["lreason"]
    assert bank.get_int("relay_select") == 1  # the local Power Brain got 8087 = 1
    assert (await device(site, "E1"))["last_set_charging_cur"] == 16000

    # room on all phases again: they stay on one phase until the delay has passed
    site.clock.advance(3)
    await push_meter(site, m3, (0, 0, 0))
    await cycle.run_once()
    site.clock.advance(200)
    await push_meter(site, m3, (0, 0, 0))
    await cycle.run_once()
    assert sim.one_phase is True and bank.get_int("relay_select") == 1
    site.clock.advance(101)
    await push_meter(site, m3, (0, 0, 0))
    await cycle.run_once()
    assert sim.one_phase is False and bank.get_int("relay_select") == 0
    site.clock.advance(3)
    await cycle.run_once()
    info = await device(site, e2)
    assert info["phases"] == 7 and info["current_l3"] == 16000


async def test_a_box_that_may_not_switch_while_plugged_pauses_instead(site):
    await set_params(site, max_total_current=32000)
    m3 = await add(site, dev_id="M3", dev_type="meter_ajax", role=1, com_timeout_ms=600000)
    bank = site.app.powerbrain.bank("evse")
    status, _ = await site.client.get("sim_vehicle", dev_id="E1", plugged=1, phases=3)
    assert status == 200
    bank.set("s0_inputs", 0x0600)  # the hardware setting: no phase switching while plugged
    await push_meter(site, m3, (0, 28000, 28000))
    cycle = site.app.cycle
    await cycle.run_once()
    site.clock.advance(3)
    await cycle.run_once()
    info = await device(site, "E1")
    assert info["last_set_charging_cur"] == 0 and info["paused"] is True
    assert bank.get_int("relay_select") == 0 and "one_phase" not in info["lreason"]


async def test_a_surplus_box_with_a_mode5_rule_charges_on_one_phase_and_goes_up(site):
    """PV surplus over the running app: an `evse_sim` box with a legacy mode-5 rule, the grid
    meter pushed by the test (PV − house + what the car draws). 2.5 kW covers one phase only:
    it starts on L1; 6 kW for `phase_switch_delay`: three phases; a lasting dip to 2.5 kW:
    held at the three-phase minimum for the rule's udur, then back to one phase, no stop."""
    await set_params(site, max_total_current=32000, phase_switch_delay=300, max_imbalance=0)
    m3 = await add(site, dev_id="M3", dev_type="meter_ajax", role=3, com_timeout_ms=600000)
    e2 = await add(site, dev_id="E2", dev_type="evse_sim", max_charging_cur=16000,
                   charging_rules=[{"mode": 5, "enabled": True, "udur": 120}])
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    sim = site.app.devices.get(e2).driver
    cycle = site.app.cycle
    log: list[tuple[int, int, bool]] = []

    async def run(pv_w: int, seconds: int) -> None:
        for _ in range(seconds // 10):
            draw = sim.car.draw_ma(sim.offered_ma, sim.enabled, 1 if sim.one_phase else 3)
            grid = tuple(round(-pv_w * 1000 / 690) + d for d in draw)
            await push_meter(site, m3, grid)  # type: ignore[arg-type]
            await cycle.run_once()
            log.append((pv_w, sim.offered_ma if sim.enabled else 0, sim.one_phase))
            site.clock.advance(10)

    await run(2500, 200)
    assert sim.one_phase is True and 10000 <= log[-1][1] <= 10900, log  # 2.5 kW / 230 V
    await run(6000, 250)
    assert sim.one_phase is True, log  # not before phase_switch_delay
    await run(6000, 100)
    assert sim.one_phase is False and 8000 <= log[-1][1] <= 8700, log  # 6 kW / 690 V
    await run(2500, 60)
    assert sim.one_phase is False and log[-1][1] == 6000, log  # held: the rule's udur
    await run(2500, 150)
    assert sim.one_phase is True and log[-1][1] > 6000, log
    starts = sum(1 for a, b in itertools.pairwise(log) if not a[1] and b[1])
    assert starts + (1 if log[0][1] else 0) == 1, log
    switches = sum(1 for a, b in itertools.pairwise(log) if a[2] != b[2])
    switches += 1 if log[0][2] else 0  # the box starts on three phases
    assert switches == 3, log  # 1p before it ever charged, 3p, 1p again (cap: 4)


async def test_a_switch_phases_variable_beats_the_automatic(site):
    """CM variable `E2_switch_phases` 1 keeps the box on one phase however much surplus there
    is; −1 gives it back to the automatic, which goes to three phases after the delay."""
    await set_params(site, max_total_current=32000, phase_switch_delay=60, max_imbalance=0)
    m3 = await add(site, dev_id="M3", dev_type="meter_ajax", role=1, com_timeout_ms=600000)
    e2 = await add(site, dev_id="E2", dev_type="evse_sim", max_charging_cur=16000)
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    sim = site.app.devices.get(e2).driver
    status, body = await site.client.get("set_cm_vars", name="E2_switch_phases", val=1)
    assert status == 200, body
    cycle = site.app.cycle
    for _ in range(20):  # plenty of room on every phase
        await push_meter(site, m3, (0, 0, 0))
        await cycle.run_once()
        site.clock.advance(10)
    assert sim.one_phase is True
    info = await device(site, e2)
    assert "forced" in info["lreason"] and info["last_set_charging_cur"] == 16000
    status, body = await site.client.get("set_cm_vars", name="E2_switch_phases", val=-1)
    assert status == 200, body
    seen = []
    for _ in range(10):
        await push_meter(site, m3, (0, 0, 0))
        await cycle.run_once()
        seen.append(sim.one_phase)
        site.clock.advance(10)
    assert seen[0] is True and seen[-1] is False, seen  # back to 3p after the 60 s delay


async def test_the_phase_override_beats_the_variable_until_unplug(site):
    """override_device `phases=1` holds a box on one phase although `switch_phases` says 3;
    `phases=0` gives it back to the variable; a bad value is refused and changes nothing; the
    override ends with the session."""
    await set_params(site, max_total_current=32000, phase_switch_delay=60, max_imbalance=0)
    m3 = await add(site, dev_id="M3", dev_type="meter_ajax", role=1, com_timeout_ms=600000)
    e2 = await add(site, dev_id="E2", dev_type="evse_sim", max_charging_cur=16000)
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    sim = site.app.devices.get(e2).driver
    cycle = site.app.cycle

    async def run(cycles: int) -> list[bool]:
        seen = []
        for _ in range(cycles):
            await push_meter(site, m3, (0, 0, 0))
            await cycle.run_once()
            seen.append(sim.one_phase)
            site.clock.advance(10)
        return seen

    assert (await site.client.get("set_cm_vars", name="switch_phases", val=3))[0] == 200
    assert (await site.client.get("override_device", dev_id=e2, phases=1)) == (200, "ok")
    assert (await run(12))[-1] is True
    info = await device(site, e2)
    assert "forced" in info["lreason"]
    status, body = await site.client.get("override_device", dev_id=e2, phases=2)
    assert status == 400 and "phases" in body
    assert (await run(3))[-1] is True  # the refused request changed nothing
    assert (await site.client.get("override_device", dev_id=e2, phases=0)) == (200, "ok")
    assert (await run(3))[-1] is False  # the variable's 3 phases again
    assert (await site.client.get("override_device", dev_id=e2, phases=1)) == (200, "ok")
    assert (await run(3))[-1] is True
    site.app.devices.get(e2).driver.car = VirtualCar(plugged=False)
    await run(2)
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    assert (await run(3))[-1] is False  # a new session: no override, the variable's 3 phases
