"""One configured device: its configuration, its driver and its runtime status."""

from __future__ import annotations

from dataclasses import dataclass, field

from chargebrain.devices import types
from chargebrain.devices.base import Driver
from chargebrain.devices.config import DeviceConfig
from chargebrain.devices.status import DeviceStatus
from chargebrain.devices.types import DevType, Family, Kind


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
