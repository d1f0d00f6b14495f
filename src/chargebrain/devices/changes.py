"""Configuration changes: a create-or-update request checked against the index (`prepare`)
becomes a `Change`, which the caller writes inside its own transaction (`Change.write`) and
the registry then makes live."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from chargebrain.devices import config as cfg
from chargebrain.devices import types
from chargebrain.devices.config import ConfigError, DeviceConfig
from chargebrain.devices.index import DeviceIndex
from chargebrain.devices.store import write_config, write_counter

# A change to one of these rebuilds the driver (new connection, new simulated hardware) and
# clears the runtime status; any other change (limits, names, rules) keeps both. Switching a
# device off or on is a rebuild too, so a disabled device shows no stale reading.
DRIVER_FIELDS = frozenset({"dev_type", "address", "id", "used_phases", "com_timeout_ms",
                           "sim_power_w", "phases", "device_enabled"})


@dataclass(frozen=True, slots=True)
class Change:
    """A validated configuration change, ready to be written.

    `soft_meter_wh` is the soft meter the request sets (its `soft_meter` field), None when it
    leaves the counter alone.
    """

    config: DeviceConfig
    position: int
    created: bool
    rebuild: bool
    soft_meter_wh: int | None = None

    def write(self, conn: sqlite3.Connection) -> None:
        """Write the device row (and a soft meter set here) inside the caller's transaction."""
        write_config(conn, self.config, self.position)
        if self.soft_meter_wh is not None:
            write_counter(conn, self.config.dev_id, float(self.soft_meter_wh))


def prepare(index: DeviceIndex, raw: Any) -> Change:
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
    existing = index.get(dev_id) if dev_id else None
    if existing is not None:
        old = cfg.as_dict(existing.config)
        if raw.get("address") == cfg.shown_address(old["address"]) != old["address"]:
            raw = {**raw, "address": old["address"]}  # get_devices' `***` sent back: keep it
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
        dev_id = dev_id or index.next_id(info.kind)
        merged = {**cfg.defaults_for(dev_type, dev_id), **raw, "dev_id": dev_id}
        position = index.next_position()
    config = cfg.validate_config(merged)
    index.check_references(config, existing)
    rebuild = existing is None or any(
        getattr(existing.config, name, None) != getattr(config, name, None)
        for name in DRIVER_FIELDS)
    # only a request that names a new value sets the soft meter: sending back what
    # get_devices showed keeps the live counter
    soft_meter_wh = None
    if isinstance(config, cfg.EvseConfig) and (existing is None or (
            "soft_meter" in raw and config.soft_meter != int(existing.status.soft_meter_wh))):
        soft_meter_wh = config.soft_meter
    return Change(config, position, created=existing is None, rebuild=rebuild,
                  soft_meter_wh=soft_meter_wh)
