"""Misbehaving network devices for fault-injection tests (loopback only).

`FaultyProxy` sits between chargebrain and a real Modbus TCP device (another chargebrain's
Power Brain port) and can be switched at any time to misbehave:
- `PASS`: forward bytes both ways (a healthy device);
- `HANG`: accept and read, never answer (a hung device or a dead network path);
- `RESET`: reset every connection at once (a device that reboots or refuses);
- `GARBAGE`: answer every request with random bytes (a confused device or wrong protocol);
- `EXCEPTION`: answer every request with Modbus exception 4 (server device failure).
Switching closes the connections of the old mode, as a real fault would.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct


class Mode(enum.Enum):
    PASS = "pass"
    HANG = "hang"
    RESET = "reset"
    GARBAGE = "garbage"
    EXCEPTION = "exception"


class FaultyProxy:
    """A TCP proxy on a free loopback port in front of `target_port`."""

    def __init__(self, target_port: int, mode: Mode = Mode.PASS, seed: int = 0) -> None:
        self.target_port = target_port
        self.mode = mode
        self.rng = random.Random(seed)
        self.port = 0
        self.connections = 0  # accepted so far
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> FaultyProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def switch(self, mode: Mode) -> None:
        """Misbehave differently from now on; open connections are dropped."""
        self.mode = mode
        for writer in list(self._writers):
            _abort(writer)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _abort(writer)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultyProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            _abort(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode is Mode.RESET:
            return  # _abort resets the connection
        if mode is Mode.HANG:
            while await reader.read(4096):
                pass
            return
        if mode in (Mode.GARBAGE, Mode.EXCEPTION):
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(max(0, length - 1))
                if mode is Mode.GARBAGE:
                    writer.write(self.rng.randbytes(self.rng.randrange(1, 40)))
                else:
                    function = pdu[0] if pdu else 0
                    writer.write(struct.pack(">HHHBBB", tid, 0, 3, unit, function | 0x80, 4))
                await writer.drain()
                if self.mode is not mode:
                    return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1",
                                                                         self.target_port)
        self._writers.add(upstream_writer)
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            self._writers.discard(upstream_writer)
            _abort(upstream_writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (RST), as a crashing device's network stack does."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError, ValueError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
