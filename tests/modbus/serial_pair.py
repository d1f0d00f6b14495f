"""A pseudo-terminal pair for Modbus RTU tests: what one end sends, the other receives, as on
a real RS-485 adapter pair. Made by `socat` (Debian's package; bin/test installs it where
missing), and a pymodbus RTU server on one end."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimData, SimDevice


@contextlib.asynccontextmanager
async def pty_pair(folder: Path) -> AsyncIterator[tuple[str, str]]:
    """Two linked pseudo terminals: (the client's end, the server's end), as paths."""
    socat = shutil.which("socat")
    assert socat is not None, "socat is missing: bin/test installs it (apt-get install socat)"
    client_end, server_end = folder / "ttyCLIENT", folder / "ttySERVER"
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={client_end}",
                             f"pty,raw,echo=0,link={server_end}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if client_end.exists() and server_end.exists():
                break
            assert proc.poll() is None, "socat ended at once"
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("socat made no pseudo terminals")
        yield str(client_end), str(server_end)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def rtu_server(simdata: list[SimData], port: str, *, baudrate: int = 9600,
                     parity: str = "N") -> AsyncIterator[ModbusSerialServer]:
    """A pymodbus Modbus RTU server on the serial port `port`, answering any unit id."""
    server = ModbusSerialServer(SimDevice(id=0, simdata=simdata), port=port, baudrate=baudrate,
                                parity=parity)
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()
