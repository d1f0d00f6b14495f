"""Parsing of pushed HTTP-input data (pure functions)."""

from __future__ import annotations

import pytest

from chargebrain.devices.base import MeterReading
from chargebrain.devices.drivers.ajax import PushError, parse_evse_push, parse_meter_push


def test_meter_post_body_of_the_seed():
    reading = parse_meter_push({"model": "TestModell", "import_wh": 12345, "export_wh": 23456,
                                "voltage": [231, 232, 233], "current": [10001, 10002, 10003],
                                "power_va": 2000}, 230)
    assert reading.currents_ma == (10001, 10002, 10003)
    assert reading.voltages_v == (231, 232, 233)
    assert (reading.import_wh, reading.export_wh, reading.power_w) == (12345, 23456, 2000)
    assert reading.model == "TestModell"


def test_meter_get_form_floats_and_vah_spelling():
    reading = parse_meter_push({"import_vah": "1234.00", "voltage": "231,232,233",
                                "current": "1000.0,0,0", "power_w": "1500.4", "is_va": "1"}, 230)
    assert reading.import_wh == 1234 and reading.currents_ma == (1000, 0, 0)
    assert reading.power_w == 1500 and reading.is_va is True


def test_meter_power_from_currents_when_not_sent_and_counters_kept():
    previous = MeterReading(import_wh=500, export_wh=70)
    reading = parse_meter_push({"current": [-10000, 0, 0]}, 230, previous)
    assert reading.power_w == -2300  # 230 V × −10 A: feeding in
    assert (reading.import_wh, reading.export_wh) == (500, 70)
    only_power = parse_meter_push({"power_w": 900}, 230)
    assert only_power.currents_ma is None and only_power.voltages_v == (230, 230, 230)


@pytest.mark.parametrize(("data", "message"), [
    ({"voltage": [1, 2, 3, 4]}, "voltage must be a list of 1 to 3 numbers"),
    ({"current": "a,b,c"}, "current must be a number"),
    ({"current": [1e30, 0, 0]}, "current values must be between"),
    ({"import_wh": -5}, "import_wh must be between 0"),
    ({"power_w": float("inf")}, "power_w must be a finite number"),
    ({"power_w": True}, "power_w must be a number"),
    ({"model": 5}, "model must be a string"),
    ({"is_va": "maybe"}, "is_va must be true or false"),
    ({"colour": "red"}, "unknown field colour"),
])
def test_bad_meter_data(data, message):
    with pytest.raises(PushError, match=message):
        parse_meter_push(data, 230)


def test_evse_body_of_the_seed():
    reading = parse_evse_push({"state": 3, "max_charging_current": 32000.0,
                               "current": [16000, 16000, 16000], "total_energy": 7120572,
                               "model": "Box", "rfid": "4711"}, 230)
    assert reading.charging and reading.plugged
    assert reading.power_w == 11040 and reading.total_energy_wh == 7120572
    assert reading.cable_max_ma == 32000 and reading.rfid == "4711"


@pytest.mark.parametrize(("data", "message"), [
    ({"state": 6}, "state must be between 1 and 5"),
    ({"state": 2.5}, "state must be a whole number"),
    ({"current": [-1, 0, 0]}, "current values must be between 0"),
    ({"rfid": "x" * 65}, "rfid must be at most 64"),
    ({"import_wh": 1}, "unknown field import_wh"),
])
def test_bad_evse_data(data, message):
    with pytest.raises(PushError, match=message):
        parse_evse_push(data, 230)
