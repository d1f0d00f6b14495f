"""The `--demo` site: a simulated home in which load management visibly works.

`chargebrain serve --demo` adds, next to the factory devices (E1, M1, M2):

| device | type | what it does |
|---|---|---|
| Sim-Carport | `evse_group` | a 20 A feeder for wallboxes 2 and 3 |
| Sim-Wallbox 1 | `evse_sim` | 32 A box, 3-phase car up to 32 A, wired 0° |
| Sim-Wallbox 2 | `evse_sim` | 16 A box in the carport, 1-phase car up to 16 A, wired 120° (→ L2) |
| Sim-Wallbox 3 | `evse_sim` | 16 A box in the carport, 3-phase car up to 16 A, wired 240° |
| Sim-House | `meter_sim`, consumption | base load, kettles, cooking peaks (up to ≈ 8 kW) |
| Sim-PV | `meter_sim`, production | an 8 kWp day curve with passing clouds |
| Sim-Grid | `meter_ajax`, grid | computed per phase: house + cars − PV (as the original) |
| VM … | virtual meters | EVSE power, power available for EVSEs, surplus |
| Sim-OCPP-Wallbox | `evse_ocpp` | OCPP server on: an in-process OCPP charge point (ocpp_demo.py) |

and, on its first install only, sets the site limit to 25 A per phase with a 1 A reserve (passing
clouds change the load between cycles), the minimum pause to 60 s and the minimum run time to
120 s (so pauses and round-robin rotation show within minutes).

Decision: the demo devices are created on the first `--demo` start and remembered (key/value
namespace `demo`); later `--demo` starts reuse them, re-create the ones that were deleted and
keep any change made to them. Without `--demo` they stay configured but nothing animates them
(the grid meter then goes stale and load management falls back to its worst case).

Simulated time: one day lasts `DAY_S` seconds of wall time and starts at `START_HOUR`
(17:00, all three cars plugged in, evening peak ahead). Cars arrive and leave on a fixed
schedule; they charge in real time at what load management gives them. A scheduled plug event
is applied once, so `cmd=sim_vehicle` changes in between are kept until the next event.

`DemoSite.step(now_s)` runs at the start of every control cycle (`app.cycle.before_cycle`),
before the devices are read, so the grid meter always matches what the cars draw now.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chargebrain.devices.base import MeterReading
from chargebrain.devices.drivers.ajax import AjaxMeter
from chargebrain.devices.drivers.sim import SimEvse, SimMeter
from chargebrain.devices.status import integrate_wh
from chargebrain.sim import ocpp_demo
from chargebrain.sim.vehicle import VirtualCar
from chargebrain.units import ZERO, Phases, add, current_ma, rotate_phases

if TYPE_CHECKING:
    from chargebrain.app import ChargeBrain

log = logging.getLogger(__name__)

DEMO_NS = "demo"
DAY_S = 1200.0  # one simulated day lasts 20 minutes
START_HOUR = 17.0
DEMO_PARAMS = {"title": "chargebrain demo", "max_total_current": 25000,
               "reserve_current": 1000, "min_pause_time": 60, "min_run_time": 120}


@dataclass(frozen=True, slots=True)
class Visit:
    """A car parked at a wallbox from `arrive_h` to `leave_h` (may wrap past midnight)."""

    arrive_h: float
    leave_h: float
    soc_pct: float

    def covers(self, hour: float) -> bool:
        if self.arrive_h <= self.leave_h:
            return self.arrive_h <= hour < self.leave_h
        return hour >= self.arrive_h or hour < self.leave_h


@dataclass(frozen=True, slots=True)
class DemoBox:
    key: str
    name: str
    desc: str
    max_ma: int
    rotation: int
    in_carport: bool
    car: VirtualCar  # the car that visits (unplugged template)
    visits: tuple[Visit, ...]

    def visit_at(self, hour: float) -> Visit | None:
        return next((v for v in self.visits if v.covers(hour)), None)


BOXES = (
    DemoBox("wallbox1", "Sim-Wallbox 1", "22 kW box, 3-phase car up to 32 A", 32000, 0, False,
            VirtualCar(phases=3, max_current_ma=32000, capacity_wh=77000),
            (Visit(16.5, 7.5, 35.0),)),
    DemoBox("wallbox2", "Sim-Wallbox 2", "carport, 1-phase car up to 16 A", 16000, 120, True,
            VirtualCar(phases=1, max_current_ma=16000, capacity_wh=40000),
            (Visit(17.0, 23.0, 25.0), Visit(9.0, 15.0, 60.0))),
    DemoBox("wallbox3", "Sim-Wallbox 3", "carport, 3-phase car up to 16 A", 16000, 240, True,
            VirtualCar(phases=3, max_current_ma=16000, capacity_wh=58000),
            (Visit(16.8, 20.0, 50.0), Visit(21.0, 8.0, 40.0), Visit(12.0, 16.0, 70.0))),
)


def house_w(hour: float) -> int:
    """The house's consumption at a time of day (W): base load, kettles, cooking peaks."""
    load = 400.0
    if 6.5 <= hour < 8.0:
        load += 900  # breakfast
    if 19.0 <= hour < 23.0:
        load += 600  # evening
    if 12.0 <= hour < 13.0:
        load += 2500  # lunch
    if 18.0 <= hour < 18.75:
        load += 7000  # dinner: everything on at once
    if hour % 2.0 < 0.1:
        load += 2000  # a kettle every two hours
    return round(load)


def pv_w(hour: float) -> int:
    """An 8 kWp PV system's production at a time of day (W), with passing clouds."""
    if not 6.0 < hour < 20.0:
        return 0
    sun = math.sin(math.pi * (hour - 6.0) / 14.0) ** 1.5
    clouds = 0.8 + 0.2 * math.sin(hour * 7.1) * math.sin(hour * 2.3)
    return round(8000 * sun * clouds)


def spread_ma(power_w: int, voltage_v: int) -> Phases:
    """A balanced three-phase load's current on each phase."""
    per_phase = current_ma(power_w, voltage_v, 3)
    return (per_phase, per_phase, per_phase)


class DemoSite:
    """Installs and animates the demo site of one app (see the module docstring)."""

    def __init__(self, app: ChargeBrain, *, day_s: float = DAY_S,
                 start_hour: float = START_HOUR) -> None:
        self.app = app
        self.day_s = day_s
        self.start_hour = start_hour
        self.ids: dict[str, str] = {}
        self._t0: float | None = None
        self._scheduled: dict[str, bool] = {}
        self._grid_import_wh = 0.0
        self._grid_export_wh = 0.0
        self._grid_last_s: float | None = None
        self.ocpp_box: ocpp_demo.DemoOcppBox | None = None

    async def close(self) -> None:
        """Stop the simulated OCPP box (at app stop)."""
        if self.ocpp_box is not None:
            await self.ocpp_box.stop()
            self.ocpp_box = None

    # -- installation ---------------------------------------------------------------------------

    def _specs(self, carport_group: int) -> list[tuple[str, dict[str, Any]]]:
        grid_timeout = max(30000, 3 * self.app.settings.cycle_ms)
        specs: list[tuple[str, dict[str, Any]]] = []
        for box in BOXES:
            specs.append((box.key, {
                "dev_type": "evse_sim", "name": box.name, "desc": box.desc,
                "max_charging_cur": box.max_ma, "phase_rotation": box.rotation,
                "group": carport_group if box.in_carport else 0}))
        specs += [
            ("house", {"dev_type": "meter_sim", "name": "Sim-House", "role": 1,
                       "desc": "house consumption (simulated)"}),
            ("pv", {"dev_type": "meter_sim", "name": "Sim-PV", "role": 2,
                    "desc": "8 kWp PV system (simulated)"}),
            ("grid", {"dev_type": "meter_ajax", "name": "Sim-Grid", "role": 3,
                      "desc": "grid connection: house + cars − PV (simulated)",
                      "com_timeout_ms": grid_timeout}),
            ("vm_evse", {"dev_type": "meter_virtual_evse_power", "name": "VM EVSE Power"}),
            ("vm_avail", {"dev_type": "meter_virtual_available_evse_power",
                          "name": "VM Power avail. for EVSEs"}),
            ("vm_surplus", {"dev_type": "meter_virtual_surplus", "name": "VM Surplus"}),
        ]
        if self.app.ocpp is not None:
            specs.append(("ocpp", {"dev_type": "evse_ocpp", "name": "Sim-OCPP-Wallbox",
                                   "desc": "OCPP 1.6J box (simulated charge point)",
                                   "address": ocpp_demo.BOX_ID, "id": 1,
                                   "max_charging_cur": 16000}))
        return specs

    async def install(self) -> None:
        """Create the demo devices that are missing, then animate them every cycle."""
        app = self.app
        registry = app.devices
        stored = app.store.kv_get(DEMO_NS, "devices") or {}
        first = not stored
        self.ids = {k: v for k, v in stored.items() if isinstance(v, str)}
        carport = await self._ensure("carport", {"dev_type": "evse_group", "name": "Sim-Carport",
                                                 "max_charging_cur": 20000})
        carport_device = registry.get(carport)
        group_id = carport_device.number if carport_device is not None else 0
        for key, raw in self._specs(group_id):
            await self._ensure(key, raw)
        app.store.kv_set(DEMO_NS, "devices", self.ids)
        if first:
            app.params.apply(app.params.validate_updates(DEMO_PARAMS))
        if self.step not in app.cycle.before_cycle:
            app.cycle.before_cycle.append(self.step)
        if app.ocpp is not None and app.ocpp.port is not None and self.ocpp_box is None:
            host = app.settings.host if app.settings.host not in ("0.0.0.0", "::", "") else (
                "127.0.0.1")
            self.ocpp_box = ocpp_demo.DemoOcppBox(
                f"ws://{host}:{app.ocpp.port}", interval_s=min(10.0, app.settings.cycle_ms / 1000),
                voltage_v=int(app.params["system_voltage"]))
            self.ocpp_box.start()
        log.info("demo site ready: %s", ", ".join(f"{k}={v}" for k, v in self.ids.items()))

    async def _ensure(self, key: str, raw: dict[str, Any]) -> str:
        registry = self.app.devices
        dev_id = self.ids.get(key)
        device = registry.get(dev_id) if dev_id else None
        if device is not None and device.config.dev_type == raw["dev_type"]:
            return device.dev_id
        change = registry.prepare(dict(raw))
        await registry.save(change)
        self.ids[key] = change.config.dev_id
        return change.config.dev_id

    # -- animation ------------------------------------------------------------------------------

    def hour(self, now_s: float) -> float:
        """The simulated time of day (0–24 h) at `now_s`."""
        if self._t0 is None:
            self._t0 = now_s
        return (self.start_hour + (now_s - self._t0) * 24.0 / self.day_s) % 24.0

    def _device(self, key: str) -> Any:
        dev_id = self.ids.get(key)
        return self.app.devices.get(dev_id) if dev_id else None

    def step(self, now_s: float) -> None:
        """Advance the simulated world to `now_s` (called before each cycle's reads)."""
        hour = self.hour(now_s)
        volts = int(self.app.params["system_voltage"])
        house, pv = house_w(hour), pv_w(hour)
        for key, power in (("house", house), ("pv", pv)):
            device = self._device(key)
            if device is not None and isinstance(device.driver, SimMeter):
                device.driver.set_power_w(power)
        draw: Phases = ZERO
        demo_boxes = set()
        for box in BOXES:
            device = self._device(box.key)
            if device is None or not isinstance(device.driver, SimEvse):
                continue
            demo_boxes.add(device.dev_id)
            self._plug(box, device.driver, hour)
            driver = device.driver
            # The demo's boxes are fixed installations without 1p/3p switching: its dinner
            # peak is meant to show pauses and rotation.
            driver.phase_switching = False
            # the box's contactor may feed the car on its L1 alone (automatic phase switching)
            own = driver.car.draw_ma(driver.offered_ma, driver.enabled,
                                     1 if driver.one_phase else 3)
            draw = add(draw, rotate_phases(own, getattr(device.config, "phase_rotation", 0)))
        for device in self.app.devices.evses():  # other wallboxes as last measured
            if device.dev_id in demo_boxes or device.status.evse_reading is None:
                continue
            measured = self.app.devices.evse_measurement(device).currents_ma
            draw = add(draw, rotate_phases(measured, getattr(device.config, "phase_rotation", 0)))
        house_ma, pv_ma = spread_ma(house, volts), spread_ma(pv, volts)
        grid_ma = tuple(h + e - p for h, e, p in zip(house_ma, draw, pv_ma, strict=True))
        self._push_grid(grid_ma, volts, now_s)  # type: ignore[arg-type]

    def _plug(self, box: DemoBox, driver: SimEvse, hour: float) -> None:
        visit = box.visit_at(hour)
        scheduled = visit is not None
        if self._scheduled.get(box.key) == scheduled:
            return  # no scheduled event since the last step: leave manual changes alone
        self._scheduled[box.key] = scheduled
        if visit is not None:
            driver.car = box.car.replace(plugged=True, soc_pct=visit.soc_pct)
        else:
            driver.car = driver.car.replace(plugged=False)

    def _push_grid(self, grid_ma: Phases, volts: int, now_s: float) -> None:
        device = self._device("grid")
        if device is None or not isinstance(device.driver, AjaxMeter):
            return
        power = round(sum(grid_ma) * volts / 1000)
        if self._grid_last_s is not None:
            dt = now_s - self._grid_last_s
            self._grid_import_wh = integrate_wh(self._grid_import_wh, power, dt)
            self._grid_export_wh = integrate_wh(self._grid_export_wh, -power, dt)
        self._grid_last_s = now_s
        reading = MeterReading(currents_ma=grid_ma, voltages_v=(volts, volts, volts),
                               power_w=power, import_wh=int(self._grid_import_wh),
                               export_wh=int(self._grid_export_wh),
                               model="chargebrain,Sim-Grid,1.0,demo")
        self.app.devices.push(device, reading, now_s)
