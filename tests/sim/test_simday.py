"""The simulated PV day (`chargebrain simulate-day`, sim/day.py): a short window through the
real control cycle with its report's invariants, the optimum's LP on hand-computed cases, the
day profile and the command line."""

from __future__ import annotations

import json

import pytest

from chargebrain import cli
from chargebrain.sim import day, day_lp
from chargebrain.sim.day_profile import DAY_S, generate, read_csv, write_csv

V = 230


@pytest.fixture(scope="module")
def profile():
    return generate(3)


def test_a_short_window_runs_end_to_end_and_its_report_adds_up(profile):
    setup = day.DaySetup(profile, step_s=30, start_h=11.5, end_h=13.5, lp_step_s=300)
    report = day.run_day(setup)
    assert [r.label for r in report.runs] == ["chargebrain", "evcc-style"]
    # the values the simulation plays: each step holds its first second's value
    hold_h = 30 / 3600
    seconds = setup.seconds
    pv_wh = sum(profile.pv_w[int(s)] for s in seconds) * hold_h
    house_wh = sum(sum(profile.house_w[int(s)]) for s in seconds) * hold_h
    for run in report.runs:
        assert run.cycles == len(seconds) == 240
        assert run.limit_excess_count == 0 and run.limit_excess_max_ma == 0
        assert run.pv_wh == pytest.approx(pv_wh) and run.house_wh == pytest.approx(house_wh)
        cars_wh = sum(c.energy_wh for c in run.cars.values())
        assert run.energy_to_cars_wh == pytest.approx(cars_wh)
        assert cars_wh > 1000  # both cars are there from 12:00 and the sun shines
        assert run.energy_to_cars_wh == pytest.approx(
            run.pv_to_cars_wh + run.grid_for_charging_wh, abs=0.01)
        assert sum(c.pv_wh for c in run.cars.values()) == pytest.approx(run.pv_to_cars_wh)
        assert 0 <= run.pv_to_cars_wh <= min(cars_wh, pv_wh) + 1e-6
        # energy at the grid meter: import − export = house + cars − PV
        assert run.grid_import_wh - run.grid_export_wh == pytest.approx(
            house_wh + cars_wh - pv_wh, abs=0.01)
        assert run.pv_self_consumed_wh == pytest.approx(pv_wh - run.grid_export_wh)
        assert 0 <= run.export_while_car_waits_wh <= run.grid_export_wh + 1e-9
        for name, car in run.cars.items():
            assert car.energy_wh <= car.need_wh + 1e-6, name
            # the books agree with what the wallbox driver's car stored
            assert car.battery_wh == pytest.approx(car.energy_wh, abs=0.01), name
            assert car.sessions == 1 and len(car.phase_switches) == 1
        # the optimum is an upper bound of what a real controller achieved
        assert report.optimum_pv_to_cars_wh >= run.pv_to_cars_wh - 1e-3
        assert 0 < report.pv_share_pct(run) <= 100.0 + 1e-6
    # the report prints, and as JSON
    text = day.format_text(report)
    assert "PV into cars (% of optimum)" in text and "optimum" in text
    data = json.loads(json.dumps(report.as_dict()))
    assert data["runs"][0]["targets"]["no_limit_excess"] is True
    assert data["optimum"]["pv_to_cars_wh"] == pytest.approx(report.optimum_pv_to_cars_wh,
                                                             abs=0.01)


def _one_hour(pv_w, house_ma=(0, 0, 0), *cars, limit_ma=25000, steps=1):
    pv = tuple(pv_w) if isinstance(pv_w, tuple) else (pv_w,) * steps
    return day_lp.LpDay(3600.0, pv, (house_ma,) * len(pv), limit_ma, V, tuple(cars))


def _car(present=(1.0,), need_wh=50000, **kw):
    return day_lp.LpCar("X", tuple(present), need_wh, **kw)


def test_lp_a_switchable_car_takes_the_whole_surplus():
    # 6900 W of surplus, a 3p car could take 11040 W: all of it, in one hour
    result = day_lp.solve(_one_hour(6900, (0, 0, 0), _car()))
    assert result.pv_to_cars_wh == pytest.approx(6900, abs=0.01)


def test_lp_a_one_phase_car_takes_at_most_16_a_on_one_phase():
    car = _car(three_phase=False)
    result = day_lp.solve(_one_hour(6900, (0, 0, 0), car))
    assert result.pv_to_cars_wh == pytest.approx(16 * V, abs=0.01)  # 3680 Wh


def test_lp_stops_at_the_energy_the_car_needs():
    result = day_lp.solve(_one_hour(6900, (0, 0, 0), _car(need_wh=2000)))
    assert result.pv_to_cars_wh == pytest.approx(2000, abs=0.01)
    assert result.car_wh["X"] == pytest.approx(2000, abs=0.01)


def test_lp_keeps_the_phase_limit():
    # PV 13800 W (20 A per phase), the house 30 A on L2 (6900 W): 6900 W surplus, but a
    # one-phase car wired to L2 (rotation 120) may take only 25 − 30 + 20 = 15 A there
    car = _car(three_phase=False, rotation_deg=120)
    result = day_lp.solve(_one_hour(13800, (0, 30000, 0), car))
    assert result.pv_to_cars_wh == pytest.approx(15 * V, abs=0.01)  # 3450 Wh


def test_lp_counts_a_car_only_while_it_is_there():
    # there for half of the first hour (8 A average on three phases), gone in the second
    car = _car(present=(0.5, 0.0))
    result = day_lp.solve(_one_hour((6900, 6900), (0, 0, 0), car, steps=2))
    assert result.pv_to_cars_wh == pytest.approx(3 * 8 * V, abs=0.01)  # 5520 Wh


def test_lp_never_gives_pv_that_the_house_uses():
    # 3000 W PV, 2000 W house (spread): 1000 W are left for the car, the rest is grid
    house = (round(2000 / V / 3 * 1000),) * 3
    result = day_lp.solve(_one_hour(3000, house, _car(need_wh=5000)))
    surplus = 3000 - sum(house) * V / 1000
    assert result.pv_to_cars_wh == pytest.approx(surplus, abs=0.01)
    assert result.car_wh["X"] == pytest.approx(5000, abs=0.01)  # the rest from the grid


def test_the_day_profile_is_deterministic_and_cloudy():
    a, b, c = generate(5), generate(5), generate(6)
    assert a == b and a.pv_w != c.pv_w
    assert max(a.pv_w) <= 8500 and a.pv_w[3 * 3600] == 0 and a.pv_w[23 * 3600] == 0
    # clouds: somewhere around noon the output drops by more than half within 20 minutes
    noon = a.pv_w[10 * 3600:16 * 3600]
    assert any(min(noon[i:i + 1200]) < 0.5 * noon[i] for i in range(0, len(noon) - 1200, 60))
    pv_kwh, house_kwh = a.energy_wh()
    assert 20_000 < pv_kwh < 75_000 and 8_000 < house_kwh < 30_000  # Wh


def test_a_profile_survives_csv(tmp_path, profile):
    path = tmp_path / "day.csv"
    write_csv(profile, path, every_s=10)
    back = read_csv(path)
    assert all(back.pv_w[s] == profile.pv_w[s - s % 10] for s in range(0, DAY_S, 7))
    assert back.house_w[12 * 3600] == profile.house_w[12 * 3600]
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,pv_w\n0,1\n")
    with pytest.raises(ValueError, match="header"):
        read_csv(bad)


def test_the_command_line(tmp_path, capsys):
    code = cli.main(["simulate-day", "--start-h", "12", "--end-h", "12.25", "--step-s", "60",
                     "--config", "evcc", "--lp-step-s", "300", "--json",
                     "--trace", str(tmp_path / "day.csv")])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in data["runs"]] == ["evcc-style"]
    assert data["runs"][0]["cycles"] == 15
    trace = (tmp_path / "day.evcc-style.csv").read_text().splitlines()
    assert trace[0].startswith("time_s,pv_w,house_w,grid_l1_ma") and len(trace) == 16
    assert trace[1].startswith("43200,")
    bad = tmp_path / "bad.csv"
    bad.write_text("nonsense\n")
    assert cli.main(["simulate-day", "--profile", str(bad)]) == 2
    assert "header" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli.main(["simulate-day", "--step-s", "5000"])
    assert usage.value.code == 2


def test_a_departure_ends_the_books_where_the_car_left(profile):
    # car A leaves at 17:30: nothing is booked for it afterwards, and what it took until then
    # is what its battery stored
    setup = day.DaySetup(profile, step_s=30, start_h=17.25, end_h=17.75, lp_step_s=300)
    run = day.run_day(setup, day.CONFIGS[:1]).runs[0]
    a = run.cars["A"]
    assert a.sessions == 1 and a.battery_wh == pytest.approx(a.energy_wh, abs=0.01)
    assert all(not any(row.cars_ma["A"]) for row in run.trace if row.second >= 17.5 * 3600)
    assert run.limit_excess_count == 0


def test_the_same_day_gives_the_same_report(profile):
    # nothing in the run may depend on the wall clock or on an earlier run
    setup = day.DaySetup(profile, step_s=60, start_h=12, end_h=13.5, lp_step_s=300)
    first = day.run_day(setup, day.CONFIGS[:1]).as_dict()
    second = day.run_day(setup, day.CONFIGS[:1]).as_dict()
    for report in (first, second):
        for run in report["runs"]:
            run.pop("wall_s")
        report["optimum"].pop("solve_s")
    assert first == second
