"""The one small driver protocol, and the readings and setpoints that cross it.

A driver talks to one device. Every driver can `read(now_s)`; EVSE drivers can also
`apply(setpoint)` and may declare their `EvseCapabilities` (setpoint step, maximum, phase
switching); a device that sends its data instead of being polled (HTTP input) has a
`PushDriver`, which takes `push(reading, now_s)`. A driver raises `DeviceError`
(or lets a timeout/OSError escape) when the device does not answer; the registry turns that
into the device's COM-error status, so drivers stay free of bookkeeping. Readings are raw: the
registry applies a meter's `factor`/`invert`.

Units: currents in mA per phase (the EVSE's own phase order for EVSEs, the meter's for meters),
voltages in V, power in W (signed for meters: negative = export), energy in Wh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from chargebrain.units import ZERO, Phases

# API state scale of get_dev_info (not the 0-based register 8092 scale).
STATE_STANDBY = 1
STATE_VEHICLE_DETECTED = 2
STATE_CHARGING = 3
STATE_VENTILATION = 4
STATE_ERROR = 5
STATE_OFFLINE = 6


class DeviceError(Exception):
    """The device did not answer, or answered something unusable (a COM error)."""


@dataclass(frozen=True, slots=True)
class EvseReading:
    """What an EVSE reports. `state` uses the API scale 1–5 (6 offline is the registry's)."""

    state: int = STATE_STANDBY
    currents_ma: Phases = ZERO  # per EVSE phase, L1..L3 of the wallbox
    power_w: int = 0
    total_energy_wh: int | None = None  # None: the EVSE has no energy meter (soft meter counts)
    model: str = ""
    cable_max_ma: int = 0  # most the cable/car/fixed setting allows; 0 = unknown
    current_limit_ma: int = 0  # the limit the EVSE applies right now (its own view)
    offered_ma: int = 0  # what the pilot signals to the car now (0 = nothing)
    enabled: bool = True  # charging enabled at the EVSE right now
    rfid: str = ""  # last RFID/PIN seen at the wallbox, "" = none
    rfid_seq: int | None = None  # counts card readings (Power Brain 8111); None = not reported
    cp_state: str = ""  # charge-pilot text for the local Power Brain ("Standby", …)
    pp_state: str = ""  # proximity-pilot text ("no cable", "16 A cable", …)
    phase_switching: bool = False  # the box can switch 1p/3p now (EvseSetpoint.one_phase)
    inputs: int | None = None  # digital inputs now, bit0 = input 1 (Power Brain S0 inputs);
    # None = the device has none / does not report them
    min_current_ma: int = 0  # the least a charge needs, as the device reports it (a cascaded
    # manager: its cars' smallest minimum); 0 = none reported, the configured minimum counts

    @property
    def plugged(self) -> bool:
        """A vehicle is connected (states B, C, D)."""
        return self.state in (STATE_VEHICLE_DETECTED, STATE_CHARGING, STATE_VENTILATION)

    @property
    def charging(self) -> bool:
        """The vehicle draws current (states C, D)."""
        return self.state in (STATE_CHARGING, STATE_VENTILATION)

    @property
    def phases_mask(self) -> int:
        """EVSE phases drawing more than 500 mA now (bit0 L1, bit1 L2, bit2 L3)."""
        return sum(1 << i for i, c in enumerate(self.currents_ma) if c > 500)


@dataclass(frozen=True, slots=True)
class MeterReading:
    """What a meter reports. Currents and power are signed (negative = export/feed-in).

    `currents_ma` is None for a meter that measures total power only (an S0 meter without
    per-phase data, an HTTP push without `current`); consumers then spread `power_w` evenly.
    """

    currents_ma: Phases | None = None
    voltages_v: Phases = (230, 230, 230)
    power_w: int = 0
    import_wh: int = 0
    export_wh: int = 0
    soc: int | None = None  # state of charge in % for storage meters, when known
    model: str = ""
    is_va: bool | None = None  # the device says its power is VA (None: as configured)


Reading = EvseReading | MeterReading


@dataclass(frozen=True, slots=True)
class EvseSetpoint:
    """What the control cycle wants an EVSE to do. `current_ma` 0 or `enabled` False = no charge."""

    current_ma: int
    enabled: bool = True
    one_phase: bool | None = None  # True: car on the box's L1 only; False: 3p; None: as is
    end_session: bool = False  # override C: end a running session where the device can (OCPP)

    @property
    def charging_allowed(self) -> bool:
        return self.enabled and self.current_ma > 0


@runtime_checkable
class Driver(Protocol):
    """Every driver: read the device; release resources on close."""

    async def read(self, now_s: float) -> Reading:
        """Read the device now; raise DeviceError when it does not answer."""
        ...

    async def close(self) -> None:
        """Drop connections; the driver is not used afterwards."""
        ...


@runtime_checkable
class EvseDriver(Driver, Protocol):
    """An EVSE driver also takes setpoints."""

    async def apply(self, setpoint: EvseSetpoint) -> None:
        """Write the setpoint to the device; raise DeviceError when that fails."""
        ...


@dataclass(frozen=True, slots=True)
class EvseCapabilities:
    """What an EVSE's setpoints can express, as its driver declares it.

    `step_ma`: the resolution the box keeps a limit in (it reports e.g. 16.05 A as 16.0 A);
    `max_current_ma`: the highest limit it accepts (None: no limit of its own);
    `phase_switching`: it can switch between one and three phases at all (whether it may
    right now is `EvseReading.phase_switching`)."""

    step_ma: int = 1
    max_current_ma: int | None = None
    phase_switching: bool = False


EXACT_EVSE = EvseCapabilities()  # drivers that do not declare any: limits kept to the mA


@runtime_checkable
class DeclaresCapabilities(Protocol):
    """An EVSE driver that says what its setpoints can express."""

    @property
    def capabilities(self) -> EvseCapabilities:
        """The box's setpoint resolution, maximum and phase switching."""
        ...


def evse_capabilities(driver: object) -> EvseCapabilities:
    """What `driver` declares, or `EXACT_EVSE` when it declares nothing."""
    if isinstance(driver, DeclaresCapabilities):
        return driver.capabilities
    return EXACT_EVSE


@runtime_checkable
class ReportsProblems(Protocol):
    """A driver whose successful read can still leave a part out (a meter definition's `expr`
    variable that could not be computed): the registry shows it as `last_error` without a
    COM error."""

    @property
    def read_problem(self) -> str:
        """What the last successful read left out and why; "" for nothing."""
        ...


@runtime_checkable
class PushDriver(Driver, Protocol):
    """A driver whose device sends its data (set_ajax_*) instead of being polled.

    `read()` hands out the last pushed reading while it is fresh. Pushed data keeps the time it
    arrived (`pushed_s`) as its reading time: reading it again later measures nothing new.
    """

    @property
    def pushed_s(self) -> float | None:
        """When the last push arrived (None: nothing pushed yet)."""
        ...

    def push(self, reading: Reading, now_s: float) -> None:
        """Accept a pushed, already validated reading; raise TypeError for the wrong kind
        (an EVSE reading for a meter, or the other way round)."""
        ...
