"""`cmd=modbus`: the built-in Power Brain controller's registers over HTTP."""

from __future__ import annotations

from chargebrain.api.commands import Command

COMMANDS: dict[str, Command] = {}
