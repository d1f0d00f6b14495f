"""Modbus TCP server of the built-in Power Brain: one port per unit, all backed by `PowerBrain`.

EVSE on port N, S0 meter 1 on N+1, S0 meter 2 on N+2 (spec §2). Each port serves its unit and
accepts any unit id (0–255): drivers disagree about which id to send on a per-unit port, and the
port already says which unit is meant. Functions 3 and 4 (read), 6 and 16 (write), 23
(read/write) reach the register model; other function codes get pymodbus's own answers (see
docs/registers.md). An address outside the unit's table answers exception 2
(also for a write to a read-only register), a value the table refuses exception 3, and nothing
is written.

Built on pymodbus' supported simulator API (`SimDevice` with an `action` coroutine): pymodbus
keeps a register image for framing, and the action routes every request to the one register
model, refilling the image before each read and vetoing or applying each write.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from chargebrain.powerbrain import PowerBrain, RegisterError
from chargebrain.powerbrain.registers import LAYOUTS, UNITS

log = logging.getLogger("chargebrain")

READ_FUNCTIONS = frozenset({3, 4, 23})
WRITE_FUNCTIONS = frozenset({6, 16, 23})


def sim_device(unit: str, action: Callable[..., object]) -> SimDevice:
    """The pymodbus device of one unit: its valid address runs, any unit id (id=0)."""
    blocks = [SimData(address, values=[0] * count, datatype=DataType.REGISTERS)
              for address, count in LAYOUTS[unit].runs()]
    return SimDevice(id=0, simdata=blocks, action=action)  # type: ignore[arg-type]


class PowerBrainModbusServer:
    """The three Modbus TCP listeners."""

    def __init__(self, powerbrain: PowerBrain, host: str, base_port: int) -> None:
        self.powerbrain = powerbrain
        self.host = host
        self.base_port = base_port
        self.servers: dict[str, ModbusTcpServer] = {}

    def port_of(self, unit: str) -> int:
        return self.base_port + UNITS[unit].port_offset

    async def start(self) -> None:
        """Listen on N, N+1, N+2; stop what was started if one port cannot be opened."""
        pymodbus_log = logging.getLogger("pymodbus.logging")
        if pymodbus_log.level == logging.NOTSET:
            # its "Server listening." lines would double ours (one clear line per socket)
            pymodbus_log.setLevel(logging.WARNING)
        try:
            for unit in LAYOUTS:
                device = sim_device(unit, partial(self._action, unit))
                server = ModbusTcpServer(device, address=(self.host, self.port_of(unit)))
                try:
                    await server.serve_forever(background=True)
                except RuntimeError:  # pymodbus' "Could not start listen": say which port
                    raise OSError(f"cannot listen for Modbus TCP ({unit}) on "
                                  f"{self.host}:{self.port_of(unit)}") from None
                self.servers[unit] = server
                log.info("Modbus TCP %s (unit %d) listening on %s:%d", unit,
                         UNITS[unit].unit_id, self.host, self.port_of(unit))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in self.servers.values():
            with contextlib.suppress(Exception):
                await server.shutdown()
        self.servers.clear()

    async def _action(self, unit: str, function_code: int, start_address: int, address: int,
                      count: int, registers: list[int], set_values: list[int] | None
                      ) -> ExcCodes | None:
        pb = self.powerbrain
        try:
            if set_values is not None:
                if function_code not in WRITE_FUNCTIONS:
                    return ExcCodes.ILLEGAL_FUNCTION
                pb.write_raw(unit, address, [int(v) for v in set_values], pb.clock())
                return None
            if function_code not in READ_FUNCTIONS:
                if function_code in WRITE_FUNCTIONS:
                    return None  # the read-back of a write: echo what was written
                return ExcCodes.ILLEGAL_FUNCTION
            offset = address - start_address
            registers[offset:offset + count] = pb.read_raw(unit, address, count, pb.clock())
        except RegisterError as err:
            return ExcCodes(err.exc_code)
        return None
