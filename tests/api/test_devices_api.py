"""Device and configuration commands against a running server: shapes and types of
get_dev_info (compat.md), both parameter vocabularies, device changes, persistence, bad input."""

from __future__ import annotations

import json
import logging
import urllib.request

import pytest

from chargebrain import API_VERSION
from chargebrain.api.handlers.devices import diag_logging
from chargebrain.devices.base import EvseSetpoint
from chargebrain.store.db import Store
from tests.devices.support import stop_cycle
from tests.support.server import ADMIN_AUTH, ServerProcess, basic


@pytest.fixture
async def cb(cb):
    """The app of conftest's `cb` with its control cycle stopped: these tests set readings,
    setpoints and status by hand."""
    await stop_cycle(cb)
    yield cb


PARAM_TYPES = {
    "title": str, "desc": str, "max_total_power": int, "power_reserve": int, "overdraft": int,
    "max_total_evse_power": int, "consumed_evse_power": int, "remaining_evse_power": int,
    "lb_enabled": bool, "disable_policy": int, "max_imbalance": int, "imbalance_add": bool,
    "min_pause_time": int, "price_model": int, "cycle_time": int, "max_evses": int,
    "shareware_mode": bool, "version": str, "time": int, "vsn": dict,
    "max_total_current": int, "reserve_current": int, "overdraft_cur": int,
    "max_total_evse_current": int, "cons_evse_power": int, "avail_evse_power": int,
    "grid_pwr": int, "cons_pwr": int, "surplus_power": int, "error_pwr": int,
    "ocpp_gateway_license_cnt": int, "ocpp_gateway_licenses_used": int,
    "ocpp_unknown_boxes": list,
}
COMMON_TYPES = {
    "dev_type": str, "device_enabled": int, "name": str, "address": str, "id": int,
    "dev_id": str, "number": int, "desc": str, "com_err": bool, "com_err_secs": int,
    "com_errors": int, "last_error": str, "is_evse": bool, "used_phases": int, "model": str,
}
EVSE_TYPES = {
    **COMMON_TYPES, "label": str, "min_charging_cur": int, "max_charging_cur": int, "prio": int,
    "charging_enabled": bool, "cur_charging_power": int, "power_w": int, "current_l1": int,
    "current_l2": int, "current_l3": int, "last_set_charging_cur": int, "total_energy": int,
    "phases": int, "state": int, "lreason": str, "paused": bool, "pause_time": int,
    "pause_min_time": int, "needs_auth": bool, "ov_cur": int, "overrides": int, "ta_en": int,
    "pause_reason": str, "charging_dur": int,
}
METER_TYPES = {
    **COMMON_TYPES, "is_va": bool, "invert": bool, "import": int, "export": int, "power": int,
    "power_w": int, "current_l1": int, "current_l2": int, "current_l3": int, "voltage_l1": int,
    "voltage_l2": int, "voltage_l3": int, "role": int,
}
LOCAL_EVSE_TYPES = {"cp_state": str, "pp_state": str, "charging": bool, "current": int,
                    "enabled": bool}


def check_types(obj: dict, expected: dict) -> None:
    for key, kind in expected.items():
        assert key in obj, key
        # exact types: a bool is not an int here, and an int is not a bool
        assert type(obj[key]) is kind, (key, obj[key])


async def info(cb) -> dict:
    status, body = await cb.client.get("get_dev_info")
    assert status == 200
    return body


def by_id(body: dict, dev_id: str) -> dict:
    return next(d for d in body["devices"] if d["dev_id"] == dev_id)


async def snapshot(cb) -> tuple:
    """Everything a refused request must leave alone."""
    _, devices = await cb.client.get("get_devices")
    _, params = await cb.client.get("get_params")
    params.pop("time")
    rows = cb.app.store.conn.execute("SELECT * FROM devices ORDER BY dev_id").fetchall()
    kv = cb.app.store.conn.execute("SELECT * FROM kv WHERE ns='params' ORDER BY key").fetchall()
    return devices, params, rows, kv, cb.app.devices.version


async def test_factory_default_get_dev_info_has_the_compat_shape(cb):
    body = await info(cb)
    assert list(body) == ["params", "auth_cnt", "devices", "loadmgr_disabled"]
    assert body["auth_cnt"] == 0 and body["loadmgr_disabled"] is False
    check_types(body["params"], PARAM_TYPES)
    params = body["params"]
    assert params["version"] == API_VERSION and float(".".join(API_VERSION.split(".")[:2])) >= 1.2
    assert params["vsn"]["vendorid"] == 52997 and isinstance(params["vsn"]["serialno"], str)
    assert [d["dev_id"] for d in body["devices"]] == ["E1", "M1", "M2"]
    e1, m1, m2 = (by_id(body, i) for i in ("E1", "M1", "M2"))
    check_types(e1, EVSE_TYPES)
    check_types(e1["evse"], LOCAL_EVSE_TYPES)
    assert (e1["dev_type"], e1["address"], e1["id"], e1["attach"]) == (
        "evse_powerbrain", "evse", 1, "M1")
    assert e1["is_evse"] is True and e1["state"] in range(1, 7)
    assert e1["last_set_charging_cur"] == -1
    for meter, address, unit in ((m1, "meter1", 2), (m2, "meter2", 3)):
        check_types(meter, METER_TYPES)
        assert (meter["dev_type"], meter["address"], meter["id"]) == (
            "meter_powerbrain", address, unit)
        assert meter["is_evse"] is False
    assert m1["role"] == 4 and m1["name"] == "S0 Zähler 1"
    _, dev_types = await cb.client.get("get_dev_types")
    assert all(d["dev_type"] in dev_types for d in body["devices"])


async def test_readings_and_control_state_are_rendered(cb):
    registry = cb.app.devices
    pb = cb.app.powerbrain
    pb.set_car(pb.car.replace(plugged=True, phases=3, max_current_ma=16000), pb.clock())
    e1 = registry.get("E1")
    assert await registry.apply(e1, EvseSetpoint(10000), registry.clock())
    await registry.read_all(registry.clock())
    e1.status.lreason, e1.status.ta_en_wh, e1.status.needs_auth = "group_limit", 1234, True
    body = await info(cb)
    e1_info = by_id(body, "E1")
    check_types(e1_info, EVSE_TYPES)
    assert e1_info["state"] == 3 and e1_info["evse"]["cp_state"] == "Charging"
    assert e1_info["evse"]["charging"] is True and e1_info["evse"]["current"] == 10000
    assert (e1_info["current_l1"], e1_info["phases"]) == (10000, 7)
    assert e1_info["last_set_charging_cur"] == 10000
    assert e1_info["lreason"] == "group_limit" and e1_info["ta_en"] == 1234
    assert body["auth_cnt"] == 1


async def test_both_parameter_vocabularies(cb):
    params = (await info(cb))["params"]
    assert params["max_total_current"] == 32000 and params["max_total_power"] == 22080
    status, body = await cb.client.post("set_params", {"max_total_power": 11040,
                                                       "power_reserve": 690.0})
    assert (status, body) == (200, "ok")
    params = (await info(cb))["params"]
    assert (params["max_total_current"], params["reserve_current"]) == (16000, 1000)
    assert (params["max_total_power"], params["power_reserve"]) == (11040, 690)
    assert params["avail_evse_power"] == params["remaining_evse_power"] == round(15000 * 0.69)
    status, _ = await cb.client.post("set_params", {"system_voltage": 240,
                                                    "max_total_evse_power": 7200})
    assert status == 200
    params = (await info(cb))["params"]
    assert params["max_total_evse_current"] == 10000 and params["max_total_power"] == 11520
    status, body = await cb.client.post("set_params", {"max_total_power": 1,
                                                       "max_total_current": 1})
    assert (status, body) == (400, "give either max_total_power or max_total_current, not both")


async def test_get_params_and_get_dev_types(cb):
    status, params = await cb.client.get("get_params", auth=None)
    assert status == 200
    _, dev_types = await cb.client.get("get_dev_types", auth=None)
    assert params["dev_meta"] == dev_types
    assert dev_types["evse_sim"] == "Sim-Wallbox" and dev_types["meter_sim"] == "Sim-Meter"
    check_types(params, PARAM_TYPES)


async def test_share_of_total_current_alone_is_not_persisted(cb):
    status, body = await cb.client.post("set_params", {"max_total_cur_prc": 50})
    assert (status, body) == (200, "ok")
    assert (await info(cb))["params"]["max_total_cur_prc"] == 50
    assert cb.app.store.kv_get("params", "max_total_cur_prc") is None
    status, _ = await cb.client.post("set_params", {"max_total_cur_prc": 40, "title": "Hof"})
    assert status == 200 and cb.app.store.kv_get("params", "title") == "Hof"
    assert cb.app.store.kv_get("params", "max_total_cur_prc") is None


async def test_create_update_reset_and_delete_devices(cb):
    status, body = await cb.client.post("set_params", {"devices": [
        {"dev_type": "evse_group", "dev_id": "E5", "name": "Tiefgarage",
         "max_charging_cur": 40000}]})
    assert (status, body) == (200, "ok")
    status, body = await cb.client.post("set_device", {"devices": [
        {"dev_type": "evse_sim", "name": "Sim-Box", "group": 5, "prio": 2.0,
         "max_charging_cur": "16000.0"}]})
    assert (status, body) == (200, "ok")
    _, devices = await cb.client.get("get_devices")
    assert isinstance(devices, list)
    e6 = next(d for d in devices if d["dev_id"] == "E6")
    assert (e6["group"], e6["prio"], e6["max_charging_cur"]) == (5, 2, 16000)
    status, _ = await cb.client.post("set_params", {"title": "Hof",
                                                    "devices": [{"dev_id": "E6", "prio": 3}]})
    assert status == 200
    body = await info(cb)
    assert body["params"]["title"] == "Hof" and by_id(body, "E6")["prio"] == 3
    group = by_id(body, "E5")
    check_types(group, {**EVSE_TYPES, "max_charging_cur": int})
    assert group["max_charging_cur"] == 40000 and group["members"] == ["E6"]
    assert (await cb.client.get("reset_device", dev_id="E6")) == (200, "ok")
    assert (await cb.client.get("del_device", dev_id="E5")) == (
        400, "group E5 still has members: E6")
    assert (await cb.client.get("del_device", dev_id="M1")) == (
        400, "M1 is attached to E1; detach it first")
    assert (await cb.client.get("del_device", dev_id="E6")) == (200, "ok")
    assert (await cb.client.get("del_device", dev_id="E5")) == (200, "ok")
    assert [d["dev_id"] for d in (await info(cb))["devices"]] == ["E1", "M1", "M2"]


async def test_group_shows_the_sum_of_its_wallboxes(cb):
    for device in ({"dev_id": "E5", "dev_type": "evse_group"},
                   {"dev_type": "evse_sim", "group": 5, "phase_rotation": 120},
                   {"dev_type": "evse_sim", "group": 5}):
        assert (await cb.client.post("set_device", {"devices": [device]}))[0] == 200
    registry = cb.app.devices
    for dev_id in ("E6", "E7"):
        driver = registry.get(dev_id).driver
        driver.car = driver.car.replace(plugged=True, phases=1)
        await registry.apply(registry.get(dev_id), EvseSetpoint(8000), 0.0)
        await registry.read(registry.get(dev_id), 0.0)
    group = by_id(await info(cb), "E5")
    # E6 is rotated by 120°: its L1 is the building's L2
    assert (group["current_l1"], group["current_l2"], group["current_l3"]) == (8000, 8000, 0)
    assert group["power_w"] == 3680 and group["state"] == 3


async def test_configuration_survives_restart_and_kill(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, modbus=False)
    server.start()
    try:
        call(server, "set_params", {"title": "Carport", "devices": [
            {"dev_type": "meter_ajax", "name": "Grid", "role": 3}]})
        call(server, "set_device", {"devices": [{"dev_id": "E1", "max_charging_cur": 10000}]})
        call(server, "soft_meter", None, "&dev_id=E1&val=777")
        server.kill()  # SIGKILL: only what was acknowledged counts
        server.start()
        body = call(server, "get_dev_info", None)
        assert body["params"]["title"] == "Carport"
        assert by_id(body, "M3")["name"] == "Grid" and by_id(body, "M3")["role"] == 3
        assert by_id(body, "E1")["max_charging_cur"] == 10000
        assert call(server, "soft_meter", None, "&dev_id=E1") == 777
        server.stop()
        server.start()
        assert [d["dev_id"] for d in call(server, "get_dev_info", None)["devices"]] == [
            "E1", "M1", "M2", "M3"]
    finally:
        server.stop()
    store = Store.open(data)
    try:
        assert store.integrity_ok()
    finally:
        store.close()


def call(server: ServerProcess, cmd: str, body, extra: str = ""):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.base_url}/cnf?cmd={cmd}{extra}", data=data,
                                     headers={"Authorization": ADMIN_AUTH})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


async def test_soft_meter(cb):
    assert await cb.client.get("soft_meter", dev_id="E1") == (200, 0)
    assert await cb.client.get("soft_meter", dev_id="E1", val="1500.0") == (200, 0)
    assert await cb.client.get("soft_meter", dev_id="E1", val=2000) == (200, 1500)
    assert await cb.client.get("soft_meter", dev_id="E1", auth=None) == (200, 2000)
    assert (await cb.client.get("soft_meter", dev_id="E1", val=1, auth=None))[0] == 401
    assert await cb.client.get("soft_meter", dev_id="M1") == (400, "M1 is not a wallbox")
    assert await cb.client.get("soft_meter", dev_id="E9") == (404, "unknown device")
    assert await cb.client.get("soft_meter", dev_id="E1", val=-1) == (
        400, "val must be at least 0")
    assert await cb.client.get("soft_meter") == (400, "missing parameter dev_id")
    _, devices = await cb.client.get("get_devices")
    assert devices[0]["soft_meter"] == 2000
    assert cb.app.store.kv_get("params", "x") is None


BAD_REQUESTS = [
    ("POST", "set_params", b"{broken", {}, 400, "body is not valid JSON"),
    ("POST", "set_params", b'{"max_total_current": NaN}', {}, 400, "body is not valid JSON"),
    ("POST", "set_params", b"[1, 2]", {}, 400, "body must be a JSON object"),
    ("POST", "set_params", None, {}, 400, "missing JSON body"),
    ("POST", "set_params", {"no_such_param": 1}, {}, 400, "unknown parameter no_such_param"),
    ("POST", "set_params", {"max_total_current": 1e300}, {}, 400, None),
    ("POST", "set_params", {"max_total_power": "lots"}, {}, 400,
     "max_total_power must be a number (W)"),
    ("POST", "set_params", {"version": "2.0"}, {}, 400, "version is read-only"),
    ("POST", "set_params", {"title": "x", "devices": [{"dev_id": "E1", "prio": "high"}]}, {},
     400, "prio: must be a valid integer, unable to parse string as an integer"),
    ("POST", "set_params", {"lb_enabled": 7, "devices": [{"dev_type": "evse_sim"}]}, {},
     400, "lb_enabled must be true or false"),
    ("POST", "set_params", {"devices": [{"dev_type": "evse_sim"}, {"dev_type": "evse_sim"}]},
     {}, 400, "only one device per call"),
    ("POST", "set_params", {"devices": {"dev_type": "evse_sim"}}, {}, 400,
     "devices must be a list with one device object"),
    ("POST", "set_params", {"devices": [{"dev_id": "E1", "colour": "red"}]}, {}, 400,
     "unknown device field colour"),
    ("POST", "set_params", {"devices": [{"dev_id": "E1", "min_charging_cur": 1e9}]}, {}, 400,
     "min_charging_cur: must be less than or equal to 1000000"),
    ("POST", "set_params", {"devices": [{"dev_id": "E1", "min_charging_cur": 1e30}]}, {}, 400,
     None),
    ("POST", "set_params", {"devices": [{"dev_type": "meter_expression",
                                         "expr_current_l1": "min(1,,2)"}]}, {}, 400,
     "expr_current_l1: formula: unexpected ',' at 6"),
    ("POST", "set_device", {"devices": []}, {}, 400, "devices must contain one device object"),
    ("POST", "set_device", {"device": []}, {}, 400, "unknown key device"),
    ("POST", "set_device", {}, {}, 400, "missing key devices"),
    ("POST", "set_device", {"devices": [{"dev_id": "E1", "address": "nowhere"}]}, {}, 400,
     "address must be evse or host:port"),
    ("POST", "set_device", {"devices": [{"dev_id": "E1", "attach": "M2", "group": 9}]}, {}, 400,
     "group 9 does not exist (E9 is no evse_group)"),
    ("GET", "del_device", None, {}, 400, "missing parameter dev_id"),
    ("GET", "del_device", None, {"dev_id": "E42"}, 404, "unknown device"),
    ("GET", "reset_device", None, {"dev_id": "M9"}, 404, "unknown device"),
    ("GET", "set_diag_logging", None, {}, 400, "missing parameter enable"),
    ("GET", "set_diag_logging", None, {"enable": "sometimes"}, 400, "enable must be 0 or 1"),
    ("GET", "accept_license", None, {}, 400, "missing parameter acc"),
    ("GET", "accept_license", None, {"acc": "maybe"}, 400, "acc must be 0 or 1"),
    ("GET", "accept_license", None, {"acc": 1, "allow_usage_stats": 2}, 400,
     "allow_usage_stats must be 0 or 1"),
    ("GET", "reset_device", None, {}, 400, "missing parameter dev_id"),
    ("POST", "set_device", b"\xff\xfe", {}, 400, "body is not valid JSON"),
    ("POST", "set_params", {"devices": [None]}, {}, 400, "a device must be a JSON object"),
    ("POST", "set_params", {"devices": [{"dev_id": "E1", "users": "x" * 5000}]}, {}, 400, None),
    ("GET", "soft_meter", None, {"dev_id": "E1", "val": "nan"}, 400, "val must be a whole number"),
    ("GET", "soft_meter", None, {"dev_id": "E1", "val": "1e20"}, 400, None),
]


@pytest.mark.parametrize(("method", "cmd", "body", "params", "status", "message"), BAD_REQUESTS)
async def test_bad_input_is_refused_and_changes_nothing(cb, method, cmd, body, params, status,
                                                        message):
    before = await snapshot(cb)
    got_status, got_body = await cb.client.call(method, cmd, body=body, **params)
    assert got_status == status
    assert isinstance(got_body, str)
    if message is not None:
        assert got_body == message
    assert await snapshot(cb) == before


async def test_access_rights(cb):
    for cmd in ("get_dev_info", "get_params", "get_dev_types"):
        assert (await cb.client.get(cmd, auth=None))[0] == 200
    wrong = basic("admin", "wrong-password")
    for method, cmd, body, params in [("GET", "get_devices", None, {}),
                                      ("POST", "set_params", {"title": "x"}, {}),
                                      ("POST", "set_device", {"devices": [{"dev_id": "E1"}]}, {}),
                                      ("GET", "del_device", None, {"dev_id": "M2"}),
                                      ("GET", "reset_device", None, {"dev_id": "M2"}),
                                      ("GET", "set_diag_logging", None, {"enable": 1}),
                                      ("GET", "accept_license", None, {"acc": 1})]:
        before = await snapshot(cb)
        for auth in (None, wrong):
            status, body = await cb.client.call(method, cmd, body=body, auth=auth, **params)
            assert status == 401 and isinstance(body, str), cmd
        assert await snapshot(cb) == before
    assert (await cb.client.post("set_params", {"api_read_needs_auth": True}))[0] == 200
    assert (await cb.client.get("get_dev_info", auth=None))[0] == 401
    assert (await cb.client.get("get_dev_info"))[0] == 200


async def test_mqtt_password_is_hidden_from_readers_without_admin(cb):
    url = "mqtt://user:secret@broker:1883"
    assert (await cb.client.post("set_params", {"mqtt_url": url}))[0] == 200
    _, public = await cb.client.get("get_params", auth=None)
    assert public["mqtt_url"] == "mqtt://user:***@broker:1883"
    _, admin = await cb.client.get("get_params")
    assert admin["mqtt_url"] == url


async def test_diag_logging_switches_on_and_back(cb):
    logger = logging.getLogger("chargebrain")
    level = logger.level
    assert await cb.client.get("set_diag_logging", enable=1) == (200, "ok")
    assert logger.level == logging.DEBUG
    diag = diag_logging(cb.app)
    diag.expire(diag.until_s - 1)
    assert logger.level == logging.DEBUG
    diag.expire(diag.until_s)  # five minutes later
    assert logger.level == level and not diag.active
    assert await cb.client.get("set_diag_logging", enable=1) == (200, "ok")
    assert await cb.client.get("set_diag_logging", enable=0) == (200, "ok")
    assert logger.level == level


async def test_accept_license_is_stored(cb):
    assert await cb.client.get("accept_license", acc=1, allow_usage_stats=0) == (200, "ok")
    assert cb.app.store.kv_get("license", "accepted") is True
    assert cb.app.store.kv_get("license", "allow_usage_stats") is False


async def test_sim_vehicle_plugs_a_car_into_a_sim_wallbox(cb):
    assert (await cb.client.post("set_device", {"devices": [{"dev_type": "evse_sim"}]}))[0] \
        == 200
    status, car = await cb.client.get("sim_vehicle", dev_id="E2", plugged=1, phases=1,
                                      max_current=16000, soc=20)
    assert status == 200 and car["plugged"] is True and car["dev_id"] == "E2"
    registry = cb.app.devices
    device = registry.get("E2")
    await registry.apply(device, EvseSetpoint(6000), 0.0)
    await registry.read(device, 0.0)
    e2 = by_id(await info(cb), "E2")
    assert (e2["state"], e2["current_l1"], e2["power_w"]) == (3, 6000, 1380)
    assert (await cb.client.get("sim_vehicle", dev_id="M1", plugged=1))[0] == 404
