"""Home Assistant discovery against a real Mosquitto: every config points at topics chargebrain
publishes or subscribes, templates render (Jinja2, as HA does) on real payloads, units and
classes are ones HA accepts, commands work, and a deleted device's configs are removed."""

from __future__ import annotations

import asyncio

import jinja2
import orjson

from chargebrain.mqtt.topics import Topics
from tests.support.mosquitto import Listener

# HA 2025.4 (protocols.md §3.1): device_class → (allowed units, allowed state classes)
SENSOR_CLASSES = {"power": ({"W", "kW"}, {"measurement"}),
                  "current": ({"A", "mA"}, {"measurement"}),
                  "voltage": ({"V", "mV", "kV"}, {"measurement"}),
                  "energy": ({"Wh", "kWh"}, {"total", "total_increasing"})}
COMPONENTS = {"sensor", "number", "switch"}


def matches(topic_filter: str, topic: str) -> bool:
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


async def add(cb, **config) -> str:
    """A device that publishes `get/<dev_id>` (unless told `mqtt_publish=False`)."""
    config.setdefault("mqtt_publish", True)
    assert await cb.client.post("set_device", {"devices": [config]}) == (200, "ok")
    return cb.app.devices.all()[-1].dev_id


async def test_every_config_is_consistent_with_what_is_published(cb, broker):
    m3 = await add(cb, dev_type="meter_ajax", address="mqtt", com_timeout_ms=60000)
    e2 = await add(cb, dev_type="evse_ajax", address="mqtt", com_timeout_ms=60000)
    async with Listener(broker.port) as listener:
        await listener.publish(f"cfos_mqtt/set/{m3}", orjson.dumps(
            {"power_w": 2300, "current": [10000, 0, 0], "voltage": [230, 231, 232],
             "import_wh": 1000}))
        await listener.wait_for(f"cfos_mqtt/get/{m3}", lambda d: d["power_w"] == 2300)
        await asyncio.sleep(0.6)
    async with Listener(broker.port) as late:  # everything retained
        await late.wait_for(f"homeassistant/sensor/chargebrain_{cb.app.devices.serialno}/"
                            f"{e2.lower()}_power/config")
        await asyncio.sleep(0.5)
        retained = late.latest()
    configs = {t: orjson.loads(p) for t, p in retained.items()
               if t.startswith("homeassistant/") and p}
    topics = Topics()
    subscribed = topics.subscriptions(api=False)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    components = set()
    assert len(configs) > 20
    for topic, config in configs.items():
        component = topic.split("/")[1]
        components.add(component)
        assert component in COMPONENTS, topic
        assert config["unique_id"] and config["device"]["identifiers"], topic
        assert config["availability_topic"] == topics.status
        assert retained[topics.status] == b"online"
        state = config["state_topic"]
        assert state in retained, f"{topic}: {state} is not published"
        value = env.from_string(config["value_template"]).render(
            value_json=orjson.loads(retained[state]))
        assert value not in ("", "None"), topic
        if "command_topic" in config:
            assert any(matches(f, config["command_topic"]) for f in subscribed), topic
        if component == "switch":
            assert value in ("ON", "OFF"), topic
        elif component == "number" or config.get("device_class") in ("power", "current",
                                                                        "voltage", "energy"):
            float(value)
        if component == "sensor" and "device_class" in config:
            units, classes = SENSOR_CLASSES[config["device_class"]]
            assert config["unit_of_measurement"] in units, topic
            assert config["state_class"] in classes, topic
        if component == "number":
            assert config["device_class"] == "current" and config["unit_of_measurement"] == "A"
    assert components == COMPONENTS
    meter_power = next(c for t, c in configs.items() if t.endswith(f"/{m3.lower()}_power/config"))
    assert env.from_string(meter_power["value_template"]).render(
        value_json=orjson.loads(retained[meter_power["state_topic"]])) == "2300"


async def test_commands_and_removal(cb, broker):
    e2 = await add(cb, dev_type="evse_ajax", address="mqtt", com_timeout_ms=60000)
    node = f"chargebrain_{cb.app.devices.serialno}"
    async with Listener(broker.port) as listener:
        config_topic = f"homeassistant/switch/{node}/{e2.lower()}_charging_enabled/config"
        config = await listener.wait_for(config_topic)
        await listener.publish(config["command_topic"], b"OFF")
        await listener.wait_for(f"cfos_mqtt/get/{e2}", lambda d: d["overrides"] & 1 == 1)
        await listener.publish(f"cfos_mqtt/ha/{e2}/mamps", b"10")
        await listener.wait_for(f"cfos_mqtt/get/{e2}", lambda d: d["ov_cur"] == 10000)
        seen = len(listener.messages)
        assert await cb.client.get("del_device", dev_id=e2) == (200, "ok")
        assert await listener.wait_for(config_topic, after=seen) is None  # empty retained
        assert await listener.wait_for(f"cfos_mqtt/get/{e2}", after=seen) is None
    async with Listener(broker.port) as late:
        await late.wait_for("cfos_mqtt/get/dev_info")
        await asyncio.sleep(0.3)
        assert not any(e2.lower() in t for t in late.latest())


async def test_discovery_param_off_removes_the_configs(cb, broker):
    assert await cb.client.post("set_params", {"mqtt_ha_discovery": False}) == (200, "ok")
    await asyncio.sleep(0.8)
    async with Listener(broker.port) as late:
        await late.wait_for("cfos_mqtt/get/params")
        await asyncio.sleep(0.3)
        assert not any(t.startswith("homeassistant/") for t in late.latest())
