"""The device registry: one facade over the devices' store, index and runtime.

`app.devices` is a `DeviceRegistry`. It composes three parts, each its own module:
- `store.py` (`DeviceStore`): SQL persistence of configurations and of the runtime counters;
- `index.py` (`DeviceIndex`): the devices in memory, lookup, topology, cross-device checks;
- `runtime.py` (`DeviceRuntime`): drivers, guarded I/O with COM-error counting, soft meter;
and adds what ties them together: loading (with the factory defaults on the very first start),
configuration changes (`changes.py` validates them), listeners and the site status.

For the control cycle:
- iterate: `all()`, `evses()` (wallboxes, groups excluded), `groups()`, `meters()`, `get(dev_id)`,
  `members(group_id)`, `evses_below(group_id)`, `attached_to(meter_id)`; each `Device` has
  `.config` (pydantic model, see config.py), `.driver`, `.status` (status.py), `.kind`,
  `.family`, `.enabled`, `.number` (the n of E<n>/M<n>: a group's id) and `.parent_group`;
- `evse_measurement(device)`: an EVSE's currents/power/energy, its attached meter first;
- read: `await read(device, now_s)` / `await read_all(now_s)` — one device's timeout never
  delays the others; failures are counted in `status` (com_err, com_errors, last_error) and the
  call returns None instead of raising; meter readings come back with `factor`/`invert` applied;
- write: `await apply(device, setpoint, now_s)` → True when written; records
  `status.last_set_charging_cur_ma`;
- virtual meters have no driver: the cycle computes them and stores the result with
  `publish(device, reading, now_s)`;
- changes: `version` grows with every configuration change; `on_change` callbacks get the
  dev_id after create/update/delete/reset;
- pushed data: `push(device, reading, now_s)` hands it to the device's `PushDriver`
  (set_ajax_*); `on_push` callbacks then get the dev_id (e.g. to run an extra
  cycle at once when a limit is exceeded);
- soft meter: an EVSE without energy meter integrates its power on every read; the counter
  lives in its own table (saved every `runtime.SOFT_METER_SAVE_S` while counting, by
  `set_soft_meter`, and at `close()`), never in the configuration;
- `site` (`SiteStatus`) is where the cycle puts site-wide numbers for get_dev_info.

All times are seconds on one clock: `clock()` (default `time.time`) for API calls; the cycle
passes its `now_s` from the same clock. Callbacks are plain functions and must not block.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from chargebrain.devices import config as cfg
from chargebrain.devices.base import EvseSetpoint, Reading
from chargebrain.devices.changes import Change, prepare
from chargebrain.devices.device import Device
from chargebrain.devices.index import DeviceIndex, Measurement
from chargebrain.devices.runtime import DeviceRuntime, adjust_meter, close_driver
from chargebrain.devices.status import DeviceStatus, SiteStatus
from chargebrain.devices.store import DeviceStore
from chargebrain.ocpp import CentralSystem
from chargebrain.store.db import Store

__all__ = ["Change", "Device", "DeviceRegistry", "Measurement", "adjust_meter"]

log = logging.getLogger(__name__)

# A new Power Brain wallbox: the built-in EVSE with S0 meter 1 in series (EV consumption,
# attached to E1, as the real controller reports it) and S0 meter 2 for display only.
FACTORY_DEFAULTS: list[dict[str, Any]] = [
    {"dev_id": "E1", "dev_type": "evse_powerbrain", "attach": "M1"},
    {"dev_id": "M1", "dev_type": "meter_powerbrain", "role": 4},
    {"dev_id": "M2", "dev_type": "meter_powerbrain", "address": "meter2", "id": 3,
     "name": "S0 Zähler 2", "desc": "Power Brain, S0 Zähler 2"},
]


class DeviceRegistry:
    """All configured devices (see the module docstring for the cycle's API)."""

    def __init__(self, store: Store, *, voltage_v: Callable[[], int] = lambda: 230,
                 powerbrain: Callable[[], Any] = lambda: None,
                 clock: Callable[[], float] = time.time,
                 ocpp: Callable[[], CentralSystem | None] = lambda: None) -> None:
        self.store = DeviceStore(store)
        self.index = DeviceIndex()
        self.runtime = DeviceRuntime(self.store, voltage_v=voltage_v, powerbrain=powerbrain,
                                     ocpp=ocpp)
        self.clock = clock
        self.version = 0
        self.on_change: list[Callable[[str], None]] = []
        self.on_push: list[Callable[[str], None]] = []
        self.site = SiteStatus()
        self.serialno = ""

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the devices; on the very first start install the factory defaults."""
        self.serialno = self.store.serialno()
        if self.store.is_new():
            self._install_defaults()
            return
        for row in self.store.load():
            status = DeviceStatus.with_soft_meter(row.soft_meter_wh, row.soft_meter_wh)
            self.index.put(self.runtime.build(row.config, row.position, status))

    def _install_defaults(self) -> None:
        installed = []
        for position, raw in enumerate(FACTORY_DEFAULTS, start=1):
            base = cfg.defaults_for(raw["dev_type"], raw["dev_id"])
            installed.append((cfg.validate_config({**base, **raw}), position))
        self.store.install(installed)
        for config, position in installed:
            self.index.put(self.runtime.build(config, position, DeviceStatus()))

    # -- queries (the index) ----------------------------------------------------------------

    def get(self, dev_id: str) -> Device | None:
        """The device with this id, or None."""
        return self.index.get(dev_id)

    def all(self) -> list[Device]:
        """Every device in display order."""
        return self.index.all()

    def evses(self) -> list[Device]:
        """Wallboxes (EVSE-kind devices that are not groups)."""
        return self.index.evses()

    def groups(self) -> list[Device]:
        """`evse_group` devices; `device.number` is the group id."""
        return self.index.groups()

    def meters(self) -> list[Device]:
        return self.index.meters()

    def members(self, group_id: int) -> list[Device]:
        """Devices (wallboxes, meters, groups) directly in group `group_id`."""
        return self.index.members(group_id)

    def attached_to(self, meter_id: str) -> list[Device]:
        """EVSEs that have `meter_id` attached."""
        return self.index.attached_to(meter_id)

    def evses_below(self, group_id: int) -> list[Device]:
        """Wallboxes in group `group_id` or any group nested inside it."""
        return self.index.evses_below(group_id)

    def evse_measurement(self, device: Device) -> Measurement:
        """What an EVSE draws, as best known (its attached meter first)."""
        return self.index.evse_measurement(device)

    def configs(self) -> list[dict[str, Any]]:
        """Every configuration as JSON objects (the get_devices answer); an EVSE's
        `soft_meter` shows the live counter."""
        out = []
        for device in self.all():
            data = cfg.as_dict(device.config)
            for secret in cfg.SECRET_FIELDS:
                data.pop(secret, None)
            data["address"] = cfg.shown_address(str(data.get("address", "")))
            if "soft_meter" in data:
                data["soft_meter"] = int(device.status.soft_meter_wh)
            out.append(data)
        return out

    # -- configuration changes --------------------------------------------------------------

    def prepare(self, raw: Any) -> Change:
        """Validate a create-or-update request against the current devices; change nothing
        (see `changes.prepare`)."""
        return prepare(self.index, raw)

    async def save(self, change: Change) -> None:
        """Persist a prepared change (one transaction), then make it live."""
        with self.store.db.transaction() as conn:
            change.write(conn)
        await self.activate(change)

    async def activate(self, change: Change) -> None:
        """Make an already persisted change live: swap configuration, rebuild the driver."""
        dev_id = change.config.dev_id
        old = self.index.get(dev_id)
        if old is None:
            soft_wh = float(change.soft_meter_wh or 0)
            status = DeviceStatus.with_soft_meter(soft_wh, soft_wh)
            self.index.put(self.runtime.build(change.config, change.position, status))
            self._changed(dev_id)
            return
        soft_wh, saved_wh = old.status.soft_meter_wh, old.status.soft_meter_saved_wh
        if change.soft_meter_wh is not None:  # set explicitly by this change
            soft_wh = saved_wh = float(change.soft_meter_wh)
        if change.rebuild:
            # swap first, close after: nobody can pick up the old driver while it closes
            status = DeviceStatus.with_soft_meter(soft_wh, saved_wh)
            self.index.put(self.runtime.build(change.config, change.position, status))
            self._changed(dev_id)
            if old.driver is not None:
                await close_driver(old.driver)
            return
        old.config = change.config
        old.status.soft_meter_wh, old.status.soft_meter_saved_wh = soft_wh, saved_wh
        self._changed(dev_id)

    def check_delete(self, dev_id: str) -> Device:
        """The device to delete, or ConfigError when something still refers to it."""
        return self.index.check_delete(dev_id)

    async def delete(self, dev_id: str) -> None:
        """Delete a device (after `check_delete`); its rows go in one transaction."""
        self.check_delete(dev_id)
        self.store.delete(dev_id)
        device = self.index.remove(dev_id)
        self._changed(dev_id)
        if device.driver is not None:
            await close_driver(device.driver)

    async def reset(self, dev_id: str) -> None:
        """Destroy and re-create the driver and runtime state (same configuration)."""
        device = self.index.get(dev_id)
        if device is None:
            raise KeyError(dev_id)
        status = DeviceStatus.with_soft_meter(device.status.soft_meter_wh,
                                              device.status.soft_meter_saved_wh)
        self.index.put(self.runtime.build(device.config, device.position, status))
        self._changed(dev_id)
        if device.driver is not None:
            await close_driver(device.driver)

    def _changed(self, dev_id: str) -> None:
        self.index.touch()
        self.version += 1
        _notify(self.on_change, dev_id)

    # -- I/O for the control cycle (the runtime) --------------------------------------------

    async def read(self, device: Device, now_s: float, max_timeout_s: float | None = None
                   ) -> Reading | None:
        """Read one device within its timeout; None (and a COM error) when that fails.

        `max_timeout_s` caps the device's own `com_timeout_ms` (the cycle passes its time
        budget, so a dead device cannot stretch the cycle period). Devices without a driver
        (groups, virtual meters) and disabled devices are not read: the answer is their last
        reading.
        """
        return await self.runtime.read(device, now_s, max_timeout_s)

    async def read_all(self, now_s: float, max_timeout_s: float | None = None
                       ) -> dict[str, Reading | None]:
        """Read every device concurrently; dev_id → reading (None on failure)."""
        devices = self.all()
        results = await asyncio.gather(*(self.read(d, now_s, max_timeout_s) for d in devices))
        return {d.dev_id: r for d, r in zip(devices, results, strict=True)}

    async def apply(self, device: Device, setpoint: EvseSetpoint, now_s: float,
                    max_timeout_s: float | None = None) -> bool:
        """Write a setpoint within the device's timeout (capped by `max_timeout_s`); False
        (and a COM error) on failure."""
        return await self.runtime.apply(device, setpoint, now_s, max_timeout_s)

    def publish(self, device: Device, reading: Reading, now_s: float) -> None:
        """Store a reading computed elsewhere (virtual meters)."""
        self.runtime.publish(device, reading, now_s)

    def push(self, device: Device, reading: Reading, now_s: float) -> None:
        """Pushed data arrived for a device with a `PushDriver`: hand it to the driver (the
        cycle's next read sees it), make it the current reading (taken now, at the push), and
        tell the `on_push` listeners."""
        self.runtime.push(device, reading, now_s)
        _notify(self.on_push, device.dev_id)

    # -- soft meter -------------------------------------------------------------------------

    def set_soft_meter(self, device: Device, energy_wh: int) -> None:
        """Set an EVSE's soft meter and persist it (in the counters, not the configuration)."""
        self.runtime.set_soft_meter(device, energy_wh)

    async def close(self) -> None:
        """Persist the soft meters and close every driver (at shutdown)."""
        await self.runtime.close(self.index)


def _notify(callbacks: Iterable[Callable[[str], None]], dev_id: str) -> None:
    for callback in list(callbacks):
        try:
            callback(dev_id)
        except Exception:
            log.exception("device listener failed for %s", dev_id)
