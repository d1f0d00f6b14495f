"""The simulated hardware behind the registers, driven by explicit time (no clock, no sleeps)."""

from __future__ import annotations

import pytest

from chargebrain.powerbrain import PowerBrain, WriteOp
from chargebrain.sim.vehicle import VirtualCar
from chargebrain.store.db import Store

CAR = VirtualCar(plugged=True, phases=3, max_current_ma=16000, soc_pct=20, capacity_wh=60000)


@pytest.fixture
def pb(tmp_path):
    store = Store.open(tmp_path / "data")
    brain = PowerBrain(store)
    brain.start(0.0)
    yield brain
    store.close()


def no_fail_safe(pb: PowerBrain) -> None:
    """Long runs without Modbus traffic would otherwise fall back to fail_safe_current."""
    pb.write("evse", [WriteOp(8083, "d", value=0)], 0.0)


def evse(pb: PowerBrain) -> dict:
    return pb.read_all("evse")


def test_no_car_is_state_a_with_nothing_offered(pb):
    pb.tick(10.0)
    regs = evse(pb)
    assert (regs["8092"], regs["8090"], regs["8095"], regs["8062d"]) == (0, 0, 0, 0)


def test_plugged_car_charges_at_min_of_limit_cable_and_car(pb):
    pb.set_car(CAR, 1.0)
    regs = evse(pb)
    assert regs["8092"] == 2 and regs["8090"] == 320
    assert regs["8095"] == 160  # the 16 A default limit
    assert (regs["8064d"], regs["8066d"], regs["8068d"]) == (160, 160, 160)
    assert regs["8062d"] == 11040
    pb.write("evse", [WriteOp(8093, value=100)], 2.0)
    assert evse(pb)["8064d"] == 100 and evse(pb)["8095"] == 100
    pb.write("evse", [WriteOp(8093, value=320)], 3.0)
    regs = evse(pb)
    assert regs["8095"] == 320 and regs["8064d"] == 160  # the car takes at most 16 A
    pb.write("evse", [WriteOp(8091, value=80)], 4.0)  # fixed_current overrides the cable
    assert evse(pb)["8095"] == 80 and evse(pb)["8064d"] == 80


def test_disabled_charging_is_state_b(pb):
    pb.set_car(CAR, 1.0)
    pb.write("evse", [WriteOp(8094, value=0)], 2.0)
    regs = evse(pb)
    assert (regs["8092"], regs["8095"], regs["8062d"]) == (1, 0, 0)
    pb.write("evse", [WriteOp(8094, value=1)], 3.0)
    assert evse(pb)["8092"] == 2


def test_energy_integrates_power_and_meter1_counts_the_car(pb):
    no_fail_safe(pb)
    pb.set_car(CAR, 0.0)
    for step in range(1, 3601):
        pb.tick(float(step))
    regs = evse(pb)
    assert regs["8058q"] == 11040  # 11.04 kW for one hour
    meter1 = pb.read_all("meter1")
    assert meter1["8050q"] == 11040  # 1000 pulses per kWh
    assert meter1["8058q"] == 11040
    assert meter1["8062d"] == 11040  # from the pulse interval
    assert meter1["8054d"] == round(3_600_000 / 11040)  # ms between pulses
    assert pb.car.soc_pct == pytest.approx(20 + 11040 / 60000 * 100)
    assert pb.read_all("meter2")["8050q"] == 0


def test_ticks_of_any_length_give_the_same_energy(pb):
    no_fail_safe(pb)
    pb.set_car(CAR, 0.0)
    pb.tick(1800.0)
    pb.tick(3600.0)
    assert evse(pb)["8058q"] == 11040


def test_one_phase_relay_and_one_phase_car(pb):
    pb.set_car(CAR, 0.0)
    pb.write("evse", [WriteOp(8087, value=1)], 1.0)
    regs = evse(pb)
    assert (regs["8064d"], regs["8066d"], regs["8068d"], regs["8062d"]) == (160, 0, 0, 3680)
    pb.write("evse", [WriteOp(8087, value=0)], 2.0)
    pb.set_car(CAR.replace(phases=1), 3.0)
    assert (evse(pb)["8064d"], evse(pb)["8066d"]) == (160, 0)


def test_full_car_stops_drawing(pb):
    pb.set_car(CAR.replace(soc_pct=99.9, capacity_wh=10000), 0.0)  # 10 Wh left
    pb.tick(1.0)
    assert evse(pb)["8092"] == 2
    pb.tick(10.0)
    assert pb.car.full
    regs = evse(pb)
    assert (regs["8092"], regs["8062d"]) == (1, 0)
    assert regs["8058q"] == 10


def test_unplug_is_state_a(pb):
    pb.set_car(CAR, 0.0)
    pb.set_car(CAR.replace(plugged=False), 5.0)
    regs = evse(pb)
    assert (regs["8092"], regs["8090"], regs["8095"], regs["8062d"]) == (0, 0, 0, 0)


def test_fail_safe_after_duration_without_traffic(pb):
    pb.write("evse", [WriteOp(8093, value=320), WriteOp(8085, value=80)], 0.0)
    pb.set_car(CAR.replace(max_current_ma=32000), 0.0)
    pb.tick(299.0)
    assert evse(pb)["8095"] == 320
    pb.tick(300.0)
    assert evse(pb)["8095"] == 80 and evse(pb)["8064d"] == 80
    assert pb.evse_status().failsafe
    assert evse(pb)["8093"] == 320  # the register keeps its value
    pb.read_value("evse", 8092, now_s=301.0)  # traffic again
    pb.tick(301.5)
    assert evse(pb)["8095"] == 320


def test_fail_safe_current_0_stops_and_traffic_on_other_units_does_not_count(pb):
    pb.write("evse", [WriteOp(8085, value=0), WriteOp(8083, "d", value=60)], 0.0)
    pb.set_car(CAR, 0.0)
    pb.read_value("meter1", 8062, "d", now_s=50.0)
    pb.tick(60.0)
    regs = evse(pb)
    assert (regs["8092"], regs["8095"], regs["8062d"]) == (1, 0, 0)


def test_fail_safe_duration_0_disables_it(pb):
    pb.write("evse", [WriteOp(8083, "d", value=0), WriteOp(8085, value=0)], 0.0)
    pb.set_car(CAR, 0.0)
    pb.tick(100000.0)
    assert evse(pb)["8095"] == 160


def test_local_driver_calls_count_as_traffic(pb):
    pb.write("evse", [WriteOp(8085, value=0)], 0.0)
    pb.set_car(CAR, 0.0)
    for t in range(100, 1000, 100):
        pb.evse_status(float(t))
        pb.tick(float(t))
    assert evse(pb)["8095"] == 160


def test_disconnect_cp_counts_down_and_pauses_the_car(pb):
    pb.set_car(CAR, 0.0)
    pb.write("evse", [WriteOp(8086, value=5)], 10.0)
    regs = evse(pb)
    assert (regs["8086"], regs["8092"], regs["8062d"], regs["8095"]) == (5, 1, 0, 0)
    pb.tick(12.5)
    assert evse(pb)["8086"] == 3
    pb.tick(15.0)
    regs = evse(pb)
    assert (regs["8086"], regs["8092"], regs["8062d"]) == (0, 2, 11040)


def test_s0_meter_power_from_pulse_interval(pb):
    pb.set_meter_load("meter2", 1000, 0.0)  # 1 kW at 1000 pulses/kWh: a pulse every 3.6 s
    pb.tick(3.0)
    assert pb.read_all("meter2")["8050q"] == 0
    pb.tick(4.0)
    regs = pb.read_all("meter2")
    assert (regs["8050q"], regs["8062d"], regs["8054d"]) == (1, -1, 0)  # one pulse: unknown
    pb.tick(7.5)
    regs = pb.read_all("meter2")
    assert (regs["8050q"], regs["8062d"], regs["8054d"]) == (2, 1000, 3600)
    assert regs["8064d"] == round(1000 * 10 / 230)  # all on L1 (phases = 1)
    assert (regs["8066d"], regs["8068d"]) == (0, 0)
    pb.write("meter2", [WriteOp(8044, value=7)], 7.5)
    regs = pb.read_all("meter2")
    assert regs["8064d"] == regs["8066d"] == regs["8068d"] == round(1000 * 10 / 690)


def test_s0_energy_follows_pulses_per_kwh(pb):
    pb.write("meter2", [WriteOp(8042, "d", value=500)], 0.0)  # 2 Wh per pulse
    pb.set_meter_load("meter2", 2000, 0.0)
    pb.tick(3600.0)
    regs = pb.read_all("meter2")
    assert regs["8050q"] == 1000 and regs["8058q"] == 2000 and regs["8062d"] == 2000


def test_s0_power_decays_when_pulses_stop(pb):
    pb.set_meter_load("meter2", 1000, 0.0)
    pb.tick(36.0)
    assert pb.read_value("meter2", 8062, "d") == 1000
    pb.set_meter_load("meter2", 0, 36.0)
    pb.tick(72.0)
    assert pb.read_value("meter2", 8062, "d") == 100  # one pulse per 36 s at most
    pb.tick(36000.0)
    assert pb.read_value("meter2", 8062, "d") == 0


def test_rfid_presented_with_the_car(pb):
    pb.set_car(CAR.replace(rfid="04A1B2C3"), 0.0, rfid_presented=True)
    assert pb.read_value("evse", 8096, "s") == "04a1b2c3"
    assert pb.read_value("evse", 8111) == 1
    pb.set_car(CAR.replace(rfid="card 7"), 1.0, rfid_presented=True)
    assert pb.read_value("evse", 8096, "s") == b"card 7".hex()
    assert pb.read_value("evse", 8111) == 2
    pb.set_car(CAR.replace(rfid="card 7", soc_pct=30), 2.0)  # not presented again
    assert pb.read_value("evse", 8111) == 2


def test_rfid_too_long_for_the_register_changes_nothing(pb):
    with pytest.raises(ValueError):
        pb.set_car(CAR.replace(rfid="x" * 16), 0.0, rfid_presented=True)
    assert not pb.car.plugged and pb.read_value("evse", 8111) == 0


def test_driver_api(pb):
    no_fail_safe(pb)
    pb.set_car(CAR, 0.0)
    pb.set_charging(1.0, limit_ma=10050, enabled=True, one_phase=True)
    status = pb.evse_status(2.0)
    assert status.cp_state == 2 and status.charging and status.plugged
    assert (status.limit_ma, status.offered_ma, status.cable_ma) == (10000, 10000, 32000)
    assert status.currents_ma == (10000, 0, 0) and status.power_w == 2300
    assert status.one_phase and not status.failsafe
    pb.tick(3601.0)
    assert pb.evse_status().energy_wh == 2303  # 1 s at 11040 W, then 3600 s at 2300 W
    assert pb.meter_status("meter1").energy_wh == pb.evse_status().energy_wh
    pb.set_charging(3602.0, enabled=False)
    assert pb.evse_status().cp_state == 1


def test_counters_are_flushed_to_the_store(tmp_path):
    store = Store.open(tmp_path / "data")
    pb = PowerBrain(store)
    pb.start(0.0)
    pb.set_car(CAR, 0.0)
    pb.tick(5.0)
    assert store.kv_get("reg:evse", "energy") is None  # not yet: every 10 s
    pb.tick(20.0)
    saved = store.kv_get("reg:evse", "energy")
    assert saved == pb.read_value("evse", 8058, "q") > 0
    pb.tick(25.0)
    pb.close()
    again = PowerBrain(store)
    assert again.read_value("evse", 8058, "q") == pb.read_value("evse", 8058, "q")
    assert again.read_value("meter1", 8050, "q") == pb.read_value("meter1", 8050, "q")
    store.close()
