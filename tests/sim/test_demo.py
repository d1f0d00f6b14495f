"""`--demo`: a simulated home where load management visibly works within a few cycles."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from chargebrain.sim.demo import BOXES, DAY_S, DemoSite, Visit, house_w, pv_w
from tests.support.server import ServerProcess, running_app, wait_until

GENEROUS_S = 60.0
SITE_LIMIT_MA = 25000


def _limited(info: dict) -> list[dict]:
    """Demo wallboxes that charge, held below their maximum by a limit."""
    return [d for d in info["devices"]
            if d["name"].startswith("Sim-Wallbox") and d["state"] == 3
            and d["last_set_charging_cur"] < d["max_charging_cur"]
            and "limit" in d["lreason"]]


async def test_demo_site_shows_load_management_within_a_few_cycles(tmp_path):
    async with running_app(tmp_path / "data", modbus=False, demo=True, cycle_ms=250) as cb:
        for _ in range(4):
            await asyncio.wait_for(cb.app.cycle.wait_next(), GENEROUS_S)
        status, info = await cb.client.get("get_dev_info")
        assert status == 200
        names = {d["name"]: d for d in info["devices"]}
        for name in ("Sim-Carport", "Sim-Wallbox 1", "Sim-Wallbox 2", "Sim-Wallbox 3",
                     "Sim-House", "Sim-PV", "Sim-Grid", "VM EVSE Power", "VM Surplus"):
            assert name in names, name
        assert info["params"]["max_total_current"] == SITE_LIMIT_MA
        boxes = [names[f"Sim-Wallbox {i}"] for i in (1, 2, 3)]
        assert all(b["state"] == 3 for b in boxes)  # 17:00: every car is home and charging
        assert _limited(info), [b["lreason"] for b in boxes]
        # the grid connection is within the site limit on every phase
        grid = names["Sim-Grid"]
        assert max(grid["current_l1"], grid["current_l2"], grid["current_l3"]) <= SITE_LIMIT_MA
        assert grid["com_err"] is False and grid["role"] == 3
        assert names["Sim-House"]["power_w"] >= house_w(17.0)
        assert names["Sim-PV"]["power_w"] > 0  # the sun is still up at 17:00
        # the group holds wallboxes 2 and 3 and is listed with its members
        carport = names["Sim-Carport"]
        assert set(carport["members"]) == {names["Sim-Wallbox 2"]["dev_id"],
                                           names["Sim-Wallbox 3"]["dev_id"]}
        assert names["VM EVSE Power"]["power_w"] == info["params"]["cons_evse_power"]
        status, why = await cb.client.get("explain", dev_id=boxes[0]["dev_id"], auth=None)
        assert status == 200 and why["nodes"][-1]["name"] == "site"
        assert 20000 < why["nodes"][-1]["limit_ma"][0] <= 24000  # 25 A − 1 A reserve − overdraft


async def test_demo_is_installed_once_and_repaired_on_later_starts(tmp_path):
    data = tmp_path / "data"
    async with running_app(data, modbus=False, demo=True, cycle_ms=60000) as cb:
        ids = dict(cb.app.demo.ids)
        count = len(cb.app.devices.all())
        assert count == 3 + len(ids)  # E1, M1, M2 and the demo devices
        vm = ids["vm_surplus"]
        assert (await cb.client.get("del_device", dev_id=vm))[0] == 200
        assert (await cb.client.post("set_params", {"max_total_current": 30000}))[0] == 200
    async with running_app(data, modbus=False, demo=True, cycle_ms=60000) as cb:
        assert len(cb.app.devices.all()) == count  # nothing doubled, the deleted one is back
        again = cb.app.demo.ids
        assert {k: v for k, v in again.items() if k != "vm_surplus"} == {
            k: v for k, v in ids.items() if k != "vm_surplus"}
        assert cb.app.devices.get(again["vm_surplus"]).config.dev_type == (
            "meter_virtual_surplus")
        assert cb.app.params["max_total_current"] == 30000  # the user's change is kept
    async with running_app(data, modbus=False, cycle_ms=60000) as cb:
        assert cb.app.demo is None and len(cb.app.devices.all()) == count


def _dev_info(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/cnf?cmd=get_dev_info", timeout=10) as resp:
        return json.loads(resp.read())


async def test_serve_demo_with_the_default_cycle(tmp_path):
    server = ServerProcess(tmp_path / "data", modbus=False, extra=["--demo"])
    await asyncio.to_thread(server.start)
    try:
        async def limited() -> bool:
            info = await asyncio.to_thread(_dev_info, server.base_url)
            return bool(_limited(info))

        await wait_until(limited, GENEROUS_S, interval_s=0.5)
        info = await asyncio.to_thread(_dev_info, server.base_url)
        assert info["params"]["cycle_time"] >= 2500  # the default 3 s cycle
    finally:
        assert await asyncio.to_thread(server.stop) == 0


def test_simulated_day():
    assert Visit(21.0, 8.0, 40).covers(23.5) and Visit(21.0, 8.0, 40).covers(7.9)
    assert not Visit(21.0, 8.0, 40).covers(8.0) and not Visit(21.0, 8.0, 40).covers(20.0)
    assert Visit(9.0, 15.0, 60).covers(9.0) and not Visit(9.0, 15.0, 60).covers(15.0)
    assert pv_w(3.0) == 0 and pv_w(21.0) == 0 and 6000 < pv_w(13.0) <= 8000
    assert house_w(18.5) > house_w(17.5) >= 400  # the dinner peak
    assert all(b.visit_at(17.0) is not None for b in BOXES)  # everybody home at the start


def test_simulated_time_runs_compressed():
    site = DemoSite.__new__(DemoSite)
    site.day_s, site.start_hour, site._t0 = DAY_S, 17.0, None
    assert site.hour(1000.0) == pytest.approx(17.0)
    assert site.hour(1000.0 + DAY_S / 24) == pytest.approx(18.0)
    assert site.hour(1000.0 + DAY_S / 2) == pytest.approx(5.0)
