"""The device runtime: drivers, guarded I/O and runtime status.

`DeviceRuntime` builds one driver per device, reads and writes devices within their timeouts
(a failure becomes a COM error in `device.status`, never an exception for the cycle), takes
pushed data for `PushDriver`s, and keeps the soft meter: an EVSE without energy meter
integrates its power on every reading; the counter is saved to the `device_counters` table
every `SOFT_METER_SAVE_S` while it counts, when it is set, and at `close()`.

Times are seconds on the caller's clock (`now_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from chargebrain.devices import config as cfg
from chargebrain.devices.base import (
    DeviceError,
    Driver,
    EvseDriver,
    EvseReading,
    EvseSetpoint,
    MeterReading,
    PushDriver,
    Reading,
    ReportsProblems,
)
from chargebrain.devices.config import DeviceConfig
from chargebrain.devices.device import Device
from chargebrain.devices.drivers import build_driver
from chargebrain.devices.status import DeviceStatus, integrate_wh
from chargebrain.devices.store import DeviceStore
from chargebrain.ocpp import CentralSystem

log = logging.getLogger(__name__)

SOFT_METER_SAVE_S = 60.0  # a counting soft meter is saved at least this often


class DeviceRuntime:
    """Drivers and I/O bookkeeping for the devices the registry hands in."""

    def __init__(self, store: DeviceStore, *, voltage_v: Callable[[], int],
                 powerbrain: Callable[[], Any],
                 ocpp: Callable[[], CentralSystem | None] = lambda: None) -> None:
        self.store = store
        self.voltage_v = voltage_v
        self.powerbrain = powerbrain
        self.ocpp = ocpp

    def build(self, config: DeviceConfig, position: int, status: DeviceStatus) -> Device:
        """A device with a new driver and the given status."""
        driver = build_driver(config, voltage_v=self.voltage_v(), powerbrain=self.powerbrain,
                              ocpp=self.ocpp)
        return Device(config=config, position=position, driver=driver, status=status)

    # -- I/O ----------------------------------------------------------------------------------

    async def read(self, device: Device, now_s: float, max_timeout_s: float | None = None
                   ) -> Reading | None:
        """Read one device within its timeout; None (and a COM error) when that fails.

        `max_timeout_s` caps the device's own `com_timeout_ms`. Devices without a driver
        (groups, virtual meters) and disabled devices are not read: the answer is their last
        reading.
        """
        if device.driver is None or not device.enabled:
            return device.status.reading
        ok, reading = await _guarded(device, device.driver.read(now_s), "read",
                                     _timeout_s(device, max_timeout_s), now_s)
        if not ok:
            return None
        # Pushed data keeps the time it arrived: re-reading it later measures nothing new.
        driver = device.driver
        taken_s = driver.pushed_s if isinstance(driver, PushDriver) else None
        if isinstance(driver, ReportsProblems) and driver.read_problem:
            device.status.record_problem(driver.read_problem, now_s)
        return self._accept(device, reading, now_s, taken_s)

    def _accept(self, device: Device, reading: Reading, now_s: float,
                taken_s: float | None = None) -> Reading:
        config = device.config
        if isinstance(reading, MeterReading) and isinstance(config, cfg.MeterConfig):
            reading = adjust_meter(reading, config.factor, config.invert)
        elif isinstance(reading, EvseReading) and reading.total_energy_wh is None:
            status = device.status
            if status.soft_meter_s is not None:
                status.soft_meter_wh = integrate_wh(status.soft_meter_wh, reading.power_w,
                                                    now_s - status.soft_meter_s)
            status.soft_meter_s = now_s
            self._maybe_save_soft_meter(device, now_s)
        device.status.record_reading(reading, now_s if taken_s is None else taken_s)
        return reading

    async def apply(self, device: Device, setpoint: EvseSetpoint, now_s: float,
                    max_timeout_s: float | None = None) -> bool:
        """Write a setpoint within the device's timeout (capped by `max_timeout_s`); False
        (and a COM error) on failure."""
        driver = device.driver
        if not isinstance(driver, EvseDriver):
            raise TypeError(f"{device.dev_id} takes no setpoints")
        ok, _ = await _guarded(device, driver.apply(setpoint), "write",
                               _timeout_s(device, max_timeout_s), now_s)
        if ok:
            device.status.record_setpoint(setpoint)
        return ok

    def publish(self, device: Device, reading: Reading, now_s: float) -> None:
        """Store a reading computed elsewhere (virtual meters)."""
        device.status.record_reading(reading, now_s)

    def push(self, device: Device, reading: Reading, now_s: float) -> None:
        """Pushed data arrived: hand it to the driver (the next read sees it) and make it the
        current reading, taken at the push time `now_s`."""
        driver = device.driver
        if not isinstance(driver, PushDriver):
            raise TypeError(f"{device.dev_id} takes no pushed data")
        driver.push(reading, now_s)
        self._accept(device, reading, now_s, now_s)

    # -- soft meter ---------------------------------------------------------------------------

    def set_soft_meter(self, device: Device, energy_wh: int) -> None:
        """Set an EVSE's soft meter and persist it at once."""
        if not isinstance(device.config, cfg.EvseConfig):
            raise TypeError(f"{device.dev_id} has no soft meter")
        self.store.save_counters({device.dev_id: float(energy_wh)})
        device.status.soft_meter_wh = float(energy_wh)
        device.status.soft_meter_saved_wh = float(energy_wh)

    def _maybe_save_soft_meter(self, device: Device, now_s: float) -> None:
        """Save a counting soft meter every SOFT_METER_SAVE_S, so a crash loses at most that
        much of its energy (`close()` saves all of them at shutdown)."""
        status = device.status
        if status.soft_meter_saved_s is None or now_s < status.soft_meter_saved_s:
            status.soft_meter_saved_s = now_s
            return
        if now_s - status.soft_meter_saved_s < SOFT_METER_SAVE_S:
            return
        status.soft_meter_saved_s = now_s
        if isinstance(device.config, cfg.EvseConfig) and _unsaved(status):
            try:
                self.store.save_counters({device.dev_id: status.soft_meter_wh})
            except sqlite3.Error:
                log.exception("device %s: saving the soft meter failed", device.dev_id)
                return
            status.soft_meter_saved_wh = status.soft_meter_wh

    def save_soft_meters(self, devices: Iterable[Device]) -> None:
        """Persist every soft meter that moved since it was last saved (one transaction)."""
        moved = [d for d in devices if isinstance(d.config, cfg.EvseConfig) and _unsaved(d.status)]
        self.store.save_counters({d.dev_id: d.status.soft_meter_wh for d in moved})
        for device in moved:
            device.status.soft_meter_saved_wh = device.status.soft_meter_wh

    # -- lifecycle ----------------------------------------------------------------------------

    async def close(self, devices: Iterable[Device]) -> None:
        """Persist the soft meters and close every driver (at shutdown)."""
        devices = list(devices)
        with contextlib.suppress(sqlite3.Error):
            self.save_soft_meters(devices)
        await asyncio.gather(*(close_driver(d.driver) for d in devices if d.driver is not None))


def adjust_meter(reading: MeterReading, factor: float, invert: bool) -> MeterReading:
    """Apply a meter's CT `factor` (negative inverts) and `invert` flag to a raw reading.

    Inverting flips the sign of currents and power and swaps import and export.
    """
    sign = -1 if (factor < 0) != invert else 1
    scale = abs(factor)
    if sign == 1 and scale == 1:
        return reading
    currents = None if reading.currents_ma is None else (
        round(reading.currents_ma[0] * scale) * sign,
        round(reading.currents_ma[1] * scale) * sign,
        round(reading.currents_ma[2] * scale) * sign)
    imported = round(reading.import_wh * scale)
    exported = round(reading.export_wh * scale)
    if sign < 0:
        imported, exported = exported, imported
    return MeterReading(currents_ma=currents, voltages_v=reading.voltages_v,
                        power_w=round(reading.power_w * scale) * sign, import_wh=imported,
                        export_wh=exported, soc=reading.soc, model=reading.model,
                        is_va=reading.is_va)


async def close_driver(driver: Driver) -> None:
    """Close a driver; a failure is logged, never raised."""
    try:
        await driver.close()
    except Exception:
        log.exception("closing a driver failed")


def _unsaved(status: DeviceStatus) -> bool:
    return status.soft_meter_wh != status.soft_meter_saved_wh


async def _guarded(device: Device, call: Awaitable[Any], what: str, timeout_s: float,
                   now_s: float) -> tuple[bool, Any]:
    """Await one driver call within `timeout_s`: (True, result), or (False, None) with the
    failure recorded as a COM error. A driver bug is logged and counts as a COM error too, so
    it can never stop the cycle."""
    try:
        return True, await asyncio.wait_for(call, timeout_s)
    except TimeoutError:
        device.status.record_error(f"no answer within {timeout_s:g} s", now_s)
    except (DeviceError, OSError, ValueError) as err:
        device.status.record_error(str(err) or type(err).__name__, now_s)
    except Exception as err:
        log.exception("device %s: %s failed", device.dev_id, what)
        device.status.record_error(f"driver error: {type(err).__name__}", now_s)
    return False, None


def _timeout_s(device: Device, max_timeout_s: float | None) -> float:
    timeout_s = device.config.com_timeout_ms / 1000
    return timeout_s if max_timeout_s is None else min(timeout_s, max_timeout_s)
