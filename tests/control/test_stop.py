"""Stopping leaves every controllable wallbox as `disable_policy` says (0 off, 1 minimum
current, −1 its maximum); observation mode and a never-started cycle leave them alone."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from tests.control.helpers import add, clocked_app, plug_sim, set_params
from tests.support.server import ADMIN_AUTH, ServerProcess, running_app, wait_until


@pytest.mark.parametrize(("policy", "limit_da", "enabled", "sim"), [
    (0, None, 0, (0, False)),
    (1, 70, 1, (7000, True)),
    (-1, 200, 1, (20000, True)),
])
async def test_stop_applies_the_disable_policy(tmp_path, policy, limit_da, enabled, sim):
    async with clocked_app(tmp_path / "data") as site:
        await set_params(site, disable_policy=policy, max_total_current=10000)
        await add(site, dev_id="E1", min_charging_cur=7000, max_charging_cur=20000)
        e2 = await add(site, dev_id="E2", dev_type="evse_sim", min_charging_cur=7000,
                       max_charging_cur=20000)
        plug_sim(site, e2, phases=3, max_current_ma=32000)
        status, _ = await site.client.get("sim_vehicle", dev_id="E1", plugged=1, phases=3)
        assert status == 200
        await site.app.cycle.run_once()
        bank = site.app.powerbrain.bank("evse")
        assert bank.get_int("charging_enable") == 1  # under control: charging
        driver = site.app.devices.get(e2).driver
        app = site.app
    # the context has stopped the app
    assert bank.get_int("charging_enable") == enabled
    if limit_da is not None:
        assert bank.get_int("charging_cur_limit") == limit_da
    assert (driver.offered_ma, driver.enabled) == sim
    assert app.devices.get(e2).status.last_set_charging_cur_ma == sim[0]


async def test_stop_in_observation_mode_or_before_control_writes_nothing(tmp_path):
    async with clocked_app(tmp_path / "a") as site:
        await set_params(site, disable_policy=0)
        bank = site.app.powerbrain.bank("evse")
        assert bank.get_int("charging_enable") == 1
    assert bank.get_int("charging_enable") == 1  # no cycle ever ran: nothing to give up
    async with clocked_app(tmp_path / "b") as site:
        await set_params(site, disable_policy=0, lb_enabled=False)
        await site.app.cycle.run_once()
        bank = site.app.powerbrain.bank("evse")
    assert bank.get_int("charging_enable") == 1


def _api(base_url: str, cmd: str, body: object | None = None, **query: object) -> object:
    qs = "&".join([f"cmd={cmd}"] + [f"{k}={v}" for k, v in query.items()])
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base_url}/cnf?{qs}", data=data,
                                     headers={"Authorization": ADMIN_AUTH})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


async def test_sigterm_leaves_a_remote_wallbox_per_disable_policy(tmp_path):
    # B is a Power Brain wallbox (its own cycle only observes); A is a chargebrain process
    # that drives B's EVSE over Modbus TCP and is then stopped with SIGTERM.
    async with running_app(tmp_path / "b") as b:
        assert (await b.client.post("set_params", {"lb_enabled": False}))[0] == 200
        powerbrain = b.app.powerbrain
        powerbrain.set_car(powerbrain.car.replace(plugged=True, phases=3,
                                                  max_current_ma=16000), powerbrain.clock())
        bank = powerbrain.bank("evse")
        a = ServerProcess(tmp_path / "a", modbus=False, extra=["--cycle-ms", "250"])
        await asyncio.to_thread(a.start)
        try:
            url = a.base_url
            assert await asyncio.to_thread(_api, url, "set_params",
                                           {"max_total_current": 10000, "disable_policy": 0}
                                           ) == "ok"
            assert await asyncio.to_thread(_api, url, "set_device", {"devices": [
                {"dev_id": "E2", "dev_type": "evse_powerbrain",
                 "address": f"127.0.0.1:{b.modbus_base}", "id": 1}]}) == "ok"

            async def controlled() -> bool:
                return bank.get_int("charging_cur_limit") == 100

            await wait_until(controlled, 60)
            assert bank.get_int("charging_enable") == 1
        finally:
            code = await asyncio.to_thread(a.stop)
        assert code == 0
        assert bank.get_int("charging_enable") == 0  # disable_policy 0: charging off


async def test_stop_lets_a_running_cycle_finish_first(tmp_path):
    async with clocked_app(tmp_path / "data") as site:
        await set_params(site, disable_policy=0)
        e2 = await add(site, dev_id="E2", dev_type="evse_sim")
        plug_sim(site, e2, phases=3, max_current_ma=16000)
        cycle = site.app.cycle  # its loop runs; the next periodic cycle is a minute away
        await cycle.run_once()  # reads the box, writes 16 A
        await set_params(site, max_total_current=10000)
        driver = site.app.devices.get(e2).driver
        gate, inside = asyncio.Event(), asyncio.Event()
        applied: list[object] = []
        real_apply = driver.apply

        async def slow_apply(setpoint):  # a wallbox that takes its time to answer
            inside.set()
            await gate.wait()
            applied.append(setpoint)
            await real_apply(setpoint)

        driver.apply = slow_apply
        cycle.request()  # an extra cycle now, inside the loop task: it writes 10 A
        await inside.wait()  # that cycle is in the middle of writing
        stopping = asyncio.create_task(cycle.stop())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not stopping.done()  # stop() waits for the cycle
        gate.set()
        await stopping
        assert cycle.last is not None and cycle.last.result.setpoints[e2].current_ma == 10000
        # the cycle's own write went through, then stop() left the box per policy 0
        assert [(s.current_ma, s.enabled) for s in applied] == [(10000, True), (0, False)]
