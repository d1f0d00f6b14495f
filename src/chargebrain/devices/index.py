"""The in-memory index of the configured devices: lookup by dev_id, display order, topology
(groups and their members, meters attached to EVSEs) and the cross-device checks a
configuration change must pass.

No I/O and no persistence: the registry puts devices in and takes them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from chargebrain.devices import types
from chargebrain.devices.config import ConfigError, DeviceConfig
from chargebrain.devices.device import Device
from chargebrain.devices.types import Family, Kind
from chargebrain.units import Phases


@dataclass(frozen=True, slots=True)
class Measurement:
    """An EVSE's draw: per-phase currents (EVSE frame), power and energy counter."""

    currents_ma: Phases
    power_w: int
    energy_wh: int


class DeviceIndex:
    """Every configured device, by dev_id."""

    def __init__(self) -> None:
        self._devices: dict[str, Device] = {}
        self._ordered: list[Device] | None = None  # all() in display order, until a change

    def put(self, device: Device) -> None:
        """Add a device, or replace the one with its dev_id."""
        self._devices[device.dev_id] = device
        self._ordered = None

    def remove(self, dev_id: str) -> Device:
        device = self._devices.pop(dev_id)
        self._ordered = None
        return device

    def touch(self) -> None:
        """A device's position or group changed in place: recompute the order."""
        self._ordered = None

    def __iter__(self) -> Iterator[Device]:
        """Every device, in no particular order (a copy: safe while devices change)."""
        return iter(list(self._devices.values()))

    # -- lookup -----------------------------------------------------------------------------

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

    def next_id(self, kind: Kind) -> str:
        """The next free E<n>/M<n> for `kind` (one above the highest in use)."""
        used = [d.number for d in self._devices.values() if d.kind is kind]
        return f"{kind.value}{max(used, default=0) + 1}"

    def next_position(self) -> int:
        """The display position after every device."""
        return max((d.position for d in self._devices.values()), default=0) + 1

    # -- topology ---------------------------------------------------------------------------

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

    # -- checks for configuration changes ---------------------------------------------------

    def check_references(self, config: DeviceConfig, existing: Device | None) -> None:
        """Refuse (ConfigError) a configuration whose references do not hold: its dev_id
        letter, its group, group nesting, the meter it attaches."""
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
