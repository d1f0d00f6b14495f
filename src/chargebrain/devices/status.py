"""Runtime status of one device, and of the site: what get_dev_info shows beyond configuration.

The registry fills the communication part (last reading and its time, COM errors) when it
reads a device. The control cycle fills the control part (last setpoint, reasons, pause timers,
overrides, transaction energy) and `SiteStatus`; this module only defines and computes
them. Nothing here is persisted except the soft meter (the `device_counters` table, see
runtime.py and store.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chargebrain.devices.base import EvseReading, EvseSetpoint, MeterReading, Reading


@dataclass
class DeviceStatus:
    """Mutable per-device runtime state. Times are in the clock of the `now_s` given."""

    # communication (registry)
    reading: Reading | None = None
    reading_s: float | None = None  # when `reading` was taken
    com_err: bool = False
    com_errors: int = 0  # failed reads/writes since start or reset
    com_err_since_s: float | None = None  # start of the current outage
    last_error_s: float | None = None  # time of the most recent failure
    last_error: str = ""

    # control (the control cycle writes these; the registry records apply())
    last_setpoint: EvseSetpoint | None = None
    last_set_charging_cur_ma: int = -1  # -1 = never set
    charging_enabled: bool = True  # charging allowed by load management right now
    lreason: str = ""  # why the EVSE got its current (binding limit)
    paused: bool = False
    pause_time_s: int = 0  # elapsed in the current pause
    pause_min_time_s: int = 0  # before the pause may end
    pause_reason: str = ""
    charging_dur_s: int = 0  # of the current charging session
    ta_en_wh: int = 0  # energy of the running transaction
    needs_auth: bool = False  # waiting for RFID/PIN
    ov_cur_ma: int = 0  # override current, 0 = none
    overrides: int = 0  # bit0 C (charging disabled), bit1 E (EVSE rules off), bit2 U (user rules)

    # energy estimate for EVSEs without an energy meter (Wh, float to keep fractions)
    soft_meter_wh: float = 0.0
    soft_meter_s: float | None = None  # last integration time
    soft_meter_saved_s: float | None = None  # last time a save was due (every minute)
    soft_meter_saved_wh: float | None = None  # the value the store holds (None: unknown)

    @classmethod
    def with_soft_meter(cls, soft_meter_wh: float, saved_wh: float | None) -> DeviceStatus:
        """Fresh status (a new or rebuilt driver) that carries only the soft meter."""
        return cls(soft_meter_wh=soft_meter_wh, soft_meter_saved_wh=saved_wh)

    def com_err_secs(self, now_s: float) -> int:
        """During an outage: how long it lasts; after one: time since it; never: 0."""
        if self.com_err and self.com_err_since_s is not None:
            return max(0, int(now_s - self.com_err_since_s))
        if self.last_error_s is not None:
            return max(0, int(now_s - self.last_error_s))
        return 0

    def record_reading(self, reading: Reading, now_s: float) -> None:
        """A successful read: keep it and end any outage."""
        self.reading = reading
        self.reading_s = now_s
        self.com_err = False
        self.com_err_since_s = None

    def record_error(self, message: str, now_s: float) -> None:
        """A failed read or write: count it and mark the outage."""
        self.com_errors += 1
        self.last_error = message
        self.last_error_s = now_s
        if not self.com_err:
            self.com_err = True
            self.com_err_since_s = now_s

    def record_problem(self, message: str, now_s: float) -> None:
        """A successful read that left something out: `last_error` says what, but it is no
        COM error (not counted, no outage)."""
        self.last_error = message
        self.last_error_s = now_s

    def record_setpoint(self, setpoint: EvseSetpoint) -> None:
        """A setpoint was written (or handed to an HTTP-input EVSE)."""
        self.last_setpoint = setpoint
        self.last_set_charging_cur_ma = setpoint.current_ma if setpoint.enabled else 0
        self.charging_enabled = setpoint.charging_allowed

    @property
    def evse_reading(self) -> EvseReading | None:
        return self.reading if isinstance(self.reading, EvseReading) else None

    @property
    def meter_reading(self) -> MeterReading | None:
        return self.reading if isinstance(self.reading, MeterReading) else None


def integrate_wh(energy_wh: float, power_w: float, dt_s: float) -> float:
    """Energy after drawing `power_w` for `dt_s` (negative or huge gaps add nothing)."""
    if dt_s <= 0 or power_w <= 0 or dt_s > 3600:
        return energy_wh
    return energy_wh + power_w * dt_s / 3600.0


@dataclass
class SiteStatus:
    """Site values the control cycle computes each cycle (W unless named otherwise).

    `None` means "not computed yet"; get_dev_info then shows a value derived from
    configuration and readings (see `devices/view.py`).
    """

    cycle_time_ms: int | None = None
    cons_evse_power_w: int | None = None
    avail_evse_power_w: int | None = None
    grid_pwr_w: int | None = None
    cons_pwr_w: int | None = None
    surplus_power_w: int | None = None
    error_pwr_w: int | None = None
    max_total_current_ma: int | None = None  # evaluated site limit when it is a formula
    # ChargeBox IDs whose BootNotification the OCPP server rejected (not configured yet)
    ocpp_unknown_boxes: list[str] = field(default_factory=list)
