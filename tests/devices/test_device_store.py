"""The devices' store on real SQLite files: the soft meter lives in `device_counters`, survives
restarts, never rewrites a configuration row, and is moved out of old configurations by the
0006 migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from chargebrain.devices.base import EvseSetpoint
from chargebrain.devices.drivers.sim import SimEvse
from chargebrain.devices.registry import DeviceRegistry
from chargebrain.devices.runtime import SOFT_METER_SAVE_S
from chargebrain.store import db
from chargebrain.store.db import Store
from chargebrain.store.schema import MIGRATIONS


def open_registry(data: Path) -> tuple[Store, DeviceRegistry]:
    store = Store.open(data)
    registry = DeviceRegistry(store)
    registry.load()
    return store, registry


def config_rows(store: Store) -> dict[str, str]:
    return dict(store.conn.execute("SELECT dev_id, config FROM devices"))


def soft_meters(store: Store) -> dict[str, float]:
    return dict(store.conn.execute("SELECT dev_id, soft_meter_wh FROM device_counters"))


async def charging_sim_evse(registry: DeviceRegistry, soft_meter_wh: int) -> str:
    """A new simulated wallbox (no energy meter) with a car drawing 2.3 kW."""
    change = registry.prepare({"dev_type": "evse_sim", "soft_meter": soft_meter_wh})
    await registry.save(change)
    await plug_in(registry, change.config.dev_id)
    return change.config.dev_id


async def plug_in(registry: DeviceRegistry, dev_id: str) -> None:
    """A car on one phase of the simulated wallbox, charging at 10 A (2.3 kW)."""
    device = registry.get(dev_id)
    assert isinstance(device.driver, SimEvse)
    device.driver.car = device.driver.car.replace(plugged=True, phases=1, max_current_ma=32000,
                                                  soc_pct=10.0)
    assert await registry.apply(device, EvseSetpoint(10000), 0.0)


async def test_soft_meter_survives_a_restart(tmp_path):
    data = tmp_path / "data"
    store, registry = open_registry(data)
    dev_id = await charging_sim_evse(registry, 500)
    device = registry.get(dev_id)
    for now_s in (0.0, 1800.0, 1810.0):
        await registry.read(device, now_s)
    assert device.status.soft_meter_wh == pytest.approx(500 + 1150 + 2300 * 10 / 3600)
    await registry.close()
    store.close()

    store, registry = open_registry(data)
    try:
        device = registry.get(dev_id)
        assert device.status.soft_meter_wh == pytest.approx(500 + 1150 + 2300 * 10 / 3600)
        assert registry.evse_measurement(device).energy_wh == 1656
        assert next(c for c in registry.configs() if c["dev_id"] == dev_id)["soft_meter"] == 1656
        # counting goes on from the stored value; the downtime is not counted
        await plug_in(registry, dev_id)
        await registry.read(device, 5000.0)
        await registry.read(device, 5360.0)
        assert device.status.soft_meter_wh == pytest.approx(1656.39 + 230, abs=0.01)
    finally:
        store.close()


async def test_a_crash_loses_at_most_the_last_minute(tmp_path):
    data = tmp_path / "data"
    store, registry = open_registry(data)
    dev_id = await charging_sim_evse(registry, 0)
    device = registry.get(dev_id)
    for now_s in (0.0, 30.0, SOFT_METER_SAVE_S, SOFT_METER_SAVE_S + 30):
        await registry.read(device, now_s)
    store.close()  # no registry.close(): the process died
    store = Store.open(data)
    try:
        saved_wh = soft_meters(store)[dev_id]
        assert saved_wh == pytest.approx(2300 * SOFT_METER_SAVE_S / 3600)
    finally:
        store.close()


async def test_counting_never_rewrites_the_configuration(tmp_path):
    store, registry = open_registry(tmp_path / "data")
    try:
        dev_id = await charging_sim_evse(registry, 0)
        device = registry.get(dev_id)
        before = config_rows(store)
        store.conn.execute("CREATE TEMP TABLE writes (dev_id TEXT)")
        store.conn.execute(
            "CREATE TEMP TRIGGER count_updates AFTER UPDATE ON main.devices"
            " BEGIN INSERT INTO writes VALUES (new.dev_id); END")
        store.conn.execute(
            "CREATE TEMP TRIGGER count_inserts AFTER INSERT ON main.devices"
            " BEGIN INSERT INTO writes VALUES (new.dev_id); END")
        # ten minutes of charging, one reading every 3 s, then a shutdown
        for step in range(201):
            await registry.read(device, step * 3.0)
        registry.set_soft_meter(device, 12345)
        await registry.read(device, 700.0)
        await registry.close()
        assert store.conn.execute("SELECT count(*) FROM writes").fetchone()[0] == 0
        assert config_rows(store) == before
        assert "soft_meter" not in json.loads(before[dev_id])
        assert soft_meters(store)[dev_id] == pytest.approx(12345 + 2300 * 100 / 3600)
    finally:
        store.close()


async def test_soft_meter_set_by_a_configuration_change(tmp_path):
    store, registry = open_registry(tmp_path / "data")
    try:
        dev_id = await charging_sim_evse(registry, 1000)
        assert soft_meters(store)[dev_id] == 1000  # a new wallbox starts its counter
        device = registry.get(dev_id)
        await registry.read(device, 0.0)
        await registry.read(device, 37.0)  # +23.6 Wh, not saved yet
        # sending back what get_devices shows keeps the live counter and its fraction
        shown = next(c for c in registry.configs() if c["dev_id"] == dev_id)
        assert shown["soft_meter"] == 1023
        await registry.save(registry.prepare({**shown, "prio": 3}))
        assert registry.get(dev_id) is device and device.config.prio == 3
        assert device.status.soft_meter_wh == pytest.approx(1000 + 2300 * 37 / 3600)
        assert soft_meters(store)[dev_id] == 1000
        # a new value is set, stored in the counters table and survives a rebuild
        await registry.save(registry.prepare({"dev_id": dev_id, "soft_meter": 50,
                                              "com_timeout_ms": 5000}))
        rebuilt = registry.get(dev_id)
        assert rebuilt is not device and rebuilt.status.soft_meter_wh == 50
        assert soft_meters(store)[dev_id] == 50
        assert "soft_meter" not in json.loads(config_rows(store)[dev_id])
        # a deleted wallbox takes its counter along; a new one under its id starts at 0
        await registry.delete(dev_id)
        assert dev_id not in soft_meters(store)
        await registry.save(registry.prepare({"dev_id": dev_id, "dev_type": "evse_sim"}))
        assert registry.get(dev_id).status.soft_meter_wh == 0
    finally:
        store.close()


def old_database(data: Path, monkeypatch: pytest.MonkeyPatch, rows: list[tuple[str, str, int, str]]
                 ) -> None:
    """A database as the release before 0006 left it: configurations with `soft_meter`."""
    with monkeypatch.context() as patch:
        patch.setattr(db, "MIGRATIONS", MIGRATIONS[:5])
        store = Store.open(data)
    assert store.schema_names()[-1] == "0005_transaction_details"
    with store.transaction() as conn:
        conn.executemany("INSERT INTO devices(dev_id, dev_type, position, config)"
                         " VALUES (?, ?, ?, ?)", rows)
        conn.execute("INSERT INTO kv(ns, key, value) VALUES ('install', 'defaults_installed',"
                     " 'true')")
    store.close()


def old_config(dev_id: str, dev_type: str, **fields) -> str:
    return json.dumps({"dev_id": dev_id, "dev_type": dev_type, **fields})


async def test_upgrade_moves_soft_meters_out_of_the_configuration(tmp_path, monkeypatch):
    data = tmp_path / "data"
    old_database(data, monkeypatch, [
        ("E1", "evse_powerbrain", 1, old_config("E1", "evse_powerbrain", address="evse",
                                                attach="M1", soft_meter=4711, prio=2)),
        ("M1", "meter_powerbrain", 2, old_config("M1", "meter_powerbrain", address="meter1",
                                                 id=2, role=4)),
        ("E2", "evse_sim", 3, old_config("E2", "evse_sim", soft_meter=0, name="Carport")),
        ("E3", "evse_ajax", 4, old_config("E3", "evse_ajax", soft_meter=12)),
        ("E4", "evse_ajax", 5, "{not json"),  # unreadable before, still unreadable: kept
    ])
    store, registry = open_registry(data)
    try:
        assert "0006_device_counters" in store.schema_names()
        assert soft_meters(store) == {"E1": 4711.0, "E2": 0.0, "E3": 12.0}
        stored = config_rows(store)
        assert stored["E4"] == "{not json"
        for dev_id in ("E1", "M1", "E2", "E3"):
            assert "soft_meter" not in json.loads(stored[dev_id])
        assert json.loads(stored["E1"])["prio"] == 2 and json.loads(stored["E2"])["name"] == (
            "Carport")
        assert [d.dev_id for d in registry.all()] == ["E1", "M1", "E2", "E3"]
        assert registry.get("E1").status.soft_meter_wh == 4711
        assert registry.get("E3").status.soft_meter_wh == 12
        shown = {c["dev_id"]: c for c in registry.configs()}
        assert (shown["E1"]["soft_meter"], shown["E3"]["soft_meter"]) == (4711, 12)
        assert "soft_meter" not in shown["M1"]
        assert store.integrity_ok()
        assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        store.close()
    store, registry = open_registry(data)  # a second start migrates nothing again
    try:
        assert registry.get("E1").status.soft_meter_wh == 4711
        assert store.schema_names().count("0006_device_counters") == 1
    finally:
        store.close()


def test_migration_is_plain_sql_on_the_stored_text(tmp_path):
    """0006 needs nothing but SQLite's JSON functions (no Python step at upgrade)."""
    name, sql = MIGRATIONS[5]
    assert name == "0006_device_counters"
    conn = sqlite3.connect(tmp_path / "bare.sqlite3")
    try:
        for _, earlier in MIGRATIONS[:5]:
            conn.executescript(earlier)
        conn.execute("INSERT INTO devices VALUES ('E1', 'evse_sim', 1, ?)",
                     (old_config("E1", "evse_sim", soft_meter=7),))
        conn.executescript(sql)
        assert conn.execute("SELECT * FROM device_counters").fetchall() == [("E1", 7.0)]
        assert json.loads(conn.execute("SELECT config FROM devices").fetchone()[0]) == {
            "dev_id": "E1", "dev_type": "evse_sim"}
    finally:
        conn.close()
