"""Benchmark: one read of every device with many Modbus meters, each server answering late.

    .venv/bin/python bench/bench_meters.py [--meters 100] [--slowest-ms 200] [--rounds 5]

Starts `--meters` pymodbus TCP servers on loopback, each holding an SDM630 register layout and
answering every request after its own injected latency (spread evenly from `slowest-ms / meters`
up to `slowest-ms`), and one chargebrain (in this process) with one `meter_sdm630` per server.
It then times `DeviceRegistry.read_all` (what the control cycle does each period) `--rounds`
times. Reads are concurrent and batched, so a round should take about the slowest device's
latency times its requests per read (2 for the SDM630 definition), not the sum over devices.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from chargebrain.app import ChargeBrain, Settings
from chargebrain.modbus.codec import DataType, encode
from common import free_port

PASSWORD = "bench-admin-pw"

SDM630 = {0x00: 230.0, 0x02: 230.0, 0x04: 230.0, 0x06: 10.0, 0x08: 10.0, 0x0A: 10.0,
          0x34: 6900.0, 0x48: 1234.5, 0x4A: 0.0}


def layout() -> list[int]:
    words = [0] * 0x50
    for address, value in SDM630.items():
        words[address:address + 2] = encode(value, DataType.F32)
    return words


async def start_server(latency_s: float) -> tuple[int, ModbusTcpServer]:
    async def late(*_: object) -> None:
        await asyncio.sleep(latency_s)

    port = free_port()
    device = SimDevice(id=0, simdata=[SimData(0, values=layout(), datatype=SimType.REGISTERS)],
                       action=late)
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return port, server


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--slowest-ms", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    latencies = [args.slowest_ms / 1000 * (i + 1) / args.meters for i in range(args.meters)]
    servers = [await start_server(lat) for lat in latencies]
    with tempfile.TemporaryDirectory() as tmp:
        app = ChargeBrain(Settings(data_dir=Path(tmp), port=0, modbus_port=0,
                                   admin_password=PASSWORD, cycle_ms=60000))
        app.cycle.start_delay_s = 3600  # no cycle of its own: this script reads
        await app.start()
        try:
            url = f"http://127.0.0.1:{app.http_port}/cnf?cmd=set_device"
            auth = {"Authorization": aiohttp.encode_basic_auth("admin", PASSWORD)}
            async with aiohttp.ClientSession(headers=auth) as session:
                for port, _ in servers:
                    body = {"devices": [{"dev_type": "meter_sdm630", "com_timeout_ms": 5000,
                                         "address": f"127.0.0.1:{port}"}]}
                    async with session.post(url, json=body) as response:
                        assert response.status == 200, await response.text()
            registry = app.devices
            times_s, failed = [], 0
            for _ in range(args.rounds + 1):  # the first round also connects: not counted
                start = time.perf_counter()
                results = await registry.read_all(registry.clock())
                times_s.append(time.perf_counter() - start)
                failed += sum(1 for r in results.values() if r is None)
            meters = [d for d in registry.all() if d.config.dev_type == "meter_sdm630"]
            requests = sum(d.driver.requests for d in meters) / len(meters) / (args.rounds + 1)
        finally:
            await app.stop()
            for _, server in servers:
                await server.shutdown()
    measured = times_s[1:]
    print(json.dumps({
        "meters": args.meters, "slowest_ms": args.slowest_ms,
        "requests_per_meter_read": requests,
        "sum_of_latencies_ms": round(sum(latencies) * requests * 1000),
        "slowest_device_ms": round(max(latencies) * requests * 1000),
        "read_all_median_ms": round(statistics.median(measured) * 1000, 1),
        "read_all_max_ms": round(max(measured) * 1000, 1),
        "failed_reads": failed,
    }))


if __name__ == "__main__":
    asyncio.run(main())
