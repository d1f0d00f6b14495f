"""Device configuration models: defaults, tolerance for whole floats, ranges, unknown keys."""

from __future__ import annotations

import pytest

from chargebrain.devices import config as cfg
from chargebrain.devices import types
from chargebrain.devices.config import ConfigError, validate_config


def evse(**fields):
    return {"dev_id": "E2", "dev_type": "evse_ajax", **fields}


def meter(**fields):
    return {"dev_id": "M3", "dev_type": "meter_ajax", **fields}


def test_every_supported_type_validates_with_its_defaults():
    for key, info in types.DEV_TYPES.items():
        dev_id = f"{info.kind.value}7"
        raw = {**cfg.defaults_for(key, dev_id), "dev_id": dev_id, "dev_type": key}
        if info.supported:
            config = validate_config(raw)
            assert config.dev_id == dev_id and config.number == 7
        else:
            with pytest.raises(ConfigError, match=f"device type {key} is not supported yet"):
                validate_config(raw)


def test_whole_floats_and_numeric_strings_are_integers():
    config = validate_config(evse(min_charging_cur=6000.0, max_charging_cur="16000.0", prio=2.0,
                                  device_enabled=True, phase_rotation=120.0))
    assert config.min_charging_cur == 6000 and config.max_charging_cur == 16000
    assert config.prio == 2 and config.device_enabled == 1 and config.phase_rotation == 120
    assert cfg.as_dict(config)["max_charging_cur"] == 16000


@pytest.mark.parametrize(("fields", "message"), [
    ({"min_charging_cur": 5999}, "min_charging_cur: must be greater than or equal to 6000"),
    ({"min_charging_cur": 6000.5}, "min_charging_cur: must be a valid integer"),
    ({"max_charging_cur": 5000}, "max_charging_cur must be between 6000"),
    ({"min_charging_cur": 10000, "max_charging_cur": 8000}, "must not be below min"),
    ({"max_charging_cur": True}, "must be a number or a formula"),
    ({"phase_rotation": 90}, "phase_rotation: must be 0, 120 or 240"),
    ({"used_phases": 8}, "used_phases"),
    ({"device_enabled": 2}, "device_enabled"),
    ({"attach": "E1"}, "attach must be the dev_id of a meter"),
    ({"users": ["ok", ""]}, "users.1"),
    ({"charging_rules": [{"days": 200}]}, "charging_rules.0.days"),
    ({"charging_rules": [{"colour": 1}]}, "unknown device field charging_rules.0.colour"),
    ({"no_such_field": 1}, "unknown device field no_such_field"),
    ({"prio": 10**30}, "prio"),
    ({"name": "x" * 300}, "name"),
    ({"com_timeout_ms": 10}, "com_timeout_ms"),
])
def test_bad_evse_fields_are_refused_with_the_field_named(fields, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(evse(**fields))


def test_max_current_may_be_a_formula_and_users_may_be_numbers():
    config = validate_config(evse(max_charging_cur=" min(16000, 29000 - M3.current) ",
                                  users=[1170223812, "42"]))
    assert config.max_charging_cur == "min(16000, 29000 - M3.current)"
    assert config.users == ["1170223812", "42"]


def test_legacy_charging_rule_shape_is_kept():
    rule = {"days": 31, "mode": 5, "current": 6000, "enabled": True, "udur": 300, "time": 480,
            "dur": 60, "expr": "", "input": "", "price_level": 0, "solar": 6500}
    config = validate_config(evse(charging_rules=[rule]))
    assert cfg.as_dict(config)["charging_rules"] == [rule]


@pytest.mark.parametrize(("fields", "message"), [
    ({"role": 7}, "role"),
    ({"factor": 0}, "factor must not be 0"),
    ({"factor": 11}, "factor"),
    ({"factor": float("nan")}, "factor"),
    ({"min_charging_cur": 6000}, "unknown device field min_charging_cur"),
])
def test_bad_meter_fields(fields, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(meter(**fields))


@pytest.mark.parametrize(("dev_type", "address", "ok"), [
    ("evse_powerbrain", "evse", True),
    ("evse_powerbrain", "192.168.2.111:4701", True),
    ("evse_powerbrain", "[::1]:4701", True),
    ("evse_powerbrain", "meter1", False),
    ("evse_powerbrain", "host:0", False),
    ("evse_powerbrain", "host:70000", False),
    ("evse_powerbrain", "no port", False),
    ("meter_powerbrain", "meter2", True),
    ("meter_powerbrain", "10.0.0.2:4702", True),
    ("meter_powerbrain", "evse", False),
    ("evse_ajax", "anything goes", True),
])
def test_power_brain_addresses(dev_type, address, ok):
    dev_id = "E5" if dev_type.startswith("evse") else "M5"
    raw = {"dev_id": dev_id, "dev_type": dev_type, "address": address}
    if ok:
        assert validate_config(raw).address == address
    else:
        with pytest.raises(ConfigError, match="address"):
            validate_config(raw)


def test_unknown_type_and_missing_type():
    with pytest.raises(ConfigError, match="unknown device type evse_toaster"):
        validate_config({"dev_id": "E2", "dev_type": "evse_toaster"})
    with pytest.raises(ConfigError, match="dev_type must be a string"):
        validate_config({"dev_id": "E2"})


def test_group_and_sim_meter_models():
    group = validate_config({"dev_id": "E4", "dev_type": "evse_group", "max_charging_cur": 25000,
                             "group": 2})
    assert isinstance(group, cfg.GroupConfig) and group.group == 2
    with pytest.raises(ConfigError, match="unknown device field prio"):
        validate_config({"dev_id": "E4", "dev_type": "evse_group", "prio": 3})
    sim = validate_config({"dev_id": "M4", "dev_type": "meter_sim", "sim_power_w": -4000})
    assert isinstance(sim, cfg.SimMeterConfig) and sim.sim_power_w == -4000


def test_labels_cover_every_type():
    labels = types.labels()
    assert set(labels) == set(types.DEV_TYPES)
    assert labels["evse_sim"].startswith("Sim-") and labels["meter_sim"].startswith("Sim-")
    for key in ("evse_powerbrain", "evse_ajax", "evse_group", "evse_cm", "evse_ocpp",
                "meter_powerbrain", "meter_ajax", "meter_expression", "meter_sdm630",
                "meter_virtual_surplus_avg"):
        assert key in labels
