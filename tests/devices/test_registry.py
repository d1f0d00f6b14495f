"""The device registry on a real SQLite file: defaults, changes, references, persistence,
reads with COM-error bookkeeping, soft meter, listeners."""

from __future__ import annotations

import json

import pytest

from chargebrain.devices.base import EvseReading, EvseSetpoint, MeterReading, PushDriver
from chargebrain.devices.config import ConfigError
from chargebrain.devices.drivers.ajax import AjaxMeter
from chargebrain.devices.drivers.sim import SimEvse, SimMeter
from chargebrain.devices.registry import DeviceRegistry, adjust_meter
from chargebrain.powerbrain import PowerBrain
from chargebrain.store.db import Store


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "data")
    yield s
    s.close()


def new_registry(store: Store) -> DeviceRegistry:
    registry = DeviceRegistry(store)
    registry.load()
    return registry


async def create(registry: DeviceRegistry, **raw) -> str:
    change = registry.prepare(raw)
    await registry.save(change)
    return change.config.dev_id


def rows(store: Store) -> dict[str, dict]:
    return {dev_id: json.loads(text) for dev_id, text in
            store.conn.execute("SELECT dev_id, config FROM devices")}


def soft_meters(store: Store) -> dict[str, float]:
    return dict(store.conn.execute("SELECT dev_id, soft_meter_wh FROM device_counters"))


async def test_factory_defaults_are_installed_once_and_persisted(store):
    registry = new_registry(store)
    assert [d.dev_id for d in registry.all()] == ["E1", "M1", "M2"]
    e1, m1, m2 = (registry.get(i) for i in ("E1", "M1", "M2"))
    assert (e1.config.dev_type, e1.config.address, e1.config.id) == ("evse_powerbrain", "evse", 1)
    assert (m1.config.address, m1.config.id, m2.config.address, m2.config.id) == (
        "meter1", 2, "meter2", 3)
    assert e1.config.attach == "M1" and m1.config.role == 4 and m2.config.role == 0
    assert set(rows(store)) == {"E1", "M1", "M2"}
    serial = registry.serialno
    # deleting everything and restarting leaves an empty installation (no re-install)
    await registry.delete("E1")
    await registry.delete("M1")
    await registry.delete("M2")
    again = new_registry(store)
    assert again.all() == [] and again.serialno == serial


async def test_create_update_and_reload(store):
    registry = new_registry(store)
    dev_id = await create(registry, dev_type="evse_ajax", name="Garage", max_charging_cur=20000)
    assert dev_id == "E2"
    assert await create(registry, dev_type="meter_ajax", role=3) == "M3"
    assert await create(registry, dev_id="E7", dev_type="evse_group",
                        max_charging_cur=25000) == "E7"
    await registry.save(registry.prepare({"dev_id": "E2", "prio": 3, "group": 7}))
    e2 = registry.get("E2")
    assert (e2.config.name, e2.config.prio, e2.config.group) == ("Garage", 3, 7)
    assert e2.config.max_charging_cur == 20000  # kept: not part of the update
    reloaded = new_registry(store)
    assert reloaded.configs() == registry.configs()
    assert [d.dev_id for d in reloaded.members(7)] == ["E2"]
    assert [d.dev_id for d in reloaded.evses_below(0)] == ["E1", "E2"]


@pytest.mark.parametrize(("raw", "message"), [
    ({"dev_type": "evse_ajax", "group": 3}, "group 3 does not exist"),
    ({"dev_type": "evse_ajax", "group": 1}, r"E1 is no evse_group"),
    ({"dev_type": "evse_ajax", "attach": "M9"}, "attach: meter M9 does not exist"),
    ({"dev_type": "evse_ajax", "attach": "M1"}, "M1 is already attached to E1"),
    ({"dev_id": "M5", "dev_type": "evse_ajax"}, "needs a dev_id starting with E"),
    ({"dev_id": "X5", "dev_type": "evse_ajax"}, "dev_id must look like"),
    ({"dev_type": "evse_ocpp", "address": "a/b"}, "address must be the wallbox's ChargeBox ID"),
    ({"dev_type": "meter_expression", "expr_power_w": "M1.power_w +"},
     "expr_power_w: formula: unexpected end of formula at 12"),
    ({"name": "no type"}, "dev_type is required"),
    ({"dev_id": "E1", "dev_type": "meter_ajax"}, "needs a dev_id starting with M"),
    (["not", "an", "object"], "must be a JSON object"),
])
async def test_refused_changes_change_nothing(store, raw, message):
    registry = new_registry(store)
    before = (registry.configs(), rows(store), registry.version)
    with pytest.raises(ConfigError, match=message):
        registry.prepare(raw)
    assert (registry.configs(), rows(store), registry.version) == before


async def test_groups_nest_without_cycles_and_keep_members(store):
    registry = new_registry(store)
    await create(registry, dev_id="E5", dev_type="evse_group")
    await create(registry, dev_id="E6", dev_type="evse_group", group=5)
    await create(registry, dev_type="evse_sim", group=6)
    with pytest.raises(ConfigError, match="cannot be nested inside itself"):
        registry.prepare({"dev_id": "E5", "group": 6})
    with pytest.raises(ConfigError, match="cannot be nested inside itself"):
        registry.prepare({"dev_id": "E5", "group": 5})
    with pytest.raises(ConfigError, match="group with members; it must stay a group"):
        registry.prepare({"dev_id": "E6", "dev_type": "evse_ajax"})
    with pytest.raises(ConfigError, match="group E6 still has members: E7"):
        registry.check_delete("E6")
    with pytest.raises(ConfigError, match="M1 is attached to E1"):
        registry.check_delete("M1")
    assert [d.dev_id for d in registry.evses_below(5)] == ["E7"]
    await registry.delete("E7")
    await registry.delete("E6")
    assert registry.get("E6") is None and "E6" not in rows(store)


async def test_type_change_starts_from_the_new_types_defaults(store):
    registry = new_registry(store)
    await create(registry, dev_type="evse_ajax", name="Box", prio=4, com_timeout_ms=9000)
    await registry.save(registry.prepare({"dev_id": "E2", "dev_type": "evse_group"}))
    e2 = registry.get("E2")
    assert e2.is_group and e2.config.name == "Box" and e2.driver is None
    assert e2.config.com_timeout_ms == 3000


async def test_listeners_and_version(store):
    registry = new_registry(store)
    changed, pushed = [], []
    registry.on_change.append(changed.append)
    registry.on_push.append(pushed.append)
    registry.on_change.append(lambda dev_id: 1 / 0)  # a failing listener does not break others
    version = registry.version
    await create(registry, dev_type="meter_ajax")
    await registry.reset("M3")
    await registry.delete("M3")
    assert changed == ["M3", "M3", "M3"] and registry.version == version + 3
    await create(registry, dev_type="meter_ajax")
    registry.push(registry.get("M3"), MeterReading(power_w=5), 100.0)
    assert pushed == ["M3"] and registry.get("M3").status.reading.power_w == 5


async def test_ajax_meter_goes_stale_and_counts_com_errors(store):
    registry = new_registry(store)
    await create(registry, dev_type="meter_ajax", com_timeout_ms=10000)
    m3 = registry.get("M3")
    assert isinstance(m3.driver, AjaxMeter)
    assert await registry.read(m3, 1000.0) is None  # nothing pushed yet
    assert m3.status.com_err and m3.status.com_errors == 1
    assert m3.status.last_error == "no data pushed yet"
    registry.push(m3, MeterReading(currents_ma=(1000, 0, 0), power_w=230), 1001.0)
    assert not m3.status.com_err
    assert m3.status.com_err_secs(1011.0) == 11  # since the last error (at 1000)
    assert (await registry.read(m3, 1011.0)).power_w == 230
    assert await registry.read(m3, 1011.5) is None  # 10.5 s old: stale
    assert m3.status.com_err and m3.status.com_errors == 2
    assert m3.status.com_err_secs(1020.0) == 8  # outage lasts since 1011.5
    await registry.reset("M3")
    fresh = registry.get("M3")
    assert (fresh.status.com_errors, fresh.status.com_err, fresh.status.reading) == (0, False, None)


async def test_push_is_part_of_the_driver_protocol_and_keeps_the_push_time(store):
    registry = new_registry(store)
    await create(registry, dev_type="meter_ajax", com_timeout_ms=10000, factor=2)
    await create(registry, dev_type="evse_ajax", com_timeout_ms=10000)
    await create(registry, dev_type="evse_sim")
    m3, e2, e3 = registry.get("M3"), registry.get("E2"), registry.get("E3")
    assert isinstance(m3.driver, PushDriver) and isinstance(e2.driver, PushDriver)
    assert not isinstance(e3.driver, PushDriver)
    registry.push(m3, MeterReading(currents_ma=(1000, 0, 0), power_w=230), 1000.0)
    assert (m3.status.reading.power_w, m3.status.reading_s) == (460, 1000.0)  # factor applied
    reading = await registry.read(m3, 1004.0)
    assert reading.power_w == 460 and m3.status.reading_s == 1000.0  # taken at the push
    registry.push(e2, EvseReading(state=3, power_w=2300), 1000.0)
    assert (await registry.read(e2, 1009.0)).charging and e2.status.reading_s == 1000.0
    with pytest.raises(TypeError):
        registry.push(m3, EvseReading(), 1005.0)  # the wrong kind of data for a meter
    with pytest.raises(TypeError):
        registry.push(e3, EvseReading(), 1005.0)  # polled, not pushed
    assert m3.status.reading_s == 1000.0 and e3.status.reading is None


def test_meter_factor_and_invert():
    raw = MeterReading(currents_ma=(1000, -2000, 0), power_w=-230, import_wh=10, export_wh=20)
    assert adjust_meter(raw, 1.0, False) is raw
    scaled = adjust_meter(raw, 2.0, False)
    assert scaled.currents_ma == (2000, -4000, 0) and scaled.power_w == -460
    assert (scaled.import_wh, scaled.export_wh) == (20, 40)
    for inverted in (adjust_meter(raw, -1.0, False), adjust_meter(raw, 1.0, True)):
        assert inverted.currents_ma == (-1000, 2000, 0) and inverted.power_w == 230
        assert (inverted.import_wh, inverted.export_wh) == (20, 10)
    assert adjust_meter(raw, -1.0, True).power_w == -230  # two inversions cancel
    assert adjust_meter(MeterReading(power_w=5), 3.0, False).currents_ma is None


async def test_sim_meter_integrates_its_load(store):
    registry = new_registry(store)
    await create(registry, dev_type="meter_sim", sim_power_w=-4600, factor=-1)
    m3 = registry.get("M3")
    assert isinstance(m3.driver, SimMeter)
    await registry.read(m3, 0.0)
    reading = await registry.read(m3, 1800.0)
    # the simulated generator exports 4.6 kW; factor −1 makes it read as import
    assert reading.power_w == 4600 and reading.import_wh == 2300 and reading.export_wh == 0
    assert reading.currents_ma == (6667, 6667, 6667)


async def test_sim_evse_charges_at_the_applied_current_and_soft_meter_counts(store):
    registry = new_registry(store)
    await create(registry, dev_type="evse_sim", soft_meter=1000)
    e2 = registry.get("E2")
    driver = e2.driver
    assert isinstance(driver, SimEvse)
    driver.car = driver.car.replace(plugged=True, phases=1, max_current_ma=32000, soc_pct=10.0)
    assert (await registry.read(e2, 0.0)).state == 2  # plugged, no current offered yet
    assert await registry.apply(e2, EvseSetpoint(10000), 0.0)
    assert e2.status.last_set_charging_cur_ma == 10000
    reading = await registry.read(e2, 0.0)
    assert reading.state == 3 and reading.currents_ma == (10000, 0, 0)
    assert reading.power_w == 2300
    await registry.read(e2, 3600.0)
    assert int(e2.status.soft_meter_wh) == 1000 + 2300
    assert soft_meters(store)["E2"] == 3300  # saved while counting (every minute)
    await registry.read(e2, 3630.0)
    assert soft_meters(store)["E2"] == 3300  # not again within the minute
    # a setting that does not touch the driver keeps the car; an address change rebuilds
    await registry.save(registry.prepare({"dev_id": "E2", "prio": 5}))
    assert registry.get("E2").driver is driver
    await registry.apply(e2, EvseSetpoint(0, enabled=False), 3600.0)
    assert e2.status.last_set_charging_cur_ma == 0 and not e2.status.charging_enabled
    assert (await registry.read(e2, 3601.0)).state == 2
    await registry.close()
    assert int(soft_meters(store)["E2"]) == 3319  # the last 30 s at 2.3 kW, at shutdown
    assert "soft_meter" not in rows(store)["E2"]  # a counter, not configuration


async def test_soft_meter_set_is_persisted(store):
    registry = new_registry(store)
    e1 = registry.get("E1")
    registry.set_soft_meter(e1, 4711)
    assert soft_meters(store)["E1"] == 4711 and e1.status.soft_meter_wh == 4711
    assert new_registry(store).get("E1").status.soft_meter_wh == 4711


async def test_local_power_brain_through_the_register_model(store):
    clock = [1000.0]
    powerbrain = PowerBrain(store, clock=lambda: clock[0])
    powerbrain.start(clock[0])
    registry = DeviceRegistry(store, powerbrain=lambda: powerbrain)
    registry.load()
    e1 = registry.get("E1")
    reading = await registry.read(e1, 0.0)
    assert reading.state == 1 and reading.cp_state == "Standby"
    assert reading.model.endswith(",fcf5-c46d-310c")
    powerbrain.set_car(powerbrain.car.replace(plugged=True, phases=3, max_current_ma=32000),
                       clock[0])
    assert await registry.apply(e1, EvseSetpoint(10000), 0.0)
    assert powerbrain.bank("evse").get_int("charging_cur_limit") == 100
    clock[0] += 5
    reading = await registry.read(e1, 5.0)
    assert reading.state == 3 and reading.currents_ma == (10000, 10000, 10000)
    assert reading.power_w == 6900 and reading.pp_state != "no cable"
    assert await registry.apply(e1, EvseSetpoint(0, enabled=False), 5.0)
    assert powerbrain.bank("evse").get_int("charging_enable") == 0
    m2 = registry.get("M2")
    assert (await registry.read(m2, 5.0)).voltages_v == (230, 230, 230)


async def test_local_device_without_a_controller_is_offline(store):
    registry = new_registry(store)  # no powerbrain getter: nothing built in
    e1 = registry.get("E1")
    assert await registry.read(e1, 0.0) is None
    assert e1.status.com_err and "not available" in e1.status.last_error
    assert not await registry.apply(e1, EvseSetpoint(6000), 0.0)
    assert e1.status.com_errors == 2 and e1.status.last_set_charging_cur_ma == -1


async def test_disabling_a_device_drops_its_reading_and_it_is_not_read(store):
    registry = new_registry(store)
    await create(registry, dev_type="meter_sim", sim_power_w=2300)
    assert (await registry.read(registry.get("M3"), 0.0)).power_w == 2300
    await registry.save(registry.prepare({"dev_id": "M3", "device_enabled": 0}))
    m3 = registry.get("M3")
    assert m3.status.reading is None and not m3.enabled
    assert await registry.read(m3, 10.0) is None and m3.status.com_errors == 0
    await registry.save(registry.prepare({"dev_id": "M3", "device_enabled": 1.0}))
    assert (await registry.read(registry.get("M3"), 20.0)).power_w == 2300
