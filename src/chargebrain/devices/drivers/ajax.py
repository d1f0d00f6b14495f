"""HTTP-input devices (`evse_ajax`, `meter_ajax`): values pushed by set_ajax_evse/_meter.

Nobody polls these devices: they are `PushDriver`s (base.py). `push()` stores what the client
sent, `read()` hands it to the cycle until it is older than the device's timeout (then it is a
COM error, so a dead pusher is never mistaken for zero load). An HTTP-input EVSE's `apply()`
only remembers the setpoint; the pusher receives it in the answer to its next set_ajax_evse
call.

`parse_meter_push` / `parse_evse_push` turn the documented body (POST JSON, or the GET form
with comma-separated arrays) into readings; they are pure and raise `PushError` with a clear
message for anything they cannot use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from chargebrain.devices.base import (
    STATE_ERROR,
    STATE_STANDBY,
    DeviceError,
    EvseReading,
    EvseSetpoint,
    MeterReading,
    Reading,
)
from chargebrain.units import Phases
from chargebrain.values import to_bool

MAX_ABS_CURRENT_MA = 10_000_000
MAX_ABS_POWER_W = 1_000_000_000
MAX_ENERGY_WH = 10**15
MAX_VOLTAGE_V = 100_000

METER_FIELDS = {"model", "import_wh", "import_vah", "export_wh", "export_vah", "voltage",
                "current", "power_w", "power_va", "is_va", "soc"}
EVSE_FIELDS = {"state", "max_charging_current", "current", "total_energy", "model", "rfid",
               "power_w"}


class PushError(ValueError):
    """Pushed data was refused; the message names the field."""


class _Pushed:
    """Shared freshness logic: data is good for `timeout_s` after it was pushed."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.pushed_s: float | None = None  # PushDriver.pushed_s: the reading time

    def _check_fresh(self, now_s: float) -> None:
        if self.pushed_s is None:
            raise DeviceError("no data pushed yet")
        age = now_s - self.pushed_s
        if age > self.timeout_s:
            raise DeviceError(f"no data pushed for {int(age)} s")

    async def close(self) -> None:
        """Nothing to release."""


class AjaxMeter(_Pushed):
    """An HTTP-input meter."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.reading: MeterReading | None = None

    def push(self, reading: Reading, now_s: float) -> None:
        """Accept a pushed meter reading (already validated)."""
        if not isinstance(reading, MeterReading):
            raise TypeError("an HTTP-input meter takes meter readings")
        self.reading = reading
        self.pushed_s = now_s

    async def read(self, now_s: float) -> MeterReading:
        self._check_fresh(now_s)
        assert self.reading is not None
        return self.reading


class AjaxEvse(_Pushed):
    """An HTTP-input wallbox: pushes its state, receives its setpoint in the answer."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.reading: EvseReading | None = None
        self.setpoint: EvseSetpoint | None = None

    def push(self, reading: Reading, now_s: float) -> None:
        """Accept a pushed EVSE reading (already validated)."""
        if not isinstance(reading, EvseReading):
            raise TypeError("an HTTP-input wallbox takes EVSE readings")
        self.reading = reading
        self.pushed_s = now_s

    async def read(self, now_s: float) -> EvseReading:
        self._check_fresh(now_s)
        assert self.reading is not None
        return self.reading

    async def apply(self, setpoint: EvseSetpoint) -> None:
        self.setpoint = setpoint


# -- parsing ------------------------------------------------------------------------------------


def parse_meter_push(data: Mapping[str, Any], voltage_v: int,
                     previous: MeterReading | None = None) -> MeterReading:
    """A meter reading from a set_ajax_meter body (JSON object or GET parameters).

    Energy counters not sent keep their previous value (counters never drop to zero just
    because one push left them out); power is taken from `power_w`, else `power_va`, else
    computed from the phase voltages (`voltage_v` when not sent) and currents.
    """
    _refuse_unknown(data, METER_FIELDS)
    nominal = (voltage_v, voltage_v, voltage_v)
    voltages = _triple(data, "voltage", 0, MAX_VOLTAGE_V, default=nominal) or nominal
    currents = _triple(data, "current", -MAX_ABS_CURRENT_MA, MAX_ABS_CURRENT_MA, default=None)
    power = _number(data, "power_w", -MAX_ABS_POWER_W, MAX_ABS_POWER_W)
    if power is None:
        power = _number(data, "power_va", -MAX_ABS_POWER_W, MAX_ABS_POWER_W)
    if power is None:
        measured = currents or (0, 0, 0)
        power = round(sum(v * c for v, c in zip(voltages, measured, strict=True)) / 1000)
    import_wh = _number(data, "import_wh", 0, MAX_ENERGY_WH)
    if import_wh is None:
        import_wh = _number(data, "import_vah", 0, MAX_ENERGY_WH)
    export_wh = _number(data, "export_wh", 0, MAX_ENERGY_WH)
    if export_wh is None:
        export_wh = _number(data, "export_vah", 0, MAX_ENERGY_WH)
    soc = _number(data, "soc", 0, 100)
    return MeterReading(
        currents_ma=currents,
        voltages_v=voltages,
        power_w=power,
        import_wh=import_wh if import_wh is not None else (previous.import_wh if previous else 0),
        export_wh=export_wh if export_wh is not None else (previous.export_wh if previous else 0),
        soc=soc,
        model=_text(data, "model"),
        is_va=_flag(data, "is_va"),
    )


def parse_evse_push(data: Mapping[str, Any], voltage_v: int,
                    previous: EvseReading | None = None) -> EvseReading:
    """An EVSE reading from a set_ajax_evse body. `state` is 1 A … 5 E (the API scale);
    power is `power_w` when sent, else the phase currents at the system voltage."""
    _refuse_unknown(data, EVSE_FIELDS)
    state = _number(data, "state", STATE_STANDBY, STATE_ERROR, whole=True)
    currents = _triple(data, "current", 0, MAX_ABS_CURRENT_MA, default=(0, 0, 0)) or (0, 0, 0)
    power = _number(data, "power_w", 0, MAX_ABS_POWER_W)
    if power is None:
        power = round(sum(currents) * voltage_v / 1000)
    energy = _number(data, "total_energy", 0, MAX_ENERGY_WH)
    if energy is None and previous is not None:
        energy = previous.total_energy_wh
    cable = _number(data, "max_charging_current", 0, MAX_ABS_CURRENT_MA) or 0
    rfid = _text(data, "rfid", max_len=64)
    return EvseReading(
        state=state if state is not None else STATE_STANDBY,
        currents_ma=currents,
        power_w=power,
        total_energy_wh=energy,
        model=_text(data, "model"),
        cable_max_ma=cable,
        rfid=rfid,
    )


def _refuse_unknown(data: Mapping[str, Any], known: set[str]) -> None:
    for key in data:
        if key not in known:
            raise PushError(f"unknown field {key}")


def _to_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise PushError(f"{name} must be a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PushError(f"{name} must be a number") from None
    if not isinstance(value, (int, float)):
        raise PushError(f"{name} must be a number")
    if not math.isfinite(value):
        raise PushError(f"{name} must be a finite number")
    return float(value)


def _number(data: Mapping[str, Any], name: str, lo: int, hi: int, *, whole: bool = False,
            ) -> int | None:
    """A measured number, rounded to an integer (`1000.0` and `"1234.00"` are fine)."""
    if name not in data or data[name] is None:
        return None
    value = _to_float(data[name], name)
    if whole and value != int(value):
        raise PushError(f"{name} must be a whole number")
    if not lo <= value <= hi:
        raise PushError(f"{name} must be between {lo} and {hi}")
    return round(value)


def _triple(data: Mapping[str, Any], name: str, lo: int, hi: int, *, default: Phases | None,
            ) -> Phases | None:
    """Three per-phase values: a JSON array, or `a,b,c` in the GET form (1–3 values)."""
    if name not in data or data[name] is None:
        return default
    raw = data[name]
    if isinstance(raw, str):
        raw = [part for part in raw.strip().strip("[]").split(",")]
    if not isinstance(raw, list) or not 1 <= len(raw) <= 3:
        raise PushError(f"{name} must be a list of 1 to 3 numbers")
    values = []
    for item in raw:
        value = _to_float(item, name)
        if not lo <= value <= hi:
            raise PushError(f"{name} values must be between {lo} and {hi}")
        values.append(round(value))
    values += [0] * (3 - len(values))
    return (values[0], values[1], values[2])


def _text(data: Mapping[str, Any], name: str, max_len: int = 128) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PushError(f"{name} must be a string")
    if len(value) > max_len:
        raise PushError(f"{name} must be at most {max_len} characters")
    return value


def _flag(data: Mapping[str, Any], name: str) -> bool | None:
    if name not in data or data[name] is None:
        return None
    flag = to_bool(data[name])
    if flag is None:
        raise PushError(f"{name} must be true or false")
    return flag
