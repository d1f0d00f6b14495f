"""One module per command family; each exports COMMANDS (see api/commands.py)."""

from chargebrain.api.commands import Command
from chargebrain.api.handlers import (
    ajax,
    devices,
    explain,
    modbus,
    modbus_generic,
    sim,
    usage,
    users,
    vars,
)

HANDLER_MODULES = [modbus, devices, sim, ajax, users, vars, modbus_generic, explain,
                   usage]


def all_commands() -> dict[str, Command]:
    """Every handler module's COMMANDS in one table (a name defined twice is a bug)."""
    table: dict[str, Command] = {}
    for module in HANDLER_MODULES:
        for name, command in module.COMMANDS.items():
            if name in table:
                raise RuntimeError(f"command {name} defined twice")
            table[name] = command
    return table
