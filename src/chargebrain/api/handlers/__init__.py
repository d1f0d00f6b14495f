"""One module per command family; each exports COMMANDS (see api/commands.py)."""

from chargebrain.api.handlers import ajax, devices, modbus, sim, users

HANDLER_MODULES = [modbus, devices, sim, ajax, users]
