"""One module per command family; each exports COMMANDS (see api/commands.py)."""

from chargebrain.api.handlers import devices, modbus, sim

HANDLER_MODULES = [modbus, devices, sim]
