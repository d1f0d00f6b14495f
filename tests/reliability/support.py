"""Shared helpers of the reliability suites: fuzz example counts, raw Modbus frames, probes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from pathlib import Path

from tests.support.server import ServerProcess

FUZZ_EXAMPLES_ENV = "CHARGEBRAIN_FUZZ_EXAMPLES"
PROBE_TIMEOUT_S = 10.0  # a bound on waiting, never a performance assertion

CHARGING_CUR_LIMIT = 8093  # EVSE register, 160 (16 A) on a fresh installation
FRESH_LIMIT = 160


def fuzz_examples(default: int) -> int:
    """Hypothesis examples per fuzz test: `default`, or more via CHARGEBRAIN_FUZZ_EXAMPLES."""
    raw = os.environ.get(FUZZ_EXAMPLES_ENV, "").strip()
    return max(default, int(raw)) if raw.isdigit() else default


def mbap(tid: int, pdu: bytes, *, unit: int = 1, pid: int = 0, length: int | None = None
         ) -> bytes:
    """A Modbus TCP frame; `length` overrides the MBAP length field (normally len(pdu) + 1)."""
    size = len(pdu) + 1 if length is None else length
    return struct.pack(">HHHB", tid, pid, size, unit) + pdu


def read_request(tid: int, address: int = CHARGING_CUR_LIMIT, count: int = 1,
                 unit: int = 1) -> bytes:
    return mbap(tid, struct.pack(">BHH", 3, address, count), unit=unit)


def read_response(tid: int, values: list[int], unit: int = 1) -> bytes:
    """The exact answer a correct server gives to `read_request`."""
    pdu = struct.pack(">BB", 3, 2 * len(values)) + b"".join(struct.pack(">H", v)
                                                              for v in values)
    return mbap(tid, pdu, unit=unit)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> bytes:
    """One whole Modbus TCP frame (header, then as many bytes as its length field says)."""
    header = recv_exactly(sock, 7)
    length = struct.unpack(">H", header[4:6])[0]
    return header + recv_exactly(sock, max(0, length - 1))


def start_server(data_dir: Path, *, attempts: int = 3, extra: list[str] | None = None
                 ) -> ServerProcess:
    """`chargebrain serve` as a child process on free ports. The ports are chosen before the
    child binds them, and a busy test machine may take one meanwhile: then try new ports."""
    for attempt in range(attempts):
        proc = ServerProcess(data_dir, extra=extra)
        try:
            proc.start()
            return proc
        except RuntimeError:
            proc.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def probe(port: int, tid: int = 0x4242) -> None:
    """A well-behaved client on a fresh connection reads 8093 and gets exactly the right
    answer (raises otherwise)."""
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as sock:
        sock.sendall(read_request(tid))
        expected = read_response(tid, [FRESH_LIMIT])
        answer = recv_exactly(sock, len(expected))
    assert answer == expected, answer.hex()


def pymodbus_probe(port: int) -> None:
    """The same check with a normal pymodbus client (what a driver of other EV software uses)."""
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=port, timeout=PROBE_TIMEOUT_S, retries=1)
    try:
        assert client.connect()
        result = client.read_holding_registers(CHARGING_CUR_LIMIT, count=1, device_id=1)
        assert not result.isError(), result
        assert result.registers == [FRESH_LIMIT]
        vendor = client.read_holding_registers(8000, count=2, device_id=1)
        assert vendor.registers == [0xCF05, 0]
    finally:
        client.close()


def open_fds(pid: int) -> int:
    """Open file descriptors of a process (Linux)."""
    return len(os.listdir(Path("/proc") / str(pid) / "fd"))


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux)."""
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class LoopWatch:
    """Notices when this process's event loop could not run because the machine gave it no
    CPU (other processes, a loaded CI runner), as opposed to our own code keeping it busy.

    A task sleeps `tick_s` over and over. A tick that took much longer than asked is a stall;
    if this thread's CPU time advanced by less than half the stall meanwhile, the thread was
    waiting for a CPU, not working: that part is recorded as starvation. Checks of the cycle's
    rhythm may excuse starvation (the machine's fault), never a busy stall (ours)."""

    def __init__(self, tick_s: float = 0.01, stall_s: float = 0.05) -> None:
        self.tick_s = tick_s
        self.stall_s = stall_s
        self.starved: list[tuple[float, float]] = []  # (loop time from, to)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wall0, cpu0 = loop.time(), time.thread_time()
            await asyncio.sleep(self.tick_s)
            wall1, cpu1 = loop.time(), time.thread_time()
            late = (wall1 - wall0) - self.tick_s
            if late > self.stall_s and (cpu1 - cpu0) < late / 2:
                self.starved.append((wall0, wall1))

    def starved_within(self, start: float, end: float) -> float:
        """Seconds of starvation overlapping the loop-time span [start, end]."""
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.starved)
