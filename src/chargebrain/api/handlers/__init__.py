"""One module per command family; each exports COMMANDS (see api/commands.py)."""

from chargebrain.api.handlers import (
    ajax,
    devices,
    explain,
    modbus,
    modbus_generic,
    sim,
    users,
    vars,
)

HANDLER_MODULES = [modbus, devices, sim, ajax, users, vars, modbus_generic, explain]
