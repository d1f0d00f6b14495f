"""SQL persistence of the devices: configurations (`devices` table) and runtime counters
(`device_counters` table, the soft meter), on the project's `Store`.

A configuration row changes only when someone changes the configuration; counters that move
while the site runs are written to their own table, so counting never rewrites a
configuration. `soft_meter` is still a field of an EVSE configuration in the API (get_devices
shows it, set_device may set it), but the stored configuration never holds it: the counters
table does.

Writes that belong to a larger change take the caller's connection (`write_config`,
`write_counter` inside `Store.transaction()`); the others open their own transaction.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chargebrain.devices import config as cfg
from chargebrain.devices.config import ConfigError, DeviceConfig
from chargebrain.store.db import Store

log = logging.getLogger(__name__)

INSTALL_NS = "install"
RUNTIME_FIELDS = frozenset({"soft_meter"})  # API fields that are counters, not configuration


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """One configuration row as loaded, with its counters."""

    config: DeviceConfig
    position: int
    soft_meter_wh: float


def write_config(conn: sqlite3.Connection, config: DeviceConfig, position: int) -> None:
    """Insert or replace a device's configuration row inside the caller's transaction."""
    data = {k: v for k, v in cfg.as_dict(config).items() if k not in RUNTIME_FIELDS}
    conn.execute(
        "INSERT INTO devices(dev_id, dev_type, position, config) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(dev_id) DO UPDATE SET dev_type=excluded.dev_type,"
        " position=excluded.position, config=excluded.config",
        (config.dev_id, config.dev_type, position, _json(data)),
    )


def write_counter(conn: sqlite3.Connection, dev_id: str, soft_meter_wh: float) -> None:
    """Insert or replace a device's soft meter inside the caller's transaction (the device's
    configuration row must exist)."""
    conn.execute(
        "INSERT INTO device_counters(dev_id, soft_meter_wh) VALUES (?, ?)"
        " ON CONFLICT(dev_id) DO UPDATE SET soft_meter_wh=excluded.soft_meter_wh",
        (dev_id, soft_meter_wh),
    )


class DeviceStore:
    """The devices' rows in the project database."""

    def __init__(self, store: Store) -> None:
        self.db = store

    def serialno(self) -> str:
        """This installation's serial number (made once, like a board's serial)."""
        serial = self.db.kv_get(INSTALL_NS, "serialno")
        if not isinstance(serial, str):
            raw = secrets.token_hex(6)
            serial = f"{raw[0:4]}-{raw[4:8]}-{raw[8:12]}"
            self.db.kv_set(INSTALL_NS, "serialno", serial)
        return serial

    def is_new(self) -> bool:
        """No device row was ever written: the very first start (factory defaults due)."""
        row = self.db.conn.execute("SELECT 1 FROM devices LIMIT 1").fetchone()
        return row is None and not self.db.kv_get(INSTALL_NS, "defaults_installed")

    def load(self) -> list[StoredDevice]:
        """Every readable configuration in display order; a row that does not validate is
        logged and left out (one unreadable row must not take the whole site down)."""
        rows = self.db.conn.execute(
            "SELECT d.dev_id, d.position, d.config, c.soft_meter_wh FROM devices d"
            " LEFT JOIN device_counters c ON c.dev_id = d.dev_id"
            " ORDER BY d.position, d.dev_id").fetchall()
        out = []
        for dev_id, position, text, soft_meter_wh in rows:
            try:
                config = cfg.validate_config(json.loads(text))
            except (ConfigError, ValueError) as err:
                log.error("device %s: stored configuration refused: %s", dev_id, err)
                continue
            out.append(StoredDevice(config, position, float(soft_meter_wh or 0.0)))
        return out

    def install(self, devices: Iterable[tuple[DeviceConfig, int]]) -> None:
        """Write the factory defaults and remember that they were installed, in one
        transaction (once only: a user who deletes every device keeps an empty site)."""
        with self.db.transaction() as conn:
            for config, position in devices:
                write_config(conn, config, position)
            conn.execute("INSERT OR REPLACE INTO kv(ns, key, value) VALUES (?, ?, ?)",
                         (INSTALL_NS, "defaults_installed", "true"))

    def delete(self, dev_id: str) -> None:
        """Delete a device's configuration and counters in one transaction."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM device_counters WHERE dev_id=?", (dev_id,))
            conn.execute("DELETE FROM devices WHERE dev_id=?", (dev_id,))

    def save_counters(self, soft_meters_wh: dict[str, float]) -> None:
        """Write soft meters (dev_id → Wh) in one transaction."""
        if not soft_meters_wh:
            return
        with self.db.transaction() as conn:
            for dev_id, soft_meter_wh in soft_meters_wh.items():
                write_counter(conn, dev_id, soft_meter_wh)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
