"""Home Assistant MQTT discovery: one retained config per entity (protocols.md §3.1).

`configs(dev_info, …)` is pure: from a get_dev_info object it builds every
`homeassistant/<component>/<node>/<object>/config` payload. The node is `chargebrain_<serial>`;
each chargebrain device is one HA device with `via_device` to the manager (the site sensors
hang on the manager itself). State topics are the ones the bridge publishes
(`…/get/params`, `…/get/<dev_id>`); command topics are `…/ha/<dev_id>/<what>`, which the bridge
subscribes and turns into `override_device` calls. Every entity is unavailable while the
bridge's availability topic says `offline` (its last will).

Units and classes are the ones HA 2025.4 accepts per device class: power W / measurement,
current A / measurement (the API's mA divided in the template), voltage V / measurement,
energy Wh / total_increasing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from chargebrain.mqtt.topics import HA_PREFIX, Topics

ORIGIN = {"name": "chargebrain", "url": "https://github.com/chargebrain/chargebrain"}
# HA command payload → override_device flags (users/service.py): C disables charging, E turns
# the EVSE's charging rules off; the lower-case letter undoes it.
COMMAND_FLAGS = {("charging", "ON"): "c", ("charging", "OFF"): "C",
                 ("rules", "ON"): "e", ("rules", "OFF"): "E"}
COMMANDS = ("charging", "rules", "mamps")
MAX_OVERRIDE_A = 80


@dataclass(frozen=True, slots=True)
class Sensor:
    key: str  # object id suffix
    name: str
    template: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None


def _ma_to_a(field: str) -> str:
    return f"{{{{ (value_json.{field} / 1000) | round(1) }}}}"


def _value(field: str) -> str:
    return f"{{{{ value_json.{field} }}}}"


def _power(key: str, name: str, field: str) -> Sensor:
    return Sensor(key, name, _value(field), "W", "power", "measurement")


def _currents(prefix: str = "current") -> list[Sensor]:
    return [Sensor(f"current_l{i}", f"Current L{i}", _ma_to_a(f"{prefix}_l{i}"), "A", "current",
                   "measurement") for i in (1, 2, 3)]


SITE_SENSORS = [
    _power("grid_power", "Grid power", "grid_pwr"),
    _power("house_power", "House power", "cons_pwr"),
    _power("surplus_power", "Surplus power", "surplus_power"),
    _power("evse_power", "Charging power", "cons_evse_power"),
    _power("available_evse_power", "Available charging power", "avail_evse_power"),
]
EVSE_SENSORS = [
    _power("power", "Charging power", "power_w"),
    *_currents(),
    Sensor("energy", "Energy", _value("total_energy"), "Wh", "energy", "total_increasing"),
    Sensor("state", "State", _value("state")),
    Sensor("reason", "Limit reason", _value("lreason")),
]
METER_SENSORS = [
    _power("power", "Power", "power_w"),
    *_currents(),
    *[Sensor(f"voltage_l{i}", f"Voltage L{i}", _value(f"voltage_l{i}"), "V", "voltage",
             "measurement") for i in (1, 2, 3)],
    Sensor("import", "Energy import", _value("import"), "Wh", "energy", "total_increasing"),
    Sensor("export", "Energy export", _value("export"), "Wh", "energy", "total_increasing"),
]


def node_id(serial: str) -> str:
    return f"chargebrain_{serial or 'cm'}"


def config_topic(component: str, node: str, object_id: str) -> str:
    return f"{HA_PREFIX}/{component}/{node}/{object_id}/config"


def configs(dev_info: dict[str, Any], *, serial: str, topics: Topics, sw_version: str
            ) -> dict[str, bytes]:
    """Every discovery config topic → its JSON payload, for the devices of `dev_info`."""
    node = node_id(serial)
    manager = {"identifiers": [node], "name": dev_info["params"].get("title") or "chargebrain",
               "manufacturer": "chargebrain", "model": "Charging Manager",
               "sw_version": sw_version}
    if serial:
        manager["serial_number"] = serial
    out: dict[str, bytes] = {}

    def add(component: str, object_id: str, payload: dict[str, Any]) -> None:
        unique = f"{node}_{object_id}"
        payload = {"unique_id": unique, "object_id": unique, "availability_topic": topics.status,
                   "origin": ORIGIN, **payload}
        out[config_topic(component, node, object_id)] = orjson.dumps(payload)

    for sensor in SITE_SENSORS:
        add("sensor", f"site_{sensor.key}", _sensor(sensor, topics.params, manager))
    for device in dev_info["devices"]:
        for component, object_id, payload in device_entities(device, node, topics):
            add(component, object_id, payload)
    return out


def device_entities(device: dict[str, Any], node: str, topics: Topics
                    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(component, object id, payload) of one chargebrain device's entities."""
    dev_id = str(device["dev_id"])
    ident = f"{node}_{dev_id}".lower()
    ha_device = {"identifiers": [ident], "name": device.get("name") or dev_id,
                 "manufacturer": "chargebrain", "model": device.get("dev_type", ""),
                 "via_device": node}
    state = topics.device(dev_id)
    obj = dev_id.lower()
    is_group = "members" in device
    sensors = EVSE_SENSORS if device.get("is_evse") else METER_SENSORS
    for sensor in sensors:
        yield "sensor", f"{obj}_{sensor.key}", _sensor(sensor, state, ha_device)
    if not device.get("is_evse") or is_group:
        return
    yield "number", f"{obj}_override_current", {
        "name": "Current override", "state_topic": state,
        "value_template": _ma_to_a("ov_cur"),
        "command_topic": topics.command(dev_id, "mamps"),
        "min": 0, "max": MAX_OVERRIDE_A, "step": 1, "mode": "box",
        "unit_of_measurement": "A", "device_class": "current", "device": ha_device}
    yield "switch", f"{obj}_charging_enabled", {
        "name": "Charging enabled", "state_topic": state,
        "value_template": "{{ 'OFF' if value_json.overrides % 2 == 1 else 'ON' }}",
        "command_topic": topics.command(dev_id, "charging"), "device": ha_device}
    yield "switch", f"{obj}_charging_rules", {
        "name": "Charging rules", "state_topic": state,
        "value_template": "{{ 'OFF' if (value_json.overrides // 2) % 2 == 1 else 'ON' }}",
        "command_topic": topics.command(dev_id, "rules"), "device": ha_device}


def _sensor(sensor: Sensor, state_topic: str, ha_device: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": sensor.name, "state_topic": state_topic,
                               "value_template": sensor.template, "device": ha_device}
    if sensor.unit:
        payload["unit_of_measurement"] = sensor.unit
    if sensor.device_class:
        payload["device_class"] = sensor.device_class
    if sensor.state_class:
        payload["state_class"] = sensor.state_class
    return payload


def command_query(dev_id: str, what: str, payload: str) -> list[tuple[str, str]] | None:
    """The override_device query for an HA command, or None when the payload is not one."""
    if what == "mamps":
        try:
            amps = float(payload)
        except ValueError:
            return None
        if not 0 <= amps <= MAX_OVERRIDE_A:
            return None
        return [("cmd", "override_device"), ("dev_id", dev_id), ("mamps", str(round(amps * 1000)))]
    flags = COMMAND_FLAGS.get((what, payload.strip().upper()))
    if flags is None:
        return None
    return [("cmd", "override_device"), ("dev_id", dev_id), ("flags", flags)]
