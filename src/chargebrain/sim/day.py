"""A simulated PV day through the real control cycle, and its perfect-foresight optimum.

`chargebrain simulate-day` (cli.py) and `bench/bench_simday.py` call `run_day`. What it does
(docs/simulate-day.md has the details and the numbers):

1. Builds a site in memory: a `ChargeBrain` on a temporary data directory that is never
   started (no HTTP, Modbus, OCPP or MQTT), with a grid meter (`meter_ajax`, the simulation
   pushes house + cars − PV per phase), a PV meter (`meter_sim`, role production), two
   phase-switchable `evse_sim` wallboxes (16 A, min 6 A; the second wired at 120°) each with a
   legacy mode-5 ("solar surplus") charging rule, and the site limit.
2. Steps a fake clock through the day (`step_s`, 10 s by default: 8640 cycles) and runs the
   app's real `ControlCycle` (`run_once`) at every step, with the users hook, the rules and the
   planner as they are on this build. Cars arrive and leave on schedule; a car draws what its
   wallbox offers from the write on (`VirtualCar`: nothing below 6 A, at most its maximum,
   nothing once it has what it needs), so a setpoint shows in the next cycle's readings.
3. Accounts for every step what physically flowed: each car's energy, the PV into cars (PV
   serves the house first, the rest may go into the cars; totals over the three phases, as a
   netting meter counts), the grid import for charging, starts and stops, phase switches,
   and every phase current at the grid connection against the site limit.
4. Runs the same day once per hysteresis setting (chargebrain's defaults, and evcc's
   enable 1 min / disable 3 min) and solves the LP optimum (sim/day_lp.py).

A step's physics: the grid meter is pushed at the step's start with the house and PV of that
step and what the cars draw at that moment (the setpoints of the previous cycle); the cycle
reads, plans and writes; from then to the next step the cars draw the new setpoints.
Arrivals and departures take effect after the cycle of their step (the cycle sees them one
step later, as a wallbox's next poll would).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from chargebrain.devices.base import MeterReading
from chargebrain.devices.drivers.ajax import AjaxMeter
from chargebrain.devices.drivers.sim import SimEvse, SimMeter
from chargebrain.params import SPECS
from chargebrain.sim import day_lp
from chargebrain.sim.day_profile import DAY_S, DayProfile, generate
from chargebrain.sim.vehicle import VirtualCar
from chargebrain.units import ZERO, Phases, add, rotate_phases

log = logging.getLogger(__name__)

SIM_DATE = (2026, 6, 17)  # a Wednesday in June; the day runs in the machine's local time
WINDOW_S = 600.0  # starts/stops are counted per 10-minute window
VOLTAGE_V = 230


@dataclass(frozen=True, slots=True)
class CarPlan:
    """A car that parks at its own wallbox from `arrive_h` to `leave_h` and needs `need_wh`."""

    name: str
    arrive_h: float
    leave_h: float
    need_wh: int
    max_ma: int = 16000
    rotation_deg: int = 0
    capacity_wh: int = 60000

    def present(self, second: float) -> bool:
        return self.arrive_h * 3600 <= second < self.leave_h * 3600


CARS = (CarPlan("A", 8.0, 17.5, 20000, rotation_deg=0),
        CarPlan("B", 12.0, 20.0, 15000, rotation_deg=120))


@dataclass(frozen=True, slots=True)
class Hysteresis:
    """One configuration of the surplus start/stop delays to simulate.

    `params` are set only where this build knows them (others are reported as ignored);
    `udur_s` is the mode-5 rule's undercut time (its stop delay)."""

    label: str
    udur_s: int
    params: tuple[tuple[str, Any], ...] = ()


CONFIGS = (
    Hysteresis("chargebrain", 300),  # the documented recommendation: 300 s undercut
    Hysteresis("evcc-style", 180, (("surplus_start_delay", 60), ("surplus_stop_delay", 180))),
)


@dataclass(frozen=True, slots=True)
class DaySetup:
    """What is simulated."""

    profile: DayProfile
    step_s: float = 10.0
    start_h: float = 0.0
    end_h: float = 24.0
    limit_ma: int = 25000
    min_ma: int = 6000
    cars: tuple[CarPlan, ...] = CARS
    lp_step_s: float = 60.0
    extra_params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.step_s <= 600:
            raise ValueError("step_s must be between 1 and 600")
        if not 0 <= self.start_h < self.end_h <= 24:
            raise ValueError("the window must lie within 0..24 h")
        if not 1 <= self.lp_step_s <= 3600:
            raise ValueError("lp_step_s must be between 1 and 3600")

    @property
    def seconds(self) -> list[float]:
        """The step start times (seconds of the day)."""
        out, t = [], self.start_h * 3600
        while t < self.end_h * 3600 - 1e-9:
            out.append(t)
            t += self.step_s
        return out


@dataclass
class CarStats:
    energy_wh: float = 0.0
    pv_wh: float = 0.0
    need_wh: int = 0
    starts: int = 0
    stops: int = 0
    max_starts_10min: int = 0
    max_stops_10min: int = 0
    max_switches_10min: int = 0  # starts + stops in any 10 minutes
    phase_switches: list[int] = field(default_factory=list)  # per session
    sessions: int = 0
    battery_wh: float = 0.0  # what the wallbox driver's car stored (its state of charge)


class TraceRow(NamedTuple):
    """One step of a run: its start (second of the day), PV and house (W), and per car
    the currents drawn (wallbox frame, mA) and whether its contactor is on one phase."""

    second: float
    pv_w: int
    house_w: int
    grid_ma: Phases
    cars_ma: dict[str, Phases]
    one_phase: dict[str, bool]


@dataclass
class RunReport:
    """What one configuration achieved over the simulated window."""

    label: str
    cycles: int = 0
    wall_s: float = 0.0
    energy_to_cars_wh: float = 0.0
    pv_to_cars_wh: float = 0.0
    grid_for_charging_wh: float = 0.0
    pv_wh: float = 0.0
    pv_self_consumed_wh: float = 0.0
    grid_import_wh: float = 0.0
    grid_export_wh: float = 0.0
    # PV exported while a car was plugged in and not yet full (what surplus charging missed)
    export_while_car_waits_wh: float = 0.0
    house_wh: float = 0.0
    limit_excess_count: int = 0
    limit_excess_max_ma: int = 0
    cars: dict[str, CarStats] = field(default_factory=dict)
    params_set: dict[str, Any] = field(default_factory=dict)
    params_ignored: list[str] = field(default_factory=list)
    # per step, what flowed until the next one (not in the JSON report; `write_trace`)
    trace: list[TraceRow] = field(default_factory=list, repr=False)

    @property
    def self_consumption_pct(self) -> float:
        return 100.0 * self.pv_self_consumed_wh / self.pv_wh if self.pv_wh > 0 else 0.0


@dataclass
class DayReport:
    setup: dict[str, Any]
    runs: list[RunReport]
    optimum_pv_to_cars_wh: float
    optimum_car_wh: dict[str, float]
    optimum_s: float

    def pv_share_pct(self, run: RunReport) -> float:
        """The run's PV into cars as % of the optimum's."""
        if self.optimum_pv_to_cars_wh <= 0:
            return 100.0
        return 100.0 * run.pv_to_cars_wh / self.optimum_pv_to_cars_wh

    def targets(self, run: RunReport) -> dict[str, bool]:
        """The targets of docs/benchmarks.md, met or not."""
        return {
            "no_limit_excess": run.limit_excess_count == 0,
            "le_1_start_stop_per_car_per_10min": all(
                c.max_starts_10min <= 1 and c.max_stops_10min <= 1 for c in run.cars.values()),
            "le_4_phase_switches_per_session": all(
                max(c.phase_switches, default=0) <= 4 for c in run.cars.values()),
            "pv_into_cars_ge_90pct_of_optimum": self.pv_share_pct(run) >= 90.0,
        }

    def as_dict(self) -> dict[str, Any]:
        runs = []
        for run in self.runs:
            data = asdict(run)
            data.pop("trace", None)
            data["self_consumption_pct"] = round(run.self_consumption_pct, 2)
            data["pv_to_cars_pct_of_optimum"] = round(self.pv_share_pct(run), 2)
            data["targets"] = self.targets(run)
            runs.append(_rounded(data))
        return {"setup": self.setup, "runs": runs,
                "optimum": _rounded({"pv_to_cars_wh": self.optimum_pv_to_cars_wh,
                                     "car_wh": self.optimum_car_wh,
                                     "solve_s": self.optimum_s})}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def day_start_s() -> float:
    """Unix time of local midnight on `SIM_DATE` (rules see local time of day)."""
    y, m, d = SIM_DATE
    return time.mktime((y, m, d, 0, 0, 0, 0, 0, -1))


def _max_in_window(times: list[float], window_s: float = WINDOW_S) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _house_ma(watts: tuple[int, int, int]) -> Phases:
    return tuple(round(w * 1000 / VOLTAGE_V) for w in watts)  # type: ignore[return-value]


def _pv_ma(watts: int) -> Phases:
    per = round(watts * 1000 / VOLTAGE_V / 3)
    return (per, per, per)


def _stored_wh(car: VirtualCar, plan: CarPlan) -> float:
    """What `car` took since it arrived with what `plan` says it needs."""
    start_pct = max(0.0, 100.0 * (1 - plan.need_wh / plan.capacity_wh))
    return (car.soc_pct - start_pct) / 100.0 * car.capacity_wh


def _draw(driver: SimEvse) -> Phases:
    """What the car behind `driver` draws now (wallbox frame)."""
    return driver.car.draw_ma(driver.offered_ma, driver.enabled, 1 if driver.one_phase else 3)


async def simulate(setup: DaySetup, config: Hysteresis) -> RunReport:
    """Run the real control cycle through the day with one hysteresis configuration."""
    from chargebrain.app import ChargeBrain, Settings  # the app imports sim.demo: no circle

    report = RunReport(config.label)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chargebrain-simday-") as tmp:
        settings = Settings(data_dir=Path(tmp), host="127.0.0.1", port=0, modbus_port=0,
                            ocpp_port=0, cycle_ms=int(min(60000, max(250, setup.step_s * 1000))))
        app = ChargeBrain(settings)
        try:
            await _run(app, setup, config, report)
        finally:
            await app.stop()
    report.wall_s = time.perf_counter() - began
    return report


def _params(setup: DaySetup, config: Hysteresis, report: RunReport) -> dict[str, Any]:
    wanted: dict[str, Any] = {"max_total_current": setup.limit_ma}
    wanted.update(dict(setup.extra_params))
    wanted.update(dict(config.params))
    known = {k: v for k, v in wanted.items() if k in SPECS}
    report.params_ignored = sorted(k for k in wanted if k not in SPECS)
    report.params_set = known
    return known


async def _add(app: Any, raw: dict[str, Any]) -> str:
    change = app.devices.prepare(raw)
    await app.devices.save(change)
    return str(change.config.dev_id)


async def _run(app: Any, setup: DaySetup, config: Hysteresis, report: RunReport) -> None:
    t0 = day_start_s()
    clock = _Clock(t0 + setup.start_h * 3600)
    app.devices.clock = clock
    app.cycle.clock = clock
    app.params.apply(app.params.validate_updates(_params(setup, config, report)))
    timeout_ms = int(min(600_000, max(30_000, 6 * setup.step_s * 1000)))
    grid_id = await _add(app, {"dev_type": "meter_ajax", "name": "Sim-Grid", "role": 3,
                               "com_timeout_ms": timeout_ms})
    pv_id = await _add(app, {"dev_type": "meter_sim", "name": "Sim-PV", "role": 2})
    rule = {"days": 127, "mode": 5, "enabled": True, "udur": config.udur_s, "time": 0,
            "dur": 1440, "current": 0}
    box_ids: dict[str, str] = {}
    for car in setup.cars:
        box_ids[car.name] = await _add(app, {
            "dev_type": "evse_sim", "name": f"Sim-Wallbox {car.name}",
            "max_charging_cur": car.max_ma, "min_charging_cur": setup.min_ma,
            "phase_rotation": car.rotation_deg, "charging_rules": [rule]})
    drivers = {name: app.devices.get(d).driver for name, d in box_ids.items()}
    grid_dev = app.devices.get(grid_id)
    pv_driver = app.devices.get(pv_id).driver
    assert isinstance(pv_driver, SimMeter) and isinstance(grid_dev.driver, AjaxMeter)
    plans = {c.name: c for c in setup.cars}
    stats = {c.name: CarStats(need_wh=c.need_wh) for c in setup.cars}
    events: dict[str, dict[str, list[float]]] = {c.name: {"start": [], "stop": []}
                                                 for c in setup.cars}
    drawing = dict.fromkeys(plans, False)
    last_one_phase: dict[str, bool | None] = dict.fromkeys(plans)
    profile = setup.profile
    limit = setup.limit_ma
    for second in setup.seconds:
        s = min(DAY_S - 1, int(second))
        clock.now = t0 + second
        pv_w = profile.pv_w[s]
        house_w = profile.house_w[s]
        house_ma, pv_ma = _house_ma(house_w), _pv_ma(pv_w)
        pv_driver.set_power_w(pv_w)
        draw: Phases = ZERO
        for name, driver in drivers.items():
            draw = add(draw, rotate_phases(_draw(driver), plans[name].rotation_deg))
        grid_ma = tuple(h + c - p for h, c, p in zip(house_ma, draw, pv_ma, strict=True))
        power = round(sum(grid_ma) * VOLTAGE_V / 1000)
        app.devices.push(grid_dev, MeterReading(currents_ma=grid_ma,  # type: ignore[arg-type]
                                                voltages_v=(VOLTAGE_V,) * 3, power_w=power,
                                                model="chargebrain,Sim-Grid,1.0,simday"),
                         clock.now)
        await app.cycle.run_once(clock.now)
        report.cycles += 1
        # arrivals and departures (after this step's cycle: see the module docstring)
        for name, driver in drivers.items():
            plan = plans[name]
            here = plan.present(second)
            if here and not driver.car.plugged:
                soc = 100.0 * (1 - plan.need_wh / plan.capacity_wh)
                driver.car = VirtualCar(plugged=True, phases=3, max_current_ma=plan.max_ma,
                                        soc_pct=max(0.0, soc), capacity_wh=plan.capacity_wh)
                stats[name].sessions += 1
                stats[name].phase_switches.append(0)
                last_one_phase[name] = driver.one_phase
            elif not here and driver.car.plugged:
                stats[name].battery_wh += _stored_wh(driver.car, plan)
                driver.car = driver.car.replace(plugged=False)
        # what flows until the next step
        step_s = min(setup.step_s, setup.end_h * 3600 - second)
        cars_ma: Phases = ZERO
        cars_w = 0.0
        car_w: dict[str, float] = {}
        drawn: dict[str, Phases] = {}
        for name, driver in drivers.items():
            car = driver.car
            supply = 1 if driver.one_phase else 3
            _, step = car.charge(driver.offered_ma, driver.enabled, step_s,
                                 supply_phases=supply, voltage_v=VOLTAGE_V)
            watts = step.energy_wh * 3600 / step_s if step_s > 0 else 0.0
            car_w[name] = watts
            drawn[name] = step.currents_ma
            cars_w += watts
            stats[name].energy_wh += step.energy_wh
            cars_ma = add(cars_ma, rotate_phases(step.currents_ma, plans[name].rotation_deg))
            on = step.energy_wh > 0
            if on != drawing[name]:
                events[name]["start" if on else "stop"].append(second)
                drawing[name] = on
            if car.plugged and last_one_phase[name] is not None and (
                    driver.one_phase != last_one_phase[name]):
                stats[name].phase_switches[-1] += 1
            if car.plugged:
                last_one_phase[name] = driver.one_phase
        at_grid = tuple(h + c - p for h, c, p in zip(house_ma, cars_ma, pv_ma, strict=True))
        report.trace.append(TraceRow(second, pv_w, sum(house_w), at_grid,  # type: ignore[arg-type]
                                     drawn, {n: d.one_phase for n, d in drivers.items()}))
        for p in range(3):
            over = at_grid[p] - limit
            if over > 0:
                report.limit_excess_count += 1
                report.limit_excess_max_ma = max(report.limit_excess_max_ma, over)
                break
        hours = step_s / 3600
        house_total = sum(house_w)
        surplus_w = max(0.0, pv_w - house_total)
        pv_cars_w = min(cars_w, surplus_w)
        for name, watts in car_w.items():
            if cars_w > 0:
                stats[name].pv_wh += pv_cars_w * watts / cars_w * hours
        report.pv_to_cars_wh += pv_cars_w * hours
        report.energy_to_cars_wh += cars_w * hours
        report.pv_wh += pv_w * hours
        report.house_wh += house_total * hours
        net_w = house_total + cars_w - pv_w
        report.pv_self_consumed_wh += (pv_w - max(0.0, -net_w)) * hours
        report.grid_import_wh += max(0.0, net_w) * hours
        report.grid_export_wh += max(0.0, -net_w) * hours
        if any(d.car.wants_current() for d in drivers.values()):
            report.export_while_car_waits_wh += max(0.0, -net_w) * hours
    report.grid_for_charging_wh = report.energy_to_cars_wh - report.pv_to_cars_wh
    # the drivers' cars up to the window's end: their charge must match the books
    await app.devices.read_all(t0 + setup.end_h * 3600)
    for name, driver in drivers.items():
        if driver.car.plugged:
            stats[name].battery_wh += _stored_wh(driver.car, plans[name])
    for name, st in stats.items():
        st.starts = len(events[name]["start"])
        st.stops = len(events[name]["stop"])
        st.max_starts_10min = _max_in_window(events[name]["start"])
        st.max_stops_10min = _max_in_window(events[name]["stop"])
        st.max_switches_10min = _max_in_window(sorted(events[name]["start"]
                                                      + events[name]["stop"]))
    report.cars = stats


def lp_day(setup: DaySetup) -> day_lp.LpDay:
    """The simulated window as LP input: per LP step, the averages of the simulation's
    step-held values (so the LP sees exactly the energy the simulation plays)."""
    seconds = setup.seconds
    per = max(1, round(setup.lp_step_s / setup.step_s))
    pv: list[float] = []
    surplus: list[float] = []
    house: list[tuple[float, float, float]] = []
    present: dict[str, list[float]] = {c.name: [] for c in setup.cars}
    for k in range(0, len(seconds), per):
        chunk = seconds[k:k + per]
        weights = [min(setup.step_s, setup.end_h * 3600 - s) for s in chunk]
        total = sum(weights)
        idx = [min(DAY_S - 1, int(s)) for s in chunk]
        pv.append(sum(setup.profile.pv_w[i] * w for i, w in zip(idx, weights, strict=True))
                  / total)
        surplus.append(sum(max(0.0, setup.profile.pv_w[i] - sum(setup.profile.house_w[i])) * w
                           for i, w in zip(idx, weights, strict=True)) / total)
        house.append(tuple(  # type: ignore[arg-type]
            sum(_house_ma(setup.profile.house_w[i])[p] * w
                for i, w in zip(idx, weights, strict=True)) / total for p in range(3)))
        for car in setup.cars:
            # the car is there from the step after its arrival's cycle (see the docstring)
            here = sum(w for s, w in zip(chunk, weights, strict=True)
                       if car.present(s)) / total
            present[car.name].append(here)
    step = setup.step_s * per
    # a last, shorter chunk is stretched to a full LP step: scale its values so the energy
    # stays the same (the window's end need not fall on an LP step boundary)
    last_total = sum(min(setup.step_s, setup.end_h * 3600 - s)
                     for s in seconds[(len(pv) - 1) * per:])
    if pv and last_total < step:
        f = last_total / step
        pv[-1] *= f
        surplus[-1] *= f
        house[-1] = tuple(h * f for h in house[-1])  # type: ignore[assignment]
        for car in setup.cars:
            present[car.name][-1] *= f
    cars = tuple(day_lp.LpCar(c.name, tuple(present[c.name]), c.need_wh, c.max_ma,
                              c.rotation_deg) for c in setup.cars)
    return day_lp.LpDay(step, tuple(pv), tuple(house), setup.limit_ma, VOLTAGE_V, cars,
                        tuple(surplus))


def run_day(setup: DaySetup, configs: tuple[Hysteresis, ...] = CONFIGS) -> DayReport:
    """Simulate every configuration and solve the optimum (blocking; see the docstring)."""
    runs = [asyncio.run(simulate(setup, c)) for c in configs]
    began = time.perf_counter()
    best = day_lp.solve(lp_day(setup))
    solve_s = time.perf_counter() - began
    info = {"profile": setup.profile.source, "step_s": setup.step_s,
            "window_h": [setup.start_h, setup.end_h], "limit_ma": setup.limit_ma,
            "min_ma": setup.min_ma, "lp_step_s": setup.lp_step_s,
            "cars": [asdict(c) for c in setup.cars],
            "pv_wh": round(setup.profile.energy_wh(int(setup.start_h * 3600),
                                                   int(setup.end_h * 3600))[0], 1)}
    return DayReport(info, runs, best.pv_to_cars_wh, best.car_wh, solve_s)


def format_text(report: DayReport) -> str:
    """The side-by-side table of the runs and the optimum."""
    runs = report.runs
    names = [c["name"] for c in report.setup["cars"]]
    head = ["", *[r.label for r in runs], "optimum"]
    rows: list[list[str]] = []

    def kwh(wh: float) -> str:
        return f"{wh / 1000:.2f}"

    rows.append(["energy to cars (kWh)", *[kwh(r.energy_to_cars_wh) for r in runs],
                 kwh(sum(report.optimum_car_wh.values()))])
    for n in names:
        rows.append([f"  car {n} (kWh, needs {kwh(runs[0].cars[n].need_wh)})",
                     *[kwh(r.cars[n].energy_wh) for r in runs],
                     kwh(report.optimum_car_wh.get(n, 0.0))])
    rows.append(["PV into cars (kWh)", *[kwh(r.pv_to_cars_wh) for r in runs],
                 kwh(report.optimum_pv_to_cars_wh)])
    rows.append(["PV into cars (% of optimum)",
                 *[f"{report.pv_share_pct(r):.1f}" for r in runs], "100.0"])
    rows.append(["grid import for charging (kWh)",
                 *[kwh(r.grid_for_charging_wh) for r in runs], ""])
    rows.append(["PV self-consumption (%)", *[f"{r.self_consumption_pct:.1f}" for r in runs],
                 ""])
    rows.append(["PV exported while a car waited (kWh)",
                 *[kwh(r.export_while_car_waits_wh) for r in runs], ""])
    for n in names:
        rows.append([f"car {n} starts / stops",
                     *[f"{r.cars[n].starts} / {r.cars[n].stops}" for r in runs], ""])
        rows.append([f"car {n} max starts / stops in 10 min",
                     *[f"{r.cars[n].max_starts_10min} / {r.cars[n].max_stops_10min}"
                       for r in runs], ""])
        rows.append([f"car {n} phase switches per session",
                     *[",".join(map(str, r.cars[n].phase_switches)) or "-" for r in runs], ""])
    rows.append(["limit excess (count / max mA)",
                 *[f"{r.limit_excess_count} / {r.limit_excess_max_ma}" for r in runs], ""])
    rows.append(["cycles (wall s)", *[f"{r.cycles} ({r.wall_s:.1f})" for r in runs],
                 f"LP {report.optimum_s:.2f} s"])
    for target in ("no_limit_excess", "le_1_start_stop_per_car_per_10min",
                   "le_4_phase_switches_per_session", "pv_into_cars_ge_90pct_of_optimum"):
        rows.append([f"target {target}",
                     *["met" if report.targets(r)[target] else "MISSED" for r in runs], ""])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in [head, *rows]]
    s = report.setup
    intro = (f"simulated day: {s['profile']}, PV {s['pv_wh'] / 1000:.1f} kWh in the window "
             f"{s['window_h'][0]:g}–{s['window_h'][1]:g} h, step {s['step_s']:g} s, site limit "
             f"{s['limit_ma'] / 1000:g} A/phase, LP step {s['lp_step_s']:g} s")
    notes = [f"note: {r.label}: params unknown to this build, ignored: "
             f"{', '.join(r.params_ignored)}" for r in runs if r.params_ignored]
    return "\n".join([intro, *lines, *notes])


def write_trace(run: RunReport, path: Path) -> None:
    """One CSV row per step of `run`: time, PV, house, grid phases, each car's phases and
    contactor (for plots and for tuning the surplus controller)."""
    import csv

    names = sorted(run.cars)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time_s", "pv_w", "house_w", "grid_l1_ma", "grid_l2_ma", "grid_l3_ma",
                         *[f"car_{n}_{x}" for n in names
                           for x in ("l1_ma", "l2_ma", "l3_ma", "one_phase")]])
        for row in run.trace:
            cells: list[Any] = [round(row.second), row.pv_w, row.house_w, *row.grid_ma]
            for n in names:
                cells += [*row.cars_ma.get(n, ZERO), int(row.one_phase.get(n, False))]
            writer.writerow(cells)


def profile_for(seed: int, path: Path | None) -> DayProfile:
    """The generated day of `seed`, or the recorded one in `path`."""
    if path is not None:
        from chargebrain.sim.day_profile import read_csv
        return read_csv(path)
    return generate(seed)
