"""HTTP-input devices whose `address` is a broker URL: they listen on `set/<dev_id>` on that
broker (a real second Mosquitto), answer there, survive its restart, trigger a plan at once on a
pushed overload, and the URL's password is never shown."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from tests.support.mosquitto import Listener, Mosquitto
from tests.support.server import running_app


async def add(cb, **config) -> str:
    assert await cb.client.post("set_device", {"devices": [config]}) == (200, "ok")
    return cb.app.devices.all()[-1].dev_id


async def until(check, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.fixture
def other(tmp_path):
    """A second broker: the devices' own."""
    (tmp_path / "other").mkdir()
    broker = Mosquitto(tmp_path / "other")
    broker.start()
    yield broker
    broker.stop()


def power(cb, dev_id: str) -> int:
    reading = cb.app.devices.get(dev_id).status.reading
    return reading.power_w if reading is not None else 0


async def test_devices_listen_on_their_own_broker(cb, other, listener, caplog):
    url = f"mqtt://anna:geheim@127.0.0.1:{other.port}"
    m3 = await add(cb, dev_type="meter_ajax", address=url, com_timeout_ms=60000)
    e2 = await add(cb, dev_type="evse_ajax", address=url, com_timeout_ms=60000)
    mine = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    await until(lambda: cb.app.mqtt.pusher_connects.get(url, 0) >= 1)
    assert len(cb.app.mqtt._pushers) == 1  # one client for both devices
    async with Listener(other.port) as there:
        await there.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": 1500}))
        await until(lambda: power(cb, m3) == 1500)
        await there.publish(f"cfos_mqtt/set/{e2}", orjson.dumps(
            {"state": 3, "max_charging_current": 16000, "current": [6000, 6000, 6000]}))
        reply = await there.wait_for(f"cfos_mqtt/set_res/{e2}")
        assert set(reply) == {"device_enabled", "charging_enabled", "paused",
                              "charging_current"}
        with caplog.at_level(logging.WARNING, logger="chargebrain.mqtt"):
            # each device listens on its own broker only
            await there.publish(f"cfos_mqtt/set/{mine}", orjson.dumps({"power_w": 9}))
            await listener.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": 9}))
            await asyncio.sleep(0.8)
        lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
        assert len(lines) == 2, lines
        assert all("geheim" not in line for line in lines)
        assert power(cb, m3) == 1500 and power(cb, mine) == 0
    # the password is never shown, and sending back what get_devices shows keeps it
    _, devices = await cb.client.get("get_devices")
    _, info = await cb.client.get("get_dev_info")
    shown = f"mqtt://anna:***@127.0.0.1:{other.port}"
    assert {d["address"] for d in devices if d["dev_id"] in (m3, e2)} == {shown}
    assert {d["address"] for d in info["devices"] if d["dev_id"] in (m3, e2)} == {shown}
    assert b"geheim" not in orjson.dumps(devices) + orjson.dumps(info)
    m3_config = next(d for d in devices if d["dev_id"] == m3)
    assert await cb.client.post("set_device", {"devices": [{**m3_config, "name": "PV"}]}) == (
        200, "ok")
    assert cb.app.devices.get(m3).config.address == url
    # deleting the last device of a broker ends its client
    for dev_id in (m3, e2):
        assert await cb.client.get("del_device", dev_id=dev_id) == (200, "ok")
    await until(lambda: not cb.app.mqtt._pushers)


async def test_a_bad_broker_url_is_refused(cb):
    status, body = await cb.client.post("set_device", {"devices": [
        {"dev_type": "meter_ajax", "address": "mqtt://127.0.0.1:99999"}]})
    assert status == 400 and "port" in str(body)
    status, body = await cb.client.post("set_device", {"devices": [
        {"dev_type": "meter_ajax", "address": "mqttx://127.0.0.1"}]})
    assert status == 400 and "scheme" in str(body)


async def test_the_push_client_reconnects_after_a_broker_restart(cb, other):
    url = f"mqtt://127.0.0.1:{other.port}"
    m3 = await add(cb, dev_type="meter_ajax", address=url, com_timeout_ms=60000)
    await until(lambda: cb.app.mqtt.pusher_connects.get(url, 0) >= 1)
    other.stop()
    await asyncio.sleep(0.5)
    other.start()
    await until(lambda: cb.app.mqtt.pusher_connects.get(url, 0) >= 2, timeout_s=20)
    async with Listener(other.port) as there:
        await there.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": 4321}))
        await until(lambda: power(cb, m3) == 4321)
    assert cb.app.mqtt.connected.is_set()  # the default broker's client was not disturbed


async def test_the_push_broker_works_without_a_default_broker(tmp_path, other):
    async with running_app(tmp_path / "d", modbus=False, cycle_ms=250) as cb:
        url = f"mqtt5://127.0.0.1:{other.port}"
        m3 = await add(cb, dev_type="meter_ajax", address=url, com_timeout_ms=60000)
        await until(lambda: cb.app.mqtt.pusher_connects.get(url, 0) >= 1)
        assert not cb.app.mqtt.connected.is_set()  # mqtt_url is empty
        async with Listener(other.port) as there:
            await there.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": 77}))
            await until(lambda: power(cb, m3) == 77)


async def test_a_pushed_overload_triggers_a_plan_at_once(tmp_path, other):
    # the longest period: every cycle in this test is the test's own or a pushed one
    async with running_app(tmp_path / "d", modbus=False, cycle_ms=60000) as cb:
        url = f"mqtt://127.0.0.1:{other.port}"
        assert await cb.client.post("set_params", {"max_total_current": 32000}) == (200, "ok")
        grid = await add(cb, dev_id="M3", dev_type="meter_ajax", role=3, address=url,
                         com_timeout_ms=600000)
        box = await add(cb, dev_id="E2", dev_type="evse_ajax", address=url,
                        com_timeout_ms=600000)
        await until(lambda: cb.app.mqtt.pusher_connects.get(url, 0) >= 1)
        cycle = cb.app.cycle
        async with Listener(other.port) as there:
            car = orjson.dumps({"state": 3, "max_charging_current": 16000,
                                "current": [16000, 16000, 16000]})
            await there.publish(f"cfos_mqtt/set/{grid}", orjson.dumps(
                {"current": [5000, 5000, 5000]}))
            await until(lambda: cb.app.devices.get(grid).status.reading is not None)
            await cycle.run_once()
            await there.publish(f"cfos_mqtt/set/{box}", car)
            reply = await there.wait_for(f"cfos_mqtt/set_res/{box}")
            assert reply["charging_current"] == 16000
            await there.publish(f"cfos_mqtt/set/{grid}", orjson.dumps(
                {"current": [21000, 21000, 21000]}))  # the house 5 A + the car: fits
            await asyncio.sleep(0.5)
            assert cycle.stats.pushed_overloads == 0
            before = cycle.count
            await there.publish(f"cfos_mqtt/set/{grid}", orjson.dumps(
                {"current": [41000, 41000, 41000]}))  # the house jumps to 25 A
            await until(lambda: cycle.stats.pushed_overloads == 1 and cycle.count > before,
                        timeout_s=10)
            assert cb.app.devices.get(box).status.last_set_charging_cur_ma <= 32000 - 25000
            seen = len(there.messages)
            await there.publish(f"cfos_mqtt/set/{box}", car)
            reply = await there.wait_for(f"cfos_mqtt/set_res/{box}", after=seen)
            assert reply["charging_current"] <= 7000


async def test_a_device_naming_the_default_broker_by_url_is_served_once(cb, broker, caplog):
    url = f"mqtt://127.0.0.1:{broker.port}"  # = mqtt_url: two clients on one broker
    m3 = await add(cb, dev_type="meter_ajax", address=url, com_timeout_ms=60000)
    m4 = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    await until(lambda: cb.app.mqtt.pusher_connects.get(url, 0) >= 1)
    pushes = []
    cb.app.devices.on_push.append(pushes.append)
    async with Listener(broker.port) as there:
        with caplog.at_level(logging.WARNING, logger="chargebrain.mqtt"):
            await there.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": 11}))
            await there.publish(f"cfos_mqtt/set/{m4}", orjson.dumps({"power_w": 12}))
            await until(lambda: power(cb, m3) == 11 and power(cb, m4) == 12)
            await asyncio.sleep(0.5)
    assert sorted(pushes) == sorted([m3, m4])  # each push taken once, by one client
    assert [r.getMessage() for r in caplog.records if r.name.startswith("chargebrain.mqtt")
            and r.levelno >= logging.WARNING] == []
