"""`cmd=sim_vehicle`: the virtual car at the local Power Brain EVSE, seen through its registers."""

from __future__ import annotations

import pytest

CAR = {"plugged": "1", "phases": "3", "max_current": "16000", "soc": "40", "capacity": "60000"}


async def evse(cb, address: str):
    status, value = await cb.client.get("modbus", device="evse", read=address)
    assert status == 200
    return value


async def test_plug_charge_unplug(cb):
    assert await evse(cb, "8092") == 0
    status, body = await cb.client.get("sim_vehicle", dev_id="E1", **CAR)
    assert status == 200
    assert body == {"dev_id": "E1", "plugged": True, "phases": 3, "max_current": 16000,
                    "soc": 40.0, "capacity": 60000, "rfid": ""}
    assert await evse(cb, "8092") == 2  # charging at once
    assert await evse(cb, "8095") == 160
    assert await evse(cb, "8062d") == 11040
    assert await evse(cb, "8090") == 320
    status, body = await cb.client.get("sim_vehicle", plugged="0")  # dev_id defaults to E1
    assert status == 200 and body["plugged"] is False and body["phases"] == 3
    assert await evse(cb, "8092") == 0 and await evse(cb, "8062d") == 0


async def test_car_follows_the_limit_and_enable(cb):
    await cb.client.get("sim_vehicle", **CAR)
    await cb.client.get("modbus", device="evse", write="8093", value="80")
    assert await evse(cb, "8064d") == 80
    await cb.client.get("modbus", device="evse", write="8094", value="0")
    assert (await evse(cb, "8092"), await evse(cb, "8064d")) == (1, 0)


async def test_one_phase_car(cb):
    await cb.client.get("sim_vehicle", **{**CAR, "phases": "1", "max_current": "32000"})
    status, count = await cb.client.get("modbus", device="evse", read="8064", count=6)
    assert status == 200 and count == [0, 160, 0, 0, 0, 0]


async def test_partial_update_keeps_the_rest(cb):
    await cb.client.get("sim_vehicle", **CAR)
    status, body = await cb.client.get("sim_vehicle", soc="80.5")
    assert status == 200
    assert (body["plugged"], body["soc"], body["max_current"]) == (True, 80.5, 16000)


async def test_rfid_shows_in_the_registers(cb):
    status, body = await cb.client.get("sim_vehicle", **CAR, rfid="04A1B2C3D4")
    assert status == 200 and body["rfid"] == "04A1B2C3D4"
    assert await evse(cb, "8096s") == "04a1b2c3d4"
    assert await evse(cb, "8111") == 1
    await cb.client.get("sim_vehicle", rfid="1234")
    assert (await evse(cb, "8096s"), await evse(cb, "8111")) == ("1234", 2)


async def test_needs_admin(cb):
    status, body = await cb.client.get("sim_vehicle", auth=None, **CAR)
    assert (status, body) == (401, "authentication required")
    assert cb.app.powerbrain.car.plugged is False


async def test_unknown_dev_id_is_404(cb):
    status, body = await cb.client.get("sim_vehicle", dev_id="E9", **CAR)
    assert (status, body) == (404, "unknown device id: E9")


@pytest.mark.parametrize(("params", "message"), [
    ({"phases": "2"}, "phases must be 1 or 3"),
    ({"phases": "x"}, "phases must be a number"),
    ({"soc": "101"}, "soc must be between 0 and 100"),
    ({"soc": "nan"}, "soc must be a finite number"),
    ({"max_current": "abc"}, "max_current must be a number"),
    ({"max_current": "16000.5"}, "max_current must be a whole number"),
    ({"max_current": "-1"}, "max_current must be between 0 and 80000"),
    ({"capacity": "0"}, "capacity must be between 1 and 1000000"),
    ({"plugged": "maybe"}, "plugged must be 0 or 1"),
    ({"rfid": "x" * 31}, "rfid must be at most 30 characters"),
    ({"rfid": "not hex but long"}, "rfid is longer than 30 hex digits"),
])
async def test_bad_parameters_change_nothing(cb, params, message):
    await cb.client.get("sim_vehicle", **CAR)
    before = cb.app.powerbrain.car
    registers = steady_registers(cb)
    status, body = await cb.client.get("sim_vehicle", **{**CAR, "soc": "10", **params})
    assert (status, body) == (400, message)
    assert cb.app.powerbrain.car.replace(soc_pct=before.soc_pct) == before  # soc rises
    assert steady_registers(cb) == registers


def steady_registers(cb) -> dict:
    """The EVSE's registers except the energy counter (which rises while the car charges)."""
    return {k: v for k, v in cb.app.powerbrain.read_all("evse").items() if k != "8058q"}
