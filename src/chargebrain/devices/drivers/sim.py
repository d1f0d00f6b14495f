"""Simulated devices (`evse_sim`, `meter_sim`): no hardware, physics good enough for tests.

A `SimEvse` owns a `VirtualCar` (sim/vehicle.py). Every `read(now_s)` advances the car by the
time since the previous read at the current applied by the last `apply()`, so the car charges
at what load management gives it. It has no energy meter: like any meterless EVSE its energy is
the registry's soft meter. `cmd=sim_vehicle` plugs cars in and out by replacing `car`.

A `SimMeter` reports a constant load (positive W) or generation (negative W), spread evenly
over its phases; its import/export counters integrate that power over time.
"""

from __future__ import annotations

from chargebrain.devices.base import (
    STATE_CHARGING,
    STATE_STANDBY,
    STATE_VEHICLE_DETECTED,
    EvseCapabilities,
    EvseReading,
    EvseSetpoint,
    MeterReading,
)
from chargebrain.devices.status import integrate_wh
from chargebrain.sim.vehicle import VirtualCar
from chargebrain.units import ALL_PHASES_MASK, Phases, current_ma, phase_count

SIM_MODEL = "chargebrain,Sim,1.0,sim"
SIM_EVSE = EvseCapabilities(phase_switching=True)


class SimEvse:
    """A simulated wallbox with a virtual car behind it."""

    def __init__(self, *, voltage_v: int) -> None:
        self.voltage_v = voltage_v
        self.car = VirtualCar()
        self.offered_ma = 0
        self.enabled = False
        self.one_phase = False  # the contactor feeds the car on L1 only
        self.phase_switching = True  # may switch 1p/3p (the demo site turns it off)
        self._last_s: float | None = None
        self._currents: Phases = (0, 0, 0)
        self._power_w = 0

    async def read(self, now_s: float) -> EvseReading:
        dt = 0.0 if self._last_s is None else now_s - self._last_s
        self._last_s = now_s
        offered = self.offered_ma
        supply = 1 if self.one_phase else 3
        self.car, _ = self.car.charge(offered, self.enabled, dt, supply_phases=supply,
                                      voltage_v=self.voltage_v)
        # what the car draws from now on (the step above covers the time already passed)
        self._currents = self.car.draw_ma(offered, self.enabled, supply)
        self._power_w = round(sum(self._currents) * self.voltage_v / 1000)
        if not self.car.plugged:
            state = STATE_STANDBY
        elif self._power_w > 0:
            state = STATE_CHARGING
        else:
            state = STATE_VEHICLE_DETECTED
        return EvseReading(
            state=state,
            currents_ma=self._currents,
            power_w=self._power_w,
            total_energy_wh=None,  # no meter: the registry's soft meter counts the energy
            model=SIM_MODEL,
            cable_max_ma=self.car.max_current_ma if self.car.plugged else 0,
            current_limit_ma=self.offered_ma,
            offered_ma=self.offered_ma if self.enabled else 0,
            enabled=self.enabled,
            rfid=self.car.rfid if self.car.plugged else "",
            phase_switching=self.phase_switching,
        )

    @property
    def capabilities(self) -> EvseCapabilities:
        """Limits kept to the mA, no maximum of its own, phase switching (`SIM_EVSE`)."""
        return SIM_EVSE

    async def apply(self, setpoint: EvseSetpoint) -> None:
        self.offered_ma = setpoint.current_ma if setpoint.enabled else 0
        self.enabled = setpoint.charging_allowed
        if setpoint.one_phase is not None:
            self.one_phase = setpoint.one_phase

    async def close(self) -> None:
        """Nothing to release."""


class SimCarSlot:
    """The car of a `SimEvse`, as `cmd=sim_vehicle` plugs and changes it (its CarSlot)."""

    def __init__(self, driver: SimEvse, dev_id: str) -> None:
        self.driver = driver
        self.dev_id = dev_id

    def get_car(self) -> VirtualCar:
        return self.driver.car

    def set_car(self, car: VirtualCar, now_s: float, *, rfid_presented: bool) -> None:
        """Replace the car; it shows (and charges) from the wallbox's next read. The RFID is
        part of the car and is reported while it is plugged in."""
        self.driver.car = car


class SimMeter:
    """A simulated meter with a settable constant power."""

    def __init__(self, *, power_w: int, phases_mask: int, voltage_v: int) -> None:
        self.power_w = power_w
        self.phases_mask = phases_mask & ALL_PHASES_MASK or ALL_PHASES_MASK
        self.voltage_v = voltage_v
        self.import_wh = 0.0
        self.export_wh = 0.0
        self._last_s: float | None = None

    def set_power_w(self, power_w: int) -> None:
        """Change the simulated load (positive) or generation (negative)."""
        self.power_w = power_w

    async def read(self, now_s: float) -> MeterReading:
        if self._last_s is not None:
            dt = now_s - self._last_s
            self.import_wh = integrate_wh(self.import_wh, self.power_w, dt)
            self.export_wh = integrate_wh(self.export_wh, -self.power_w, dt)
        self._last_s = now_s
        per_phase = current_ma(self.power_w, self.voltage_v, phase_count(self.phases_mask))
        currents = tuple(per_phase if self.phases_mask & (1 << i) else 0 for i in range(3))
        return MeterReading(
            currents_ma=currents,  # type: ignore[arg-type]
            voltages_v=(self.voltage_v,) * 3,  # type: ignore[arg-type]
            power_w=self.power_w,
            import_wh=int(self.import_wh),
            export_wh=int(self.export_wh),
            model=SIM_MODEL,
        )

    async def close(self) -> None:
        """Nothing to release."""
