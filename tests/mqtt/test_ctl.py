"""`cfos_mqtt/ctl` against a real Mosquitto: an external controller drives the wallboxes in
observation mode, capped at their maximum; malformed messages change nothing; a controller that
goes silent, `mqtt_ctl` turned off and load management turned on give control back."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from tests.mqtt.conftest import wait_connected

CTL = "cfos_mqtt/ctl"


async def add(cb, **config) -> str:
    assert await cb.client.post("set_device", {"devices": [config]}) == (200, "ok")
    return cb.app.devices.all()[-1].dev_id


async def until(check, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def answer(listener, dev_id: str) -> dict:
    """Push a plugged-in car for an HTTP-input wallbox over MQTT; its set_res answer."""
    seen = len(listener.messages)
    await listener.publish(f"cfos_mqtt/set/{dev_id}", orjson.dumps(
        {"state": 3, "max_charging_current": 32000, "current": [6000, 6000, 6000]}))
    return await listener.wait_for(f"cfos_mqtt/set_res/{dev_id}", after=seen)


@pytest.fixture
async def observing(cb):
    """chargebrain in observation mode with `mqtt_ctl` on, disable_policy 1 (minimum)."""
    assert await cb.client.post("set_params", {"lb_enabled": False, "mqtt_ctl": True,
                                               "disable_policy": 1,
                                               "mqtt_ctl_timeout_s": 3600}) == (200, "ok")
    await wait_connected(cb.app, 2)
    return cb


def last_set(cb, dev_id: str) -> int:
    return cb.app.devices.get(dev_id).status.last_set_charging_cur_ma


async def test_ctl_sets_currents_capped_at_the_maximum(observing, listener):
    cb = observing
    e2 = await add(cb, dev_type="evse_ajax", address="mqtt", com_timeout_ms=60000,
                   max_charging_cur=16000)
    before = await answer(listener, e2)  # observation mode, nothing said: disable_policy
    assert before["charging_current"] == 6000
    await listener.publish(CTL, orjson.dumps({e2: {"cur": 10000, "ena": 1, "wke": 0},
                                              "E1": {"cur": 8000}}))
    await until(lambda: last_set(cb, "E1") == 8000)  # the local Power Brain, written
    assert (await answer(listener, e2))["charging_current"] == 10000
    # more than the wallbox's maximum is cut to it; a key left out keeps its value
    await listener.publish(CTL, orjson.dumps({e2: {"cur": 40000}, "E1": {"ena": 0}}))
    await until(lambda: last_set(cb, "E1") == 0)
    assert (await answer(listener, e2))["charging_current"] == 16000
    await listener.publish(CTL, orjson.dumps({"E1": {"ena": True}}))
    await until(lambda: last_set(cb, "E1") == 8000)
    # below the minimum: no charging (no car charges below min_charging_cur)
    await listener.publish(CTL, orjson.dumps({e2: {"cur": 3000, "phs": 1}}))
    await until(lambda: cb.app.mqtt.ctl.held(e2) is not None
                and cb.app.mqtt.ctl.held(e2).current_ma == 0)
    reply = await answer(listener, e2)
    assert reply["charging_current"] == 0 and reply["charging_enabled"] is False


async def test_malformed_ctl_messages_change_nothing(observing, listener, caplog):
    cb = observing
    m3 = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    await listener.publish(CTL, orjson.dumps({"E1": {"cur": 9000}}))
    await until(lambda: last_set(cb, "E1") == 9000)
    writes = cb.app.mqtt.ctl.writes
    bad = [b"{not json", b"[1, 2]", b"{}", b'"E1"',
           orjson.dumps({"E1": {"cur": -1}}), orjson.dumps({"E1": {"cur": "viel"}}),
           orjson.dumps({"E1": {"phs": 2}}), orjson.dumps({"E1": {"ena": 7}}),
           orjson.dumps({"E1": {"boost": 1}}), orjson.dumps({"E1": 16000}),
           # one bad entry refuses the whole message: E1's part is not applied either
           orjson.dumps({"E1": {"cur": 12000}, "E99": {"cur": 6000}}),
           orjson.dumps({"E1": {"cur": 12000}, m3: {"cur": 6000}})]
    with caplog.at_level(logging.WARNING, logger="chargebrain.mqtt"):
        for payload in bad:
            await listener.publish(CTL, payload)
        await asyncio.sleep(1.0)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("chargebrain.mqtt")
             and r.levelno >= logging.WARNING]
    assert len(lines) == len(bad), lines
    assert all(line.startswith("MQTT ctl ignored") for line in lines)
    assert cb.app.mqtt.ctl.writes == writes and last_set(cb, "E1") == 9000
    assert cb.app.mqtt.connected.is_set()


async def test_ctl_is_refused_while_load_management_is_on(cb, listener, caplog):
    assert await cb.client.post("set_params", {"mqtt_ctl": True}) == (200, "ok")
    await wait_connected(cb.app, 2)
    with caplog.at_level(logging.WARNING, logger="chargebrain.mqtt"):
        await listener.publish(CTL, orjson.dumps({"E1": {"cur": 7000}}))
        await asyncio.sleep(0.8)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("chargebrain.mqtt")
             and r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "load management is on" in lines[0]
    assert cb.app.mqtt.ctl.writes == 0 and cb.app.mqtt.ctl.controlled() == []


async def test_ctl_is_not_subscribed_without_the_option(cb, listener):
    assert await cb.client.post("set_params", {"lb_enabled": False}) == (200, "ok")
    await listener.publish(CTL, orjson.dumps({"E1": {"cur": 7000}}))
    await asyncio.sleep(0.8)
    assert cb.app.mqtt.ctl.writes == 0


async def test_a_silent_controller_falls_back_to_disable_policy(observing, listener):
    cb = observing
    assert await cb.client.post("set_params", {"mqtt_ctl_timeout_s": 2}) == (200, "ok")
    e2 = await add(cb, dev_type="evse_ajax", address="mqtt", com_timeout_ms=60000)
    await listener.publish(CTL, orjson.dumps({"E1": {"cur": 12000}, e2: {"cur": 11000}}))
    await until(lambda: last_set(cb, "E1") == 12000)
    assert (await answer(listener, e2))["charging_current"] == 11000
    for _ in range(3):  # E1 keeps being named; E2 goes silent
        await asyncio.sleep(0.8)
        await listener.publish(CTL, orjson.dumps({"E1": {"cur": 12000}}))
    await until(lambda: cb.app.mqtt.ctl.held(e2) is None, timeout_s=5)
    assert (await answer(listener, e2))["charging_current"] == 6000  # disable_policy 1
    assert cb.app.mqtt.ctl.held("E1") is not None and last_set(cb, "E1") == 12000
    # then E1 too: its minimum current is written to it
    await until(lambda: last_set(cb, "E1") == 6000, timeout_s=6)
    assert cb.app.mqtt.ctl.controlled() == [] and cb.app.mqtt.ctl.fallbacks == 2


async def test_turning_ctl_off_gives_the_wallboxes_back(observing, listener):
    cb = observing
    assert await cb.client.post("set_params", {"disable_policy": 0}) == (200, "ok")
    await listener.publish(CTL, orjson.dumps({"E1": {"cur": 12000}}))
    await until(lambda: last_set(cb, "E1") == 12000)
    assert await cb.client.post("set_params", {"mqtt_ctl": False}) == (200, "ok")
    await until(lambda: last_set(cb, "E1") == 0, timeout_s=5)  # disable_policy 0: off
    assert cb.app.mqtt.ctl.controlled() == []


async def test_load_management_on_takes_over(observing, listener):
    cb = observing
    await listener.publish(CTL, orjson.dumps({"E1": {"cur": 12000}}))
    await until(lambda: last_set(cb, "E1") == 12000)
    assert await cb.client.post("set_params", {"lb_enabled": True}) == (200, "ok")
    await until(lambda: cb.app.mqtt.ctl.controlled() == [], timeout_s=5)
    assert cb.app.mqtt.ctl.held("E1") is None and cb.app.mqtt.ctl.fallbacks == 0


async def test_stopping_chargebrain_gives_the_wallboxes_back(tmp_path, broker, listener):
    from tests.support.server import running_app

    async with running_app(tmp_path / "d2", modbus=False, cycle_ms=250) as running:
        assert await running.client.post("set_params", {
            "mqtt_url": broker.url, "lb_enabled": False, "mqtt_ctl": True,
            "disable_policy": 0}) == (200, "ok")
        await wait_connected(running.app, 1)
        await listener.publish(CTL, orjson.dumps({"E1": {"cur": 12000}}))
        await until(lambda: last_set(running, "E1") == 12000)
    assert last_set(running, "E1") == 0 and running.app.mqtt.ctl.fallbacks == 1
