"""Transport to the built-in Power Brain controller (`app.powerbrain`), in-process.

The register model is reached exactly as a Modbus client would reach it (raw registers,
the same checks), so the Power Brain drivers decode one layout for local and remote units.
Every access counts as Modbus traffic for the controller's fail-safe, as on the real board.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chargebrain.devices.base import DeviceError


class LocalRegisters:
    """Registers of one built-in unit (`evse`, `meter1`, `meter2`).

    `powerbrain` is a getter, so a registry built before the controller still finds it."""

    def __init__(self, powerbrain: Callable[[], Any], unit: str) -> None:
        self._powerbrain = powerbrain
        self.unit = unit

    def _controller(self) -> Any:
        controller = self._powerbrain()
        if controller is None:
            raise DeviceError("the built-in Power Brain controller is not available")
        return controller

    async def read(self, address: int, count: int) -> list[int]:
        from chargebrain.powerbrain import RegisterError

        controller = self._controller()
        now_s = controller.clock()
        try:
            controller.tick(now_s)  # bring the simulated hardware up to date first
            return list(controller.read_raw(self.unit, address, count, now_s))
        except (RegisterError, KeyError) as err:
            raise DeviceError(f"read {address}: {err}") from None

    async def write(self, address: int, values: list[int]) -> None:
        from chargebrain.powerbrain import RegisterError

        controller = self._controller()
        try:
            controller.write_raw(self.unit, address, list(values), controller.clock())
        except (RegisterError, KeyError) as err:
            raise DeviceError(f"write {address}: {err}") from None

    async def close(self) -> None:
        """The controller belongs to the app; nothing to release."""
