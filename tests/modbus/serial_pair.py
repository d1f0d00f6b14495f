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

import pytest
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimData, SimDevice, simcore


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


def silent_absent_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a pymodbus server ignore requests for unit ids it does not hold, as an absent
    device on a real bus does (with `ignore_missing_devices`). pymodbus 3.16's simulator falls
    back to unit 0 instead and fails with a KeyError (exception 4)."""

    def get_device(core: simcore.SimCore, device_id: int) -> object:
        if device_id not in core.devices:
            raise NoSuchIdException(str(device_id))
        return core.devices[device_id]

    monkeypatch.setattr(simcore.SimCore, "_SimCore__get_device", get_device)


@contextlib.asynccontextmanager
async def rtu_server(simdata: list[SimData], port: str, *, baudrate: int = 9600,
                     parity: str = "N", units: tuple[int, ...] = (0,)
                     ) -> AsyncIterator[ModbusSerialServer]:
    """A pymodbus Modbus RTU server on the serial port `port` holding `simdata` as each of
    `units` (0: answering any unit id). Absent units get no answer (see silent_absent_units)."""
    devices = [SimDevice(id=unit, simdata=simdata) for unit in units]
    server = ModbusSerialServer(devices, port=port, baudrate=baudrate, parity=parity,
                                ignore_missing_devices=True)
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()
