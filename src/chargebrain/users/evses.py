"""The users domain's view of the device registry (`app.devices`): EVSE `users` lists and
`fixed_rfid`, and writing new `users` lists when a user's `dev_ids` change.

The registry is reached through a getter, so the users domain can be built before it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chargebrain.users.gate import EvseAuth
from chargebrain.users.model import UserError


class RegistryEvses:
    """An `EvseDirectory` (see users.service) over a `DeviceRegistry`."""

    def __init__(self, registry: Callable[[], Any]) -> None:
        self._registry = registry

    def _reg(self) -> Any:
        return self._registry()

    def evse_auths(self) -> list[EvseAuth]:
        """`users` and `fixed_rfid` of every wallbox in the registry."""
        registry = self._reg()
        if registry is None:
            return []
        return [EvseAuth.from_config(d.dev_id, {"users": getattr(d.config, "users", ()),
                                                "fixed_rfid": getattr(d.config, "fixed_rfid",
                                                                      "")})
                for d in registry.evses()]

    def device_kind(self, dev_id: str) -> str | None:
        """"evse" for a wallbox, "other" for any other device, None when unknown."""
        registry = self._reg()
        device = registry.get(dev_id) if registry is not None else None
        if device is None:
            return None
        return "evse" if device.is_evse and not device.is_group else "other"

    def prepare_users(self, users_by_evse: Mapping[str, Sequence[str]]) -> list[Any]:
        """Validated registry changes setting these `users` lists (nothing written yet)."""
        if not users_by_evse:
            return []
        registry = self._reg()
        if registry is None:
            raise UserError(f"unknown device {next(iter(users_by_evse))}", 404)
        prepared = []
        for dev_id, users in users_by_evse.items():
            try:
                prepared.append(registry.prepare({"dev_id": dev_id, "users": list(users)}))
            except ValueError as err:  # the registry's ConfigError
                raise UserError(f"{dev_id}: {err}") from None
        return prepared

    async def activate(self, prepared: list[Any]) -> None:
        """Make committed changes live in the registry."""
        registry = self._reg()
        for change in prepared:
            await registry.activate(change)
