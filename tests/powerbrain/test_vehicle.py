"""The virtual car (pure): what it draws, how its battery fills, when it stops."""

from __future__ import annotations

import pytest

from chargebrain.sim.vehicle import (
    CP_A_STANDBY,
    CP_B_VEHICLE_DETECTED,
    CP_C_CHARGING,
    VirtualCar,
)


def test_unplugged_car_draws_nothing():
    car = VirtualCar(plugged=False)
    new, step = car.charge(16000, True, 60)
    assert step.currents_ma == (0, 0, 0) and new == car
    assert car.pilot_state(step) == CP_A_STANDBY


def test_three_phase_car_draws_min_of_offer_and_its_max():
    car = VirtualCar(plugged=True, phases=3, max_current_ma=16000, soc_pct=40)
    _, step = car.charge(32000, True, 3600)
    assert step.currents_ma == (16000, 16000, 16000)
    assert step.power_w == 11040
    _, step = car.charge(10000, True, 3600)
    assert step.currents_ma == (10000, 10000, 10000)


def test_one_phase_car_and_one_phase_supply():
    car = VirtualCar(plugged=True, phases=1, max_current_ma=32000)
    assert car.draw_ma(16000, True) == (16000, 0, 0)
    car3 = VirtualCar(plugged=True, phases=3)
    assert car3.draw_ma(16000, True, supply_phases=1) == (16000, 0, 0)


def test_below_six_amps_or_disabled_draws_nothing():
    car = VirtualCar(plugged=True)
    assert car.draw_ma(5999, True) == (0, 0, 0)
    assert car.draw_ma(16000, False) == (0, 0, 0)
    assert VirtualCar(plugged=True, max_current_ma=5000).draw_ma(16000, True) == (0, 0, 0)
    _, step = car.charge(16000, False, 10)
    assert car.pilot_state(step) == CP_B_VEHICLE_DETECTED


def test_energy_raises_soc_and_full_car_stops():
    car = VirtualCar(plugged=True, phases=3, max_current_ma=16000, soc_pct=99.0,
                     capacity_wh=10000)
    new, step = car.charge(16000, True, 3600)
    assert step.energy_wh == pytest.approx(100.0)  # only the 1 % that was left
    assert new.soc_pct == 100.0 and new.full
    assert car.pilot_state(step) == CP_C_CHARGING
    _, step2 = new.charge(16000, True, 60)
    assert step2.power_w == 0 and new.pilot_state(step2) == CP_B_VEHICLE_DETECTED


def test_energy_integrates_power_over_time():
    car = VirtualCar(plugged=True, phases=1, max_current_ma=10000, soc_pct=0, capacity_wh=60000)
    _, step = car.charge(10000, True, 1800)
    assert step.power_w == 2300
    assert step.energy_wh == pytest.approx(1150.0)


@pytest.mark.parametrize("kwargs", [{"phases": 2}, {"soc_pct": 101}, {"capacity_wh": 0},
                                    {"max_current_ma": -1}, {"rfid": "x" * 31}])
def test_invalid_cars_are_refused(kwargs):
    with pytest.raises(ValueError):
        VirtualCar(**kwargs)
