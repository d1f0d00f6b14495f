"""Random (seeded, reproducible) bodies for the configuration and push commands: every answer is
200 or a 4xx JSON string, never a 5xx, and a refused request changes nothing."""

from __future__ import annotations

import random

import pytest

from chargebrain.devices import types
from tests.devices.support import stop_cycle


@pytest.fixture
async def cb(cb):
    """The app of conftest's `cb` with its control cycle stopped: these tests set readings,
    setpoints and status by hand."""
    await stop_cycle(cb)
    yield cb


FIELDS = ["dev_id", "dev_type", "device_enabled", "name", "address", "id", "used_phases",
          "min_charging_cur", "max_charging_cur", "prio", "group", "phase_rotation", "attach",
          "users", "charging_rules", "role", "factor", "invert", "phases", "soft_meter",
          "com_timeout_ms", "sim_power_w", "bogus"]
PARAMS = ["max_total_current", "max_total_power", "reserve_current", "lb_enabled", "title",
          "disable_policy", "system_voltage", "max_total_cur_prc", "version", "nope"]
PUSH = ["model", "import_wh", "import_vah", "export_wh", "voltage", "current", "power_w",
        "power_va", "is_va", "soc", "state", "max_charging_current", "total_energy", "rfid"]


def value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(12 if depth < 2 else 8)
    if choice == 0:
        return rng.randint(-10**6, 10**6)
    if choice == 1:
        return rng.choice([0, 1, 6000, 16000, 120, 240, -1, 10**20, 2**63])
    if choice == 2:
        return rng.uniform(-1e6, 1e6)
    if choice == 3:
        return rng.choice([True, False, None])
    if choice == 4:
        return rng.choice(["", "E1", "M1", "E9", "evse", "meter1", "127.0.0.1:1", "x" * 300,
                           "16000.0", "min(1, 2)", "evse_ajax", "meter_sim", "evse_group"])
    if choice == 5:
        return rng.choice(list(types.DEV_TYPES))
    if choice in (6, 7):
        return [rng.randint(-5, 20000) for _ in range(rng.randrange(5))]
    if choice in (8, 9):
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(FIELDS): value(rng, depth + 1) for _ in range(rng.randrange(4))}


def device(rng: random.Random) -> dict:
    out = {rng.choice(FIELDS): value(rng) for _ in range(rng.randrange(1, 6))}
    if rng.random() < 0.6:
        out["dev_type"] = rng.choice(list(types.DEV_TYPES))
    if rng.random() < 0.3:
        out["dev_id"] = rng.choice(["E1", "M1", "M2", "E2", "M3", "E5"])
    return out


async def state(cb) -> tuple:
    _, devices = await cb.client.get("get_devices")
    rows = cb.app.store.conn.execute("SELECT * FROM devices ORDER BY dev_id").fetchall()
    kv = cb.app.store.conn.execute("SELECT * FROM kv WHERE ns='params' ORDER BY key").fetchall()
    return devices, rows, kv, cb.app.params.as_dict()


async def test_random_configuration_requests(cb):
    rng = random.Random(20261124)
    outcomes = set()
    for _ in range(150):
        kind = rng.randrange(3)
        if kind == 0:
            cmd, body = "set_device", {"devices": [device(rng)]}
        elif kind == 1:
            body = {rng.choice(PARAMS): value(rng) for _ in range(rng.randrange(3))}
            if rng.random() < 0.5:
                body["devices"] = [device(rng)]
            cmd = "set_params"
        else:
            cmd, body = "set_device", value(rng)
        before = await state(cb)
        status, answer = await cb.client.post(cmd, body)
        assert status in (200, 400), (cmd, body, status, answer)
        assert isinstance(answer, str)
        outcomes.add(status)
        if status == 400:
            assert await state(cb) == before, (cmd, body, answer)
        _, info = await cb.client.get("get_dev_info")
        assert all(1 <= d["state"] <= 6 for d in info["devices"] if d["is_evse"])
    assert outcomes == {200, 400}


async def test_random_pushes(cb):
    for config in ({"dev_type": "meter_ajax"}, {"dev_type": "evse_ajax"}):
        assert (await cb.client.post("set_device", {"devices": [config]}))[0] == 200
    rng = random.Random(4712)
    outcomes = set()
    for _ in range(150):
        cmd, dev_id = rng.choice([("set_ajax_meter", "M3"), ("set_ajax_evse", "E2")])
        body = {rng.choice(PUSH): value(rng) for _ in range(rng.randrange(1, 5))}
        if rng.random() < 0.5:
            status, answer = await cb.client.post(cmd, body, dev_id=dev_id)
        else:
            query = {k: ",".join(map(str, v)) if isinstance(v, list) else v
                     for k, v in body.items()}
            status, answer = await cb.client.get(cmd, dev_id=dev_id, **query)
        assert status in (200, 400), (cmd, body, status, answer)
        outcomes.add(status)
    assert outcomes == {200, 400}
