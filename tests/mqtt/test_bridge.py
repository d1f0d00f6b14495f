"""The MQTT API against a real Mosquitto: state topics, pushes, the API, a broker restart."""

from __future__ import annotations

import asyncio
import logging

import orjson

from tests.mqtt.conftest import wait_connected
from tests.support.mosquitto import Listener


async def add(cb, **config) -> str:
    """A device that publishes `get/<dev_id>` (unless told `mqtt_publish=False`)."""
    config.setdefault("mqtt_publish", True)
    assert await cb.client.post("set_device", {"devices": [config]}) == (200, "ok")
    return cb.app.devices.all()[-1].dev_id


async def test_state_topics_are_retained_and_hide_the_password(cb, broker):
    assert await cb.client.post("set_device", {"devices": [{"dev_id": "E1",
                                                            "mqtt_publish": True}]}) == (200, "ok")
    assert await cb.client.post("set_params", {"mqtt_url": f"mqtt://u:geheim@127.0.0.1:"
                                               f"{broker.port}"}) == (200, "ok")
    await wait_connected(cb.app, 2)
    await asyncio.sleep(0.6)
    async with Listener(broker.port) as late:  # retained: a late subscriber gets them
        info = await late.wait_for("cfos_mqtt/get/dev_info")
        params = await late.wait_for("cfos_mqtt/get/params")
        device = await late.wait_for("cfos_mqtt/get/E1")
        assert await late.wait_for("cfos_mqtt/status") == b"online"
    assert {d["dev_id"] for d in info["devices"]} >= {"E1"}
    assert device["dev_id"] == "E1" and "power_w" in device
    assert params["mqtt_url"] == f"mqtt://u:***@127.0.0.1:{broker.port}"
    assert b"geheim" not in orjson.dumps(info)


async def test_at_most_one_publish_round_per_cycle(cb, listener):
    m3 = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    await listener.wait_for("cfos_mqtt/get/" + m3)
    rounds = cb.app.mqtt.publishes
    for i in range(40):  # 40 pushes within ~1 s: many snapshots, few rounds
        await listener.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": i}))
        await asyncio.sleep(0.025)
    await listener.wait_for(f"cfos_mqtt/get/{m3}", lambda d: d["power_w"] == 39)
    period_s = cb.app.cycle.period_s
    assert cb.app.mqtt.publishes - rounds <= 1.0 / period_s * 2 + 2


async def test_meter_and_evse_push_and_the_evse_answer(cb, listener):
    m3 = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    e2 = await add(cb, dev_type="evse_ajax", address="mqtt", com_timeout_ms=60000)
    await wait_connected(cb.app, 1)
    await listener.publish(f"cfos_mqtt/set/{m3}", orjson.dumps(
        {"power_w": 1234, "import_wh": 500, "current": [1000, 2000, 3000]}))
    meter = await listener.wait_for(f"cfos_mqtt/get/{m3}", lambda d: d["power_w"] == 1234)
    assert (meter["import"], meter["current_l2"]) == (500, 2000)
    await listener.publish(f"cfos_mqtt/set/{e2}", orjson.dumps(
        {"state": 3, "max_charging_current": 16000, "current": [6000, 6000, 6000]}))
    answer = await listener.wait_for(f"cfos_mqtt/set_res/{e2}")
    assert set(answer) == {"device_enabled", "charging_enabled", "paused", "charging_current"}
    assert answer["device_enabled"] is True
    evse = await listener.wait_for(f"cfos_mqtt/get/{e2}", lambda d: d["state"] == 3)
    assert evse["current_l1"] == 6000


async def test_malformed_payloads_are_ignored_with_one_log_line(cb, listener, caplog):
    m3 = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    http_only = await add(cb, dev_type="meter_ajax", com_timeout_ms=60000)
    await listener.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": 77}))
    await listener.wait_for(f"cfos_mqtt/get/{m3}", lambda d: d["power_w"] == 77)
    bad = [b"{not json", b"[1,2]", b'{"power_w": "viel"}', b'{"power_w": 1e20}', b""]
    with caplog.at_level(logging.WARNING, logger="chargebrain.mqtt"):
        for payload in bad:
            await listener.publish(f"cfos_mqtt/set/{m3}", payload)
        await listener.publish(f"cfos_mqtt/set/{http_only}", orjson.dumps({"power_w": 5}))
        await listener.publish("cfos_mqtt/set/M99", orjson.dumps({"power_w": 5}))
        await asyncio.sleep(1.0)
    lines = [r for r in caplog.records if r.name.startswith("chargebrain.mqtt")
             and r.levelno >= logging.WARNING]
    assert len(lines) == len(bad) + 2, [r.getMessage() for r in lines]
    assert all("ignored" in r.getMessage() for r in lines)
    _, info = await cb.client.get("get_dev_info")
    power = {d["dev_id"]: d["power_w"] for d in info["devices"]}
    assert power[m3] == 77 and power[http_only] == 0
    assert cb.app.mqtt.connected.is_set()


async def test_broker_restart_reconnects_and_republishes(cb, broker):
    m3 = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    async with Listener(broker.port) as before:
        await before.wait_for(f"cfos_mqtt/get/{m3}")
    broker.stop()  # no persistence: the retained topics are gone with it
    await asyncio.sleep(0.5)
    broker.start()
    await wait_connected(cb.app, 2, timeout_s=20)
    async with Listener(broker.port) as after:
        assert (await after.wait_for(f"cfos_mqtt/get/{m3}"))["dev_id"] == m3
        assert await after.wait_for("cfos_mqtt/get/dev_info")
        node = f"chargebrain_{cb.app.devices.serialno}"
        assert await after.wait_for(f"homeassistant/sensor/{node}/{m3.lower()}_power/config")
        await after.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": 4321}))
        await after.wait_for(f"cfos_mqtt/get/{m3}", lambda d: d["power_w"] == 4321)
        assert after.payloads("cfos_mqtt/status")[-1] == b"online"


async def test_api_and_ctl_work_again_after_a_broker_restart(cb, broker):
    assert await cb.client.post("set_params", {"mqtt_api": True, "mqtt_ctl": True,
                                               "lb_enabled": False}) == (200, "ok")
    await wait_connected(cb.app, 2)
    broker.stop()
    await asyncio.sleep(0.5)
    broker.start()
    await wait_connected(cb.app, 3, timeout_s=20)
    async with Listener(broker.port) as after:
        await after.publish("cfos_mqtt/api/cmd=get_params", b"")
        assert (await after.wait_for("cfos_mqtt/api_res"))["mqtt_ctl"] is True
        await after.publish("cfos_mqtt/ctl", orjson.dumps({"E1": {"cur": 7000}}))
        deadline = asyncio.get_running_loop().time() + 10
        while cb.app.devices.get("E1").status.last_set_charging_cur_ma != 7000:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)


async def test_the_cycle_runs_on_while_the_broker_is_down(cb, broker):
    broker.stop()
    started = len(cb.app.cycle.stats.period_starts)
    await asyncio.sleep(1.5)
    assert len(cb.app.cycle.stats.period_starts) - started >= 4
    assert not cb.app.mqtt.connected.is_set()
    status, _ = await cb.client.get("get_dev_info")
    assert status == 200
    broker.start()
    await wait_connected(cb.app, 2, timeout_s=20)


async def test_last_will_says_offline(tmp_path, broker, listener):
    from tests.support.server import running_app

    async with running_app(tmp_path / "d2", modbus=False, cycle_ms=250) as running:
        await running.client.post("set_params", {"mqtt_url": broker.url})
        await wait_connected(running.app, 1)
        assert await listener.wait_for("cfos_mqtt/status") == b"online"
    await asyncio.sleep(0.3)
    assert listener.payloads("cfos_mqtt/status")[-1] == b"offline"


async def test_param_change_reconnects_to_another_broker(cb, tmp_path):
    from tests.support.mosquitto import Mosquitto

    (tmp_path / "b2").mkdir()
    second = Mosquitto(tmp_path / "b2")
    second.start()
    try:
        assert await cb.client.post("set_params", {"mqtt_url": second.url}) == (200, "ok")
        await wait_connected(cb.app, 2)
        async with Listener(second.port) as listener:
            await listener.wait_for("cfos_mqtt/get/params")
        assert await cb.client.post("set_params", {"mqtt_url": ""}) == (200, "ok")
        await asyncio.sleep(0.3)
        assert not cb.app.mqtt.connected.is_set()
    finally:
        second.stop()


async def test_api_is_off_by_default(cb, listener):
    await listener.publish("cfos_mqtt/api/cmd=get_params", b"")
    await asyncio.sleep(0.8)
    assert listener.payloads("cfos_mqtt/api_res") == []


async def test_api_runs_commands_and_applies_a_duplicate_once(cb, listener):
    assert await cb.client.post("set_params", {"mqtt_api": True}) == (200, "ok")
    await wait_connected(cb.app, 2)
    await listener.publish("cfos_mqtt/api/cmd=get_params", b"")
    params = await listener.wait_for("cfos_mqtt/api_res")
    assert params["mqtt_api"] is True
    seen = len(listener.messages)
    # a state-changing command without msg_id is refused, and changes nothing
    await listener.publish("cfos_mqtt/api/cmd=set_params", orjson.dumps({"title": "neu"}))
    refusal = await listener.wait_for("cfos_mqtt/api_res", after=seen)
    assert "msg_id" in refusal and cb.app.params["title"] != "neu"
    # set_user then del_user, each delivered twice: the second copy is not run again
    user = {"id": "u1", "name": "Anna"}
    for _ in range(2):
        await listener.publish("cfos_mqtt/api/cmd=set_user&msg_id=a1", orjson.dumps(user))
    await asyncio.sleep(0.5)
    seen = len(listener.messages)
    for _ in range(2):
        await listener.publish("cfos_mqtt/api/cmd=del_user&id=u1&msg_id=a2", b"")
    first = await listener.wait_for("cfos_mqtt/api_res", after=seen)
    index = next(i for i, m in enumerate(listener.messages) if i >= seen
                 and m[0] == "cfos_mqtt/api_res") + 1
    second = await listener.wait_for("cfos_mqtt/api_res", after=index)
    assert first == second == "ok"  # run twice, the second would say the user is unknown
    _, users = await cb.client.get("get_users")
    assert isinstance(users, list) and all(u.get("id") != "u1" for u in users)


async def test_api_refuses_long_answers(cb, listener):
    assert await cb.client.post("set_params", {"mqtt_api": True}) == (200, "ok")
    await wait_connected(cb.app, 2)
    for i in range(100):
        await cb.client.post("set_device", {"devices": [
            {"dev_type": "meter_ajax", "name": f"Zähler mit langem Namen {i} " * 6,
             "desc": "eine lange Beschreibung " * 8}]})
    await listener.publish("cfos_mqtt/api/cmd=get_dev_info", b"")
    answer = await listener.wait_for("cfos_mqtt/api_res")
    assert isinstance(answer, str) and "too long" in answer


async def test_log_lines_and_finished_transactions(cb, listener):
    logging.getLogger("chargebrain.control").warning("a line for the MQTT log %d", 42)
    line = await listener.wait_for("cfos_mqtt/log")
    assert b"a line for the MQTT log 42" in line and b"WARNING" in line
    e2 = await add(cb, dev_type="evse_ajax", address="mqtt", com_timeout_ms=60000)
    plugged = {"state": 3, "max_charging_current": 16000, "current": [6000, 6000, 6000],
               "total_energy": 1000}
    await listener.publish(f"cfos_mqtt/set/{e2}", orjson.dumps(plugged))
    await listener.wait_for(f"cfos_mqtt/get/{e2}", lambda d: d["state"] == 3)
    await asyncio.sleep(0.6)  # a few cycles: the transaction is open
    await listener.publish(f"cfos_mqtt/set/{e2}", orjson.dumps(
        {**plugged, "state": 1, "current": [0, 0, 0], "total_energy": 1500}))
    record = await listener.wait_for("cfos_mqtt/ta_log")
    assert record["dev_id"] == e2
    _, log = await cb.client.get("get_transactions")
    assert any(r.get("id") == record.get("id") for r in log)


async def test_only_devices_with_mqtt_publish_are_published(cb, broker, listener):
    quiet = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000,
                      mqtt_publish=False)
    loud = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    for dev_id in (quiet, loud):
        await listener.publish(f"cfos_mqtt/set/{dev_id}", orjson.dumps({"power_w": 50}))
    await listener.wait_for(f"cfos_mqtt/get/{loud}", lambda d: d["power_w"] == 50)
    await asyncio.sleep(0.8)
    assert listener.payloads(f"cfos_mqtt/get/{quiet}") == []
    assert not any(t.startswith("homeassistant/") and f"/{quiet.lower()}_" in t
                   for t, _, _ in listener.messages)
    # in the full get_dev_info it is still there
    info = orjson.loads(listener.payloads("cfos_mqtt/get/dev_info")[-1])
    assert quiet in {d["dev_id"] for d in info["devices"]}
    # once per change: an unchanged device is not sent again every cycle
    for _ in range(2):  # whatever the push changed is out (the writer follows each cycle)
        await cb.app.cycle.wait_next()
    await asyncio.sleep(cb.app.cycle.period_s)
    count = len(listener.payloads(f"cfos_mqtt/get/{loud}"))
    for _ in range(4):
        await cb.app.cycle.wait_next()
    await asyncio.sleep(cb.app.cycle.period_s)
    sent = listener.payloads(f"cfos_mqtt/get/{loud}")
    assert len(sent) == count, [orjson.loads(p) for p in sent[count - 1:]]
    # opting in publishes it (and its discovery configs); opting out clears the topic
    assert await cb.client.post("set_device", {"devices": [
        {"dev_id": quiet, "mqtt_publish": True}]}) == (200, "ok")
    await listener.wait_for(f"cfos_mqtt/get/{quiet}", lambda d: d is not None)
    node = f"chargebrain_{cb.app.devices.serialno}"
    await listener.wait_for(f"homeassistant/sensor/{node}/{quiet.lower()}_power/config")
    seen = len(listener.messages)
    assert await cb.client.post("set_device", {"devices": [
        {"dev_id": quiet, "mqtt_publish": False}]}) == (200, "ok")
    assert await listener.wait_for(f"cfos_mqtt/get/{quiet}", after=seen) is None
    assert await listener.wait_for(f"homeassistant/sensor/{node}/{quiet.lower()}_power/config",
                                   after=seen) is None


async def test_home_assistant_birth_message_announces_the_configs_again(cb, listener):
    e2 = await add(cb, dev_type="evse_ajax", address="mqtt", com_timeout_ms=60000)
    node = f"chargebrain_{cb.app.devices.serialno}"
    config = f"homeassistant/switch/{node}/{e2.lower()}_charging_enabled/config"
    await listener.wait_for(config)
    seen = len(listener.messages)
    await listener.publish("homeassistant/status", b"offline")
    await asyncio.sleep(0.8)
    assert config not in {t for t, _, _ in listener.messages[seen:]}
    await listener.publish("homeassistant/status", b"online")
    assert (await listener.wait_for(config, after=seen))["command_topic"].endswith(
        f"/ha/{e2}/charging")


async def test_malformed_api_calls_and_commands_change_nothing(cb, listener, caplog):
    assert await cb.client.post("set_params", {"mqtt_api": True}) == (200, "ok")
    await wait_connected(cb.app, 2)
    e2 = await add(cb, dev_type="evse_ajax", address="mqtt", com_timeout_ms=60000)
    title = cb.app.params["title"]
    answers = []
    for query, body in [("cmd=set_params&msg_id=b1", b"{not json"),
                        ("cmd=set_params&msg_id=b2", b'{"reserve_current": "viel"}'),
                        ("cmd=no_such_command&msg_id=b3", b""),
                        ("%%%", b""), ("cmd=del_user&msg_id=b4", b"")]:
        seen = len(listener.messages)
        await listener.publish(f"cfos_mqtt/api/{query}", body)
        answers.append(await listener.wait_for("cfos_mqtt/api_res", after=seen))
    assert all(isinstance(a, str) and a != "ok" for a in answers), answers
    assert cb.app.params["title"] == title and cb.app.params["reserve_current"] == 0
    with caplog.at_level(logging.WARNING, logger="chargebrain.mqtt"):
        bad = [(f"cfos_mqtt/ha/{e2}/mamps", b"viel"), (f"cfos_mqtt/ha/{e2}/mamps", b"500"),
               (f"cfos_mqtt/ha/{e2}/charging", b"MAYBE"), ("cfos_mqtt/ha/E99/charging", b"ON"),
               (f"cfos_mqtt/ha/{e2}/boost", b"ON")]
        for topic, payload in bad:
            await listener.publish(topic, payload)
        await asyncio.sleep(0.8)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("chargebrain.mqtt")
             and r.levelno >= logging.WARNING]
    assert len(lines) == len(bad), lines
    status = cb.app.devices.get(e2).status
    assert (status.overrides, status.ov_cur_ma) == (0, 0)
    assert cb.app.mqtt.connected.is_set()
