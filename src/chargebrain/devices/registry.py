"""The device registry: configured devices, their drivers and runtime status.

`app.devices` is a `DeviceRegistry`. It loads the `devices` table at start (installing the
factory defaults into an empty one), validates and persists configuration changes, builds one
driver per device, and does the I/O bookkeeping the control cycle needs.

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
  `status.last_set_charging_cur`;
- virtual meters have no driver: the cycle computes them and stores the result with
  `publish(device, reading, now_s)`;
- changes: `version` grows with every configuration change; `on_change` callbacks get the
  dev_id after create/update/delete/reset;
- pushed data: `push(device, reading, now_s)` stores it (set_ajax_*, later MQTT); `on_push`
  callbacks then get the dev_id (e.g. to run an extra cycle at once when a limit is exceeded);
- soft meter: an EVSE without energy meter integrates its power on every read; it is saved every
  `SOFT_METER_SAVE_S` while counting, by `set_soft_meter`, and at `close()`;
- `site` (`SiteStatus`) is where the cycle puts site-wide numbers for get_dev_info.

All times are seconds on one clock: `clock()` (default `time.time`) for API calls; the cycle
passes its `now_s` from the same clock. Callbacks are plain functions and must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chargebrain.devices import config as cfg
from chargebrain.devices import types
from chargebrain.devices.base import (
    DeviceError,
    Driver,
    EvseDriver,
    EvseReading,
    EvseSetpoint,
    MeterReading,
    Reading,
)
from chargebrain.devices.config import ConfigError, DeviceConfig
from chargebrain.devices.drivers import build_driver
from chargebrain.devices.drivers.ajax import AjaxEvse, AjaxMeter
from chargebrain.devices.status import DeviceStatus, SiteStatus, integrate_wh
from chargebrain.devices.types import DevType, Family, Kind
from chargebrain.store.db import Store
from chargebrain.units import Phases

log = logging.getLogger(__name__)

INSTALL_NS = "install"
SOFT_METER_SAVE_S = 60.0  # a counting soft meter is saved at least this often

# A change to one of these rebuilds the driver (new connection, new simulated hardware) and
# clears the runtime status; any other change (limits, names, rules) keeps both. Switching a
# device off or on is a rebuild too, so a disabled device shows no stale reading.
DRIVER_FIELDS = frozenset({"dev_type", "address", "id", "used_phases", "com_timeout_ms",
                           "sim_power_w", "phases", "device_enabled"})

# A new Power Brain wallbox: the built-in EVSE with S0 meter 1 in series (EV consumption,
# attached to E1, as the real controller reports it) and S0 meter 2 for display only.
FACTORY_DEFAULTS: list[dict[str, Any]] = [
    {"dev_id": "E1", "dev_type": "evse_powerbrain", "attach": "M1"},
    {"dev_id": "M1", "dev_type": "meter_powerbrain", "role": 4},
    {"dev_id": "M2", "dev_type": "meter_powerbrain", "address": "meter2", "id": 3,
     "name": "S0 Zähler 2", "desc": "Power Brain, S0 Zähler 2"},
]


@dataclass
class Device:
    """One configured device with its driver and runtime status."""

    config: DeviceConfig
    position: int
    driver: Driver | None
    status: DeviceStatus = field(default_factory=DeviceStatus)

    @property
    def dev_id(self) -> str:
        return self.config.dev_id

    @property
    def info(self) -> DevType:
        return types.DEV_TYPES[self.config.dev_type]  # validated before a Device is built

    @property
    def kind(self) -> Kind:
        return self.info.kind

    @property
    def family(self) -> Family:
        return self.info.family

    @property
    def is_evse(self) -> bool:
        """EVSE-kind (E<n>): wallboxes and groups."""
        return self.kind is Kind.EVSE

    @property
    def is_group(self) -> bool:
        return self.family is Family.GROUP

    @property
    def number(self) -> int:
        """The n of E<n>/M<n> (for a group: its group id)."""
        return int(self.dev_id[1:])

    @property
    def enabled(self) -> bool:
        return self.config.device_enabled == 1

    @property
    def parent_group(self) -> int:
        """The group this device belongs to (0 = the site)."""
        return int(getattr(self.config, "group", 0))


@dataclass(frozen=True, slots=True)
class Measurement:
    """An EVSE's draw: per-phase currents (EVSE frame), power and energy counter."""

    currents_ma: Phases
    power_w: int
    energy_wh: int


@dataclass(frozen=True, slots=True)
class Change:
    """A validated configuration change, ready to be written (see `DeviceRegistry.prepare`)."""

    config: DeviceConfig
    position: int
    created: bool
    rebuild: bool

    def write(self, conn: sqlite3.Connection) -> None:
        """Write the device row inside the caller's transaction."""
        conn.execute(
            "INSERT INTO devices(dev_id, dev_type, position, config) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(dev_id) DO UPDATE SET dev_type=excluded.dev_type,"
            " position=excluded.position, config=excluded.config",
            (self.config.dev_id, self.config.dev_type, self.position,
             _json(cfg.as_dict(self.config))),
        )


class DeviceRegistry:
    """All configured devices (see the module docstring for the cycle's API)."""

    def __init__(self, store: Store, *, voltage_v: Callable[[], int] = lambda: 230,
                 powerbrain: Callable[[], Any] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.voltage_v = voltage_v
        self.powerbrain = powerbrain
        self.clock = clock
        self.version = 0
        self.on_change: list[Callable[[str], None]] = []
        self.on_push: list[Callable[[str], None]] = []
        self.site = SiteStatus()
        self.serialno = ""
        self._devices: dict[str, Device] = {}
        self._ordered: list[Device] | None = None  # all() in display order, until a change

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the devices table; on the very first start install the factory defaults."""
        self.serialno = self._serialno()
        self._ordered = None
        rows = self.store.conn.execute(
            "SELECT dev_id, position, config FROM devices ORDER BY position, dev_id").fetchall()
        if not rows and not self.store.kv_get(INSTALL_NS, "defaults_installed"):
            self._install_defaults()
            return
        for dev_id, position, text in rows:
            try:
                config = cfg.validate_config(_loads(text))
            except (ConfigError, ValueError) as err:
                # keep starting: one unreadable row must not take the whole site down
                log.error("device %s: stored configuration refused: %s", dev_id, err)
                continue
            self._devices[dev_id] = self._new_device(config, position)

    def _serialno(self) -> str:
        """This installation's serial number (made once, like a board's serial)."""
        serial = self.store.kv_get(INSTALL_NS, "serialno")
        if not isinstance(serial, str):
            raw = secrets.token_hex(6)
            serial = f"{raw[0:4]}-{raw[4:8]}-{raw[8:12]}"
            self.store.kv_set(INSTALL_NS, "serialno", serial)
        return serial

    def _install_defaults(self) -> None:
        changes = []
        for position, raw in enumerate(FACTORY_DEFAULTS, start=1):
            base = cfg.defaults_for(raw["dev_type"], raw["dev_id"])
            config = cfg.validate_config({**base, **raw})
            changes.append(Change(config, position, created=True, rebuild=True))
        with self.store.transaction() as conn:
            for change in changes:
                change.write(conn)
            # once only: a user who deletes every device keeps an empty installation
            conn.execute("INSERT OR REPLACE INTO kv(ns, key, value) VALUES (?, ?, ?)",
                         (INSTALL_NS, "defaults_installed", "true"))
        for change in changes:
            self._devices[change.config.dev_id] = self._new_device(change.config,
                                                                   change.position)

    def _new_device(self, config: DeviceConfig, position: int,
                    status: DeviceStatus | None = None) -> Device:
        if status is None:
            status = DeviceStatus(soft_meter_wh=float(getattr(config, "soft_meter", 0)))
        driver = build_driver(config, voltage_v=self.voltage_v(), powerbrain=self.powerbrain)
        return Device(config=config, position=position, driver=driver, status=status)

    # -- queries ----------------------------------------------------------------------------

    def get(self, dev_id: str) -> Device | None:
        """The device with this id, or None."""
        return self._devices.get(dev_id)

    def all(self) -> list[Device]:
        """Every device in display order."""
        if self._ordered is None:
            self._ordered = sorted(self._devices.values(),
                                   key=lambda d: (d.position, d.kind.value, d.number))
        return list(self._ordered)

    def evses(self) -> list[Device]:
        """Wallboxes (EVSE-kind devices that are not groups)."""
        return [d for d in self.all() if d.is_evse and not d.is_group]

    def groups(self) -> list[Device]:
        """`evse_group` devices; `device.number` is the group id."""
        return [d for d in self.all() if d.is_group]

    def meters(self) -> list[Device]:
        return [d for d in self.all() if d.kind is Kind.METER]

    def members(self, group_id: int) -> list[Device]:
        """Devices (wallboxes, meters, groups) directly in group `group_id`."""
        return [d for d in self.all() if d.parent_group == group_id
                and not (d.is_group and d.number == group_id)]

    def attached_to(self, meter_id: str) -> list[Device]:
        """EVSEs that have `meter_id` attached."""
        return [d for d in self.evses() if getattr(d.config, "attach", "") == meter_id]

    def evses_below(self, group_id: int) -> list[Device]:
        """Wallboxes in group `group_id` or any group nested inside it."""
        out: list[Device] = []
        pending, seen = [group_id], set()
        while pending:
            gid = pending.pop()
            if gid in seen:
                continue
            seen.add(gid)
            for device in self.members(gid):
                if device.is_group:
                    pending.append(device.number)
                elif device.is_evse:
                    out.append(device)
        return out

    def evse_measurement(self, device: Device) -> Measurement:
        """What an EVSE draws, as best known: its attached meter (when that has a good
        reading) wins over the EVSE's own values, as if the meter were built in."""
        reading = device.status.evse_reading
        currents = reading.currents_ma if reading else (0, 0, 0)
        power = reading.power_w if reading else 0
        energy = reading.total_energy_wh if reading else None
        if energy is None:
            energy = int(device.status.soft_meter_wh)
        attach = getattr(device.config, "attach", "")
        meter = self._devices.get(attach) if attach else None
        if meter is not None and not meter.status.com_err:
            measured = meter.status.meter_reading
            if measured is not None:
                currents = measured.currents_ma or currents
                power, energy = measured.power_w, measured.import_wh
        return Measurement(currents, power, energy)

    def configs(self) -> list[dict[str, Any]]:
        """Every configuration as JSON objects (the get_devices answer); an EVSE's
        `soft_meter` shows the live value."""
        out = []
        for device in self.all():
            data = cfg.as_dict(device.config)
            if "soft_meter" in data:
                data["soft_meter"] = int(device.status.soft_meter_wh)
            out.append(data)
        return out

    # -- configuration changes --------------------------------------------------------------

    def prepare(self, raw: Any) -> Change:
        """Validate a create-or-update request against the current devices; change nothing.

        `raw` is one device object. With the `dev_id` of an existing device it updates that
        device (fields not given keep their values); otherwise it creates a device (with the
        given unused `dev_id`, or the next free E<n>/M<n> for its kind).
        """
        if not isinstance(raw, dict):
            raise ConfigError("a device must be a JSON object")
        dev_id = raw.get("dev_id")
        if dev_id is not None and (not isinstance(dev_id, str) or not cfg.DEV_ID_RE.match(dev_id)):
            raise ConfigError("dev_id must look like E<n> or M<n>")
        existing = self._devices.get(dev_id) if dev_id else None
        if existing is not None:
            old = cfg.as_dict(existing.config)
            if raw.get("dev_type", old["dev_type"]) != old["dev_type"]:
                # a new type starts from the new type's defaults; common fields carry over
                base = {k: old[k] for k in cfg.CommonConfig.model_fields if k in old}
                base.pop("com_timeout_ms", None)
                merged = {**cfg.defaults_for(str(raw["dev_type"]), dev_id), **base, **raw}
            else:
                merged = {**old, **raw}
            position = existing.position
        else:
            dev_type = raw.get("dev_type")
            if not isinstance(dev_type, str):
                raise ConfigError("dev_type is required to create a device")
            info = types.get(dev_type)
            if info is None:
                raise ConfigError(f"unknown device type {dev_type}")
            if not info.supported:
                raise ConfigError(f"device type {dev_type} is not supported yet")
            dev_id = dev_id or self._next_id(info.kind)
            merged = {**cfg.defaults_for(dev_type, dev_id), **raw, "dev_id": dev_id}
            position = max((d.position for d in self._devices.values()), default=0) + 1
        config = cfg.validate_config(merged)
        self._check_references(config, existing)
        rebuild = existing is None or any(
            getattr(existing.config, name, None) != getattr(config, name, None)
            for name in DRIVER_FIELDS)
        return Change(config, position, created=existing is None, rebuild=rebuild)

    def _next_id(self, kind: Kind) -> str:
        used = [d.number for d in self._devices.values() if d.kind is kind]
        return f"{kind.value}{max(used, default=0) + 1}"

    def _check_references(self, config: DeviceConfig, existing: Device | None) -> None:
        info = types.get(config.dev_type)
        assert info is not None
        if config.dev_id[0] != info.kind.value:
            raise ConfigError(f"dev_type {config.dev_type} needs a dev_id starting with "
                              f"{info.kind.value}")
        group = int(getattr(config, "group", 0))
        if group:
            parent = self._devices.get(f"E{group}")
            if parent is None or not parent.is_group:
                raise ConfigError(f"group {group} does not exist (E{group} is no evse_group)")
        if info.family is Family.GROUP:
            self._check_group_cycle(int(config.dev_id[1:]), group)
        elif existing is not None and existing.is_group and self.members(existing.number):
            raise ConfigError(f"{config.dev_id} is a group with members; it must stay a group")
        attach = getattr(config, "attach", "")
        if attach:
            meter = self._devices.get(attach)
            if meter is None or meter.kind is not Kind.METER:
                raise ConfigError(f"attach: meter {attach} does not exist")
            others = [d.dev_id for d in self.attached_to(attach) if d.dev_id != config.dev_id]
            if others:
                raise ConfigError(f"attach: {attach} is already attached to {others[0]}")

    def _check_group_cycle(self, group_id: int, parent: int) -> None:
        seen = {group_id}
        while parent:
            if parent in seen:
                raise ConfigError(f"group: E{group_id} cannot be nested inside itself")
            seen.add(parent)
            node = self._devices.get(f"E{parent}")
            parent = node.parent_group if node is not None else 0

    async def save(self, change: Change) -> None:
        """Persist a prepared change (one transaction), then make it live."""
        with self.store.transaction() as conn:
            change.write(conn)
        await self.activate(change)

    async def activate(self, change: Change) -> None:
        """Make an already persisted change live: swap configuration, rebuild the driver."""
        dev_id = change.config.dev_id
        old = self._devices.get(dev_id)
        if old is None:
            self._devices[dev_id] = self._new_device(change.config, change.position)
            self._changed(dev_id)
            return
        soft_wh = old.status.soft_meter_wh
        new_soft = getattr(change.config, "soft_meter", None)
        if new_soft is not None and new_soft != getattr(old.config, "soft_meter", None):
            soft_wh = float(new_soft)  # set explicitly by this change
        if change.rebuild:
            # swap first, close after: nobody can pick up the old driver while it closes
            status = DeviceStatus(soft_meter_wh=soft_wh)
            self._devices[dev_id] = self._new_device(change.config, change.position, status)
            self._changed(dev_id)
            if old.driver is not None:
                await _close(old.driver)
            return
        old.config = change.config
        old.status.soft_meter_wh = soft_wh
        self._changed(dev_id)

    def check_delete(self, dev_id: str) -> Device:
        """The device to delete, or ConfigError when something still refers to it."""
        device = self._devices[dev_id]
        if device.is_group:
            members = [d.dev_id for d in self.members(device.number)]
            if members:
                raise ConfigError(f"group {dev_id} still has members: {', '.join(members)}")
        users = [d.dev_id for d in self.attached_to(dev_id)]
        if users:
            raise ConfigError(f"{dev_id} is attached to {users[0]}; detach it first")
        return device

    async def delete(self, dev_id: str) -> None:
        """Delete a device (after `check_delete`); its row goes in one transaction."""
        device = self.check_delete(dev_id)
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM devices WHERE dev_id=?", (dev_id,))
        del self._devices[dev_id]
        self._changed(dev_id)
        if device.driver is not None:
            await _close(device.driver)

    async def reset(self, dev_id: str) -> None:
        """Destroy and re-create the driver and runtime state (same configuration)."""
        device = self._devices[dev_id]
        status = DeviceStatus(soft_meter_wh=device.status.soft_meter_wh)
        self._devices[dev_id] = self._new_device(device.config, device.position, status)
        self._changed(dev_id)
        if device.driver is not None:
            await _close(device.driver)

    def _changed(self, dev_id: str) -> None:
        self._ordered = None
        self.version += 1
        _notify(self.on_change, dev_id)

    # -- I/O for the control cycle ----------------------------------------------------------

    async def read(self, device: Device, now_s: float, max_timeout_s: float | None = None
                   ) -> Reading | None:
        """Read one device within its timeout; None (and a COM error) when that fails.

        `max_timeout_s` caps the device's own `com_timeout_ms` (the cycle passes its time
        budget, so a dead device cannot stretch the cycle period). Devices without a driver
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
        taken_s = driver.pushed_s if isinstance(driver, (AjaxEvse, AjaxMeter)) else None
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
        """Pushed data arrived for an HTTP-input device: hand it to the driver (the cycle's
        next read sees it), make it the current reading, and tell the `on_push` listeners."""
        driver: Any = device.driver
        driver.push(reading, now_s)
        self._accept(device, reading, now_s)
        _notify(self.on_push, device.dev_id)

    # -- soft meter -------------------------------------------------------------------------

    def set_soft_meter(self, device: Device, energy_wh: int) -> None:
        """Set an EVSE's soft meter and persist it in its configuration."""
        self._write_soft_meter(device, energy_wh)
        device.status.soft_meter_wh = float(energy_wh)

    def _maybe_save_soft_meter(self, device: Device, now_s: float) -> None:
        """Save a counting soft meter every SOFT_METER_SAVE_S, so a crash loses at most that
        much of its energy (the registry also saves all of them at shutdown)."""
        status = device.status
        if status.soft_meter_saved_s is None or now_s < status.soft_meter_saved_s:
            status.soft_meter_saved_s = now_s
            return
        if now_s - status.soft_meter_saved_s < SOFT_METER_SAVE_S:
            return
        status.soft_meter_saved_s = now_s
        config = device.config
        if isinstance(config, cfg.EvseConfig) and int(status.soft_meter_wh) != config.soft_meter:
            try:
                self._write_soft_meter(device, int(status.soft_meter_wh))
            except sqlite3.Error:
                log.exception("device %s: saving the soft meter failed", device.dev_id)

    def _write_soft_meter(self, device: Device, energy_wh: int) -> None:
        assert isinstance(device.config, cfg.EvseConfig)
        config = device.config.model_copy(update={"soft_meter": energy_wh})
        with self.store.transaction() as conn:
            Change(config, device.position, created=False, rebuild=False).write(conn)
        device.config = config

    def _persist_soft_meters(self) -> None:
        changes = []
        for device in self.evses():
            if not isinstance(device.config, cfg.EvseConfig):
                continue
            value = int(device.status.soft_meter_wh)
            if value != device.config.soft_meter:
                config = device.config.model_copy(update={"soft_meter": value})
                changes.append(Change(config, device.position, created=False, rebuild=False))
                device.config = config
        if changes:
            with self.store.transaction() as conn:
                for change in changes:
                    change.write(conn)

    async def close(self) -> None:
        """Persist the soft meters and close every driver (at shutdown)."""
        with contextlib.suppress(sqlite3.Error):
            self._persist_soft_meters()
        await asyncio.gather(*(_close(d.driver) for d in self._devices.values()
                               if d.driver is not None))


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


def _notify(callbacks: Iterable[Callable[[str], None]], dev_id: str) -> None:
    for callback in list(callbacks):
        try:
            callback(dev_id)
        except Exception:
            log.exception("device listener failed for %s", dev_id)


async def _close(driver: Driver) -> None:
    try:
        await driver.close()
    except Exception:
        log.exception("closing a driver failed")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str) -> Any:
    return json.loads(text)


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
