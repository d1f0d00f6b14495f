"""HTTP-input devices: set_ajax_meter / set_ajax_evse as POST JSON and GET form, the control
answer, access rules, and refusals that change nothing."""

from __future__ import annotations

import pytest

from chargebrain.devices.base import EvseSetpoint
from tests.devices.support import stop_cycle


@pytest.fixture
async def cb(cb):
    """The app of conftest's `cb` with its control cycle stopped: these tests set readings,
    setpoints and status by hand."""
    await stop_cycle(cb)
    yield cb


async def add(cb, **config) -> str:
    status, body = await cb.client.post("set_device", {"devices": [config]})
    assert (status, body) == (200, "ok")
    return cb.app.devices.all()[-1].dev_id


async def device_info(cb, dev_id) -> dict:
    _, body = await cb.client.get("get_dev_info")
    return next(d for d in body["devices"] if d["dev_id"] == dev_id)


async def test_meter_post_body_of_the_seed(cb):
    m3 = await add(cb, dev_type="meter_ajax", role=3)
    pushed = []
    cb.app.devices.on_push.append(pushed.append)
    body = {"model": "TestModell", "import_wh": 12345, "export_wh": 23456,
            "voltage": [231, 232, 233], "current": [10001, 10002, 10003], "power_va": 2000}
    assert await cb.client.post("set_ajax_meter", body, dev_id=m3) == (200, "ok")
    assert pushed == [m3]
    info = await device_info(cb, m3)
    assert (info["import"], info["export"], info["power"], info["power_w"]) == (
        12345, 23456, 2000, 2000)
    assert (info["current_l1"], info["current_l2"], info["current_l3"]) == (10001, 10002, 10003)
    assert (info["voltage_l1"], info["voltage_l3"], info["model"]) == (231, 233, "TestModell")
    assert info["com_err"] is False and info["role"] == 3


async def test_meter_get_form_with_floats_and_vah(cb):
    m3 = await add(cb, dev_type="meter_ajax", invert=True)
    status, body = await cb.client.get("set_ajax_meter", dev_id=m3, model="TestModell",
                                       import_vah="12345.00", export_wh=23456,
                                       voltage="231,232,233", current="1000.0,0,0",
                                       power_w="1000.0", is_va=0)
    assert (status, body) == (200, "ok")
    info = await device_info(cb, m3)
    # invert: currents and power change sign, import and export swap
    assert (info["import"], info["export"]) == (23456, 12345)
    assert (info["current_l1"], info["power_w"], info["is_va"]) == (-1000, -1000, False)


async def test_meter_post_body_with_float_arrays(cb):
    m3 = await add(cb, dev_type="meter_ajax")
    body = {"current": [1000.0, 0, 0], "voltage": [230.4, 229.6, 230.0], "import_wh": 5.0}
    assert await cb.client.post("set_ajax_meter", body, dev_id=m3) == (200, "ok")
    info = await device_info(cb, m3)
    assert (info["current_l1"], info["voltage_l1"], info["voltage_l2"]) == (1000, 230, 230)
    assert info["power_w"] == 230 and info["import"] == 5


async def test_pushed_meter_goes_offline_after_its_timeout(cb):
    m3 = await add(cb, dev_type="meter_ajax", com_timeout_ms=20000)
    assert (await cb.client.post("set_ajax_meter", {"power_w": 100}, dev_id=m3))[0] == 200
    registry = cb.app.devices
    device = registry.get(m3)
    pushed_at = device.status.reading_s
    assert await registry.read(device, pushed_at + 19) is not None
    assert await registry.read(device, pushed_at + 21) is None
    info = await device_info(cb, m3)
    assert info["com_err"] is True and info["com_errors"] == 1
    assert info["last_error"].startswith("no data pushed for")


async def test_evse_answers_its_control_object(cb):
    e2 = await add(cb, dev_type="evse_ajax", min_charging_cur=7000, max_charging_cur=20000)
    body = {"state": 3, "max_charging_current": 32000.0, "current": [16000, 16000, 0],
            "total_energy": 7120572, "model": "Box", "rfid": "4711"}
    # the control cycle is stopped (control given up) and never set anything:
    # disable_policy 1 (the default) leaves it at its minimum current
    status, answer = await cb.client.post("set_ajax_evse", body, dev_id=e2)
    assert status == 200
    assert answer == {"device_enabled": True, "charging_enabled": True, "paused": False,
                      "charging_current": 7000}
    info = await device_info(cb, e2)
    assert (info["state"], info["power_w"], info["cur_charging_power"]) == (3, 7360, 7360)
    assert (info["total_energy"], info["phases"], info["model"]) == (7120572, 3, "Box")
    registry = cb.app.devices
    device = registry.get(e2)
    assert await registry.apply(device, EvseSetpoint(12500), registry.clock())
    device.status.paused = False
    status, answer = await cb.client.get("set_ajax_evse", dev_id=e2, state=3,
                                         current="12500.0,12500,0", total_energy="7120600.0")
    assert status == 200 and answer["charging_current"] == 12500
    assert answer["charging_enabled"] is True
    assert await registry.apply(device, EvseSetpoint(0, enabled=False), registry.clock())
    device.status.paused = True
    _, answer = await cb.client.get("set_ajax_evse", dev_id=e2, state=2)
    assert answer == {"device_enabled": True, "charging_enabled": False, "paused": True,
                      "charging_current": 0}
    assert (await device_info(cb, e2))["last_set_charging_cur"] == 0


async def test_observation_mode_answers_disable_policy_not_an_old_setpoint(cb):
    e2 = await add(cb, dev_type="evse_ajax", max_charging_cur=20000)
    registry = cb.app.devices
    assert await registry.apply(registry.get(e2), EvseSetpoint(12500), registry.clock())
    _, answer = await cb.client.get("set_ajax_evse", dev_id=e2, state=3)
    assert answer["charging_current"] == 12500
    assert (await cb.client.post("set_params", {"lb_enabled": False,
                                                "disable_policy": -1}))[0] == 200
    _, answer = await cb.client.get("set_ajax_evse", dev_id=e2, state=3)
    assert (answer["charging_enabled"], answer["charging_current"]) == (True, 20000)


@pytest.mark.parametrize(("policy", "enabled", "current"), [(0, False, 0), (1, True, 6000),
                                                            (-1, True, 16000)])
async def test_evse_answer_follows_disable_policy_only_where_control_is_given_up(
        cb, policy, enabled, current):
    assert (await cb.client.post("set_params", {"disable_policy": policy,
                                                "lb_enabled": False}))[0] == 200
    e2 = await add(cb, dev_type="evse_ajax")
    _, answer = await cb.client.get("set_ajax_evse", dev_id=e2, state=2)  # observation mode
    assert (answer["charging_enabled"], answer["charging_current"]) == (enabled, current)
    assert (await cb.client.post("set_params", {"lb_enabled": True}))[0] == 200
    assert (await cb.client.post("set_device", {"devices": [{"dev_id": e2,
                                                             "device_enabled": 0}]}))[0] == 200
    _, answer = await cb.client.get("set_ajax_evse", dev_id=e2, state=2)  # disabled device
    assert answer["device_enabled"] is False
    assert (answer["charging_enabled"], answer["charging_current"]) == (enabled, current)


async def test_access_rules(cb):
    m3 = await add(cb, dev_type="meter_ajax")
    e2 = await add(cb, dev_type="evse_ajax", accept_unauthenticated=True)
    assert (await cb.client.post("set_ajax_meter", {"power_w": 1}, dev_id=m3, auth=None))[0] \
        == 401
    assert (await cb.client.post("set_ajax_meter", {"power_w": 1}, dev_id="M9", auth=None))[0] \
        == 401
    assert await cb.client.post("set_ajax_meter", {"power_w": 1}, dev_id="M9") == (
        404, "unknown device")
    status, answer = await cb.client.get("set_ajax_evse", dev_id=e2, state=1, auth=None)
    assert status == 200 and answer["device_enabled"] is True


@pytest.mark.parametrize(("cmd", "dev_id", "message"), [
    ("set_ajax_meter", "E1", "E1 is not an HTTP input meter"),
    ("set_ajax_meter", "M1", "M1 is not an HTTP input meter"),
    ("set_ajax_evse", "M1", "M1 is not an HTTP input wallbox"),
    ("set_ajax_evse", "E1", "E1 is not an HTTP input wallbox"),
])
async def test_wrong_kind_of_device(cb, cmd, dev_id, message):
    assert await cb.client.post(cmd, {"state": 1}, dev_id=dev_id) == (400, message)


BAD_PUSHES = [
    ("set_ajax_meter", b"{oops", "body is not valid JSON"),
    ("set_ajax_meter", b'{"power_w": NaN}', "body is not valid JSON"),
    ("set_ajax_meter", b'[1, 2, 3]', "body must be a JSON object"),
    ("set_ajax_meter", {"current": [1, 2, 3, 4]}, "current must be a list of 1 to 3 numbers"),
    ("set_ajax_meter", {"current": ["a", 0, 0]}, "current must be a number"),
    ("set_ajax_meter", {"import_wh": 1e300}, "import_wh must be between 0 and 1000000000000000"),
    ("set_ajax_meter", {"power": 5}, "unknown field power"),
    ("set_ajax_evse", {"state": 9}, "state must be between 1 and 5"),
    ("set_ajax_evse", {"state": 3, "current": [1e12, 0, 0]},
     "current values must be between 0 and 10000000"),
    ("set_ajax_evse", {"rfid": 4711}, "rfid must be a string"),
]


@pytest.mark.parametrize(("cmd", "body", "message"), BAD_PUSHES)
async def test_bad_pushes_are_refused_and_keep_the_last_reading(cb, cmd, body, message):
    dev_id = await add(cb, dev_type="meter_ajax" if cmd == "set_ajax_meter" else "evse_ajax")
    good = {"power_w": 500} if cmd == "set_ajax_meter" else {"state": 2}
    assert (await cb.client.post(cmd, good, dev_id=dev_id))[0] == 200
    pushed = []
    cb.app.devices.on_push.append(pushed.append)
    before = await device_info(cb, dev_id)
    assert await cb.client.post(cmd, body, dev_id=dev_id) == (400, message)
    after = await device_info(cb, dev_id)
    before.pop("com_err_secs")
    after.pop("com_err_secs")
    assert after == before and pushed == []


async def test_get_form_errors(cb):
    m3 = await add(cb, dev_type="meter_ajax")
    assert await cb.client.get("set_ajax_meter", dev_id=m3, voltage="231,x,233") == (
        400, "voltage must be a number")
    assert await cb.client.get("set_ajax_meter") == (400, "missing parameter dev_id")
