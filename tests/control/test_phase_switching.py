"""Automatic 1p/3p switching over a running app: an `evse_sim` box and the local Power Brain
(register 8087 relay_select) go to one phase when only L1 has room, and back to three phases
once three fitted for `phase_switch_delay`."""

from __future__ import annotations

import pytest

from tests.control.helpers import add, clocked_app, device, plug_sim, push_meter, set_params


@pytest.fixture
async def site(tmp_path):
    async with clocked_app(tmp_path / "data") as running:
        yield running


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
