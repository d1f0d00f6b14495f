"""Benchmark: Modbus TCP register reads of the built-in Power Brain vs a bare pymodbus server.

    .venv/bin/python bench/bench_modbus.py [--seconds 3] [--rounds 3] [--clients 4]

Starts, as child processes on loopback:
- a *bare* pymodbus 3.16 TCP server (SimDevice/SimData with the same register layout, no
  action, nothing behind it) — the baseline;
- `python -m chargebrain serve` (the real process: HTTP API, Modbus TCP, simulated hardware).

This process is the load generator: `--clients` connections, each sending a function-3 read
of 8090..8113 (24 registers, what a driver reads every cycle) and waiting for the answer, as
fast as it can for `--seconds`. Raw MBAP frames over asyncio streams keep the client cheap, so
the server is what is measured. Bare and chargebrain rounds alternate; the medians are
compared (target: chargebrain ≥ 80 % of bare). Every answer is checked (function 3, 48 data
bytes), an exception answer stops the run.

Then the HTTP rate of `cmd=modbus&device=evse&read=8093` against the same chargebrain process
(aiohttp client, `--clients` concurrent requests), for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Server, exit_on_sigterm, free_port, machine, stop, wrk_rate

READ_ADDRESS = 8090
READ_COUNT = 24
PASSWORD = "bench-admin-pw"


# -- the bare baseline server (child process) --------------------------------------------------

def serve_bare(port: int) -> None:
    """A pymodbus server with the EVSE unit's register layout and nothing behind it."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    from chargebrain.powerbrain.registers import LAYOUTS

    async def main() -> None:
        blocks = [SimData(a, values=[0] * n, datatype=DataType.REGISTERS)
                  for a, n in LAYOUTS["evse"].runs()]
        server = ModbusTcpServer(SimDevice(id=0, simdata=blocks), address=("127.0.0.1", port))
        await server.serve_forever()

    asyncio.run(main())


# -- load generators -----------------------------------------------------------------------------

async def modbus_client(port: int, deadline: float, counts: list[int], index: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    tid = 0
    try:
        while time.perf_counter() < deadline:
            tid = (tid + 1) & 0xFFFF
            writer.write(struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, READ_ADDRESS, READ_COUNT))
            header = await reader.readexactly(7)
            r_tid, _, length, _ = struct.unpack(">HHHB", header)
            body = await reader.readexactly(length - 1)
            if r_tid != tid or body[0] != 3 or body[1] != 2 * READ_COUNT:
                raise RuntimeError(f"unexpected answer {header + body!r}")
            counts[index] += 1
    finally:
        writer.close()


async def modbus_rate(port: int, seconds: float, clients: int) -> float:
    counts = [0] * clients
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(modbus_client(port, deadline, counts, i) for i in range(clients)))
    return sum(counts) / (time.perf_counter() - start)


# -- processes ----------------------------------------------------------------------------------

def wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0

    exit_on_sigterm()
    bare_port = free_port()
    bare_rates: list[float] = []
    cb_rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cb = Server(Path(tmp) / "data", password=PASSWORD, log=False)
        modbus_base = cb.modbus_base
        bare: subprocess.Popen[bytes] | None = None
        try:
            bare = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(bare_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(bare_port)
            cb.start(timeout_s=20)
            wait_port(modbus_base)
            asyncio.run(modbus_rate(bare_port, 0.5, args.clients))  # warm-up
            asyncio.run(modbus_rate(modbus_base, 0.5, args.clients))
            for _ in range(args.rounds):
                bare_rates.append(asyncio.run(modbus_rate(bare_port, args.seconds,
                                                          args.clients)))
                cb_rates.append(asyncio.run(modbus_rate(modbus_base, args.seconds,
                                                        args.clients)))
            http = wrk_rate(f"{cb.url}/cnf?cmd=modbus&device=evse&read=8093",
                            args.seconds)["rps"]
        finally:
            cb.stop()
            if bare is not None:
                stop(bare)

    bare_med = statistics.median(bare_rates)
    cb_med = statistics.median(cb_rates)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(cpu_model=False),
        "clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
        "bare_reads_per_s": round(bare_med), "chargebrain_reads_per_s": round(cb_med),
        "ratio": round(cb_med / bare_med, 3),
        "bare_rounds": [round(r) for r in bare_rates],
        "chargebrain_rounds": [round(r) for r in cb_rates],
        "http_modbus_reads_per_s": round(http),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"Modbus TCP reads/s (FC3, {READ_COUNT} registers, {args.clients} connections, "
              f"median of {args.rounds} × {args.seconds:g} s)")
        print(f"  bare pymodbus : {result['bare_reads_per_s']:>8}  {result['bare_rounds']}")
        print(f"  chargebrain   : {result['chargebrain_reads_per_s']:>8}  "
              f"{result['chargebrain_rounds']}")
        print(f"  ratio         : {result['ratio']:.1%} (target ≥ 80 %)")
        print(f"HTTP cmd=modbus reads/s: {result['http_modbus_reads_per_s']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
