"""The remote Power Brain driver over real Modbus TCP on loopback: one chargebrain drives the
built-in controller of another; dead and silent devices become COM errors."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from chargebrain.devices.base import EvseSetpoint
from tests.devices.support import stop_cycle
from tests.support.ports import free_port
from tests.support.server import Client, ServerProcess, running_app, wait_until


@pytest.fixture
async def pair(tmp_path):
    """Two running chargebrains: `server` (its Modbus port is the remote wallbox) and `client`."""
    async with running_app(tmp_path / "server") as server, \
            running_app(tmp_path / "client", modbus=False) as client:
        # the tests read and write by hand: no control cycle may write in between
        await stop_cycle(server)
        await stop_cycle(client)
        yield server, client


async def add_device(running, **config) -> str:
    status, body = await running.client.post("set_device", {"devices": [config]})
    assert (status, body) == (200, "ok")
    return running.app.devices.all()[-1].dev_id


async def dev_info(running, dev_id):
    status, body = await running.client.get("get_dev_info")
    assert status == 200
    return next(d for d in body["devices"] if d["dev_id"] == dev_id)


async def test_remote_wallbox_is_read_and_written_over_modbus_tcp(pair):
    server, client = pair
    powerbrain = server.app.powerbrain
    powerbrain.set_car(powerbrain.car.replace(plugged=True, phases=3, max_current_ma=16000),
                       powerbrain.clock())
    dev_id = await add_device(client, dev_type="evse_powerbrain",
                              address=f"127.0.0.1:{server.modbus_base}", id=1)
    registry = client.app.devices
    device = registry.get(dev_id)
    reading = await registry.read(device, registry.clock())
    # the controller boots with charging enabled at its default 16 A: the car charges
    assert reading is not None and reading.state == 3 and reading.cp_state == "Charging"
    assert reading.currents_ma == (16000, 16000, 16000) and reading.pp_state == "32 A cable"
    assert reading.model.startswith("cFos Power Brain,")
    assert await registry.apply(device, EvseSetpoint(8000), registry.clock())
    assert powerbrain.bank("evse").get_int("charging_cur_limit") == 80
    assert powerbrain.bank("evse").get_int("charging_enable") == 1
    reading = await registry.read(device, registry.clock())
    assert reading is not None and reading.currents_ma == (8000, 8000, 8000)
    info = await dev_info(client, dev_id)
    assert info["state"] == 3 and info["com_err"] is False
    assert (info["current_l1"], info["current_l2"], info["current_l3"]) == (8000, 8000, 8000)
    assert info["power_w"] == info["cur_charging_power"] == 5520
    assert info["last_set_charging_cur"] == 8000
    assert "evse" not in info  # the nested object belongs to the built-in wallbox only
    assert await registry.apply(device, EvseSetpoint(0, enabled=False), registry.clock())
    assert powerbrain.bank("evse").get_int("charging_enable") == 0
    reading = await registry.read(device, registry.clock())
    assert reading is not None and reading.state == 2 and reading.power_w == 0


async def test_remote_s0_meter(pair):
    server, client = pair
    status, _ = await server.client.get("modbus", device="meter2", write=8045,
                                        values="[231,232,233]")
    assert status == 200
    dev_id = await add_device(client, dev_type="meter_powerbrain", id=3,
                              address=f"127.0.0.1:{server.modbus_base + 2}")
    registry = client.app.devices
    reading = await registry.read(registry.get(dev_id), registry.clock())
    assert reading is not None and reading.voltages_v == (231, 232, 233)
    info = await dev_info(client, dev_id)
    assert (info["voltage_l1"], info["voltage_l3"], info["com_err"]) == (231, 233, False)


async def test_dead_remote_device_is_a_com_error_and_offline(pair):
    _, client = pair
    dev_id = await add_device(client, dev_type="evse_powerbrain",
                              address=f"127.0.0.1:{free_port()}", com_timeout_ms=1000)
    registry = client.app.devices
    device = registry.get(dev_id)
    assert await registry.read(device, registry.clock()) is None
    assert not await registry.apply(device, EvseSetpoint(6000), registry.clock())
    info = await dev_info(client, dev_id)
    assert info["state"] == 6 and info["com_err"] is True and info["com_errors"] == 2
    assert "connect" in info["last_error"] and info["last_set_charging_cur"] == -1


async def test_silent_device_times_out_without_holding_up_the_others(pair):
    server, client = pair
    connections: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # accept, read, never answer
        while await reader.read(1024):
            pass

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        slow = await add_device(client, dev_type="evse_powerbrain", address=f"127.0.0.1:{port}",
                                com_timeout_ms=300)
        good = await add_device(client, dev_type="evse_powerbrain",
                                address=f"127.0.0.1:{server.modbus_base}")
        results = await client.app.devices.read_all(client.app.devices.clock())
        assert results[slow] is None and results[good] is not None
        status = client.app.devices.get(slow).status
        assert status.com_err and status.com_errors == 1 and status.last_error
        assert connections  # it really connected and was left without an answer
    finally:
        for writer in connections:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_remote_wallbox_gets_fail_safe_and_falls_back_when_the_driver_goes_silent(pair):
    server, client = pair
    powerbrain = server.app.powerbrain
    powerbrain.set_car(powerbrain.car.replace(plugged=True, phases=3, max_current_ma=16000),
                       powerbrain.clock())
    dev_id = await add_device(client, dev_type="evse_powerbrain",
                              address=f"127.0.0.1:{server.modbus_base}", id=1)
    registry = client.app.devices
    device = registry.get(dev_id)
    assert await registry.read(device, registry.clock()) is not None
    bank = powerbrain.bank("evse")
    assert (bank.get_int("fail_safe_duration"), bank.get_int("fail_safe_current")) == (60, 0)
    assert await registry.apply(device, EvseSetpoint(10000), registry.clock())
    now = powerbrain.clock()
    powerbrain.tick(now + 30)  # half the fail-safe time without traffic: still 10 A
    assert bank.get_int("charging_current") == 100
    powerbrain.tick(now + 61)  # the driver has been silent for 60 s: the box stops by itself
    assert bank.get_int("charging_current") == 0


async def test_b_charges_at_a_setpoint_and_falls_back_when_a_is_killed(tmp_path):
    """chargebrain A (a child process, its own cycle) drives chargebrain B's wallbox over Modbus
    TCP; B's simulated car charges at A's setpoint; after kill -9 of A, B's fail-safe stops it."""
    async with running_app(tmp_path / "b") as b:
        await stop_cycle(b)  # only A drives B's box
        powerbrain = b.app.powerbrain
        powerbrain.set_car(powerbrain.car.replace(plugged=True, phases=3, max_current_ma=16000),
                           powerbrain.clock())
        a = ServerProcess(tmp_path / "a", modbus=False, extra=["--cycle-ms", "250"])
        a.start()
        try:
            async with aiohttp.ClientSession() as session:
                client = Client(a.base_url, session)
                status, body = await client.post("set_device", {"devices": [{
                    "dev_type": "evse_powerbrain", "address": f"127.0.0.1:{b.modbus_base}",
                    "id": 1, "max_charging_cur": 10000}]})
                assert (status, body) == (200, "ok")
            bank = powerbrain.bank("evse")

            async def charging_at_a_setpoint() -> bool:
                powerbrain.tick(powerbrain.clock())
                return bank.get_int("charging_current") == 100  # 10.0 A: A's setpoint

            await wait_until(charging_at_a_setpoint, timeout_s=20)
            assert bank.get_int("fail_safe_duration") == 60
            assert powerbrain.car.plugged and b.app.powerbrain.evse.power_w > 0
        finally:
            a.kill()  # SIGKILL: A cannot say goodbye
        powerbrain.tick(powerbrain.clock() + 61)  # B's time goes on: 61 s without traffic
        assert bank.get_int("charging_current") == 0 and powerbrain.evse.power_w == 0
