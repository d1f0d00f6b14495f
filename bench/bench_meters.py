"""Benchmark: one read of every device with many Modbus meters and remote Power Brains, each
server answering late.

    .venv/bin/python bench/bench_meters.py [--meters 100] [--powerbrains 20] [--slowest-ms 200]
                                           [--rounds 5]

Starts `--meters` pymodbus TCP servers on loopback, each holding an SDM630 register layout, and
`--powerbrains` more, each holding a Power Brain wallbox's register image (the defaults of the
register table, powerbrain/registers.py, with a charging car and a meter), every one answering
each request after its own injected latency (spread evenly from `slowest-ms / servers` up to
`slowest-ms`), and one chargebrain (in this process) with one `meter_sdm630` or remote
`evse_powerbrain` per server. It then times `DeviceRegistry.read_all` (what the control cycle
does each period) `--rounds` times. Reads are concurrent and batched, so a round should take
about the slowest device's latency times its requests per read (2 for the SDM630 definition,
2 for a Power Brain wallbox with a meter), not the sum over devices. Prints one JSON object.
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
from chargebrain.modbus.address import Endpoint
from chargebrain.modbus.client import shared_pool
from chargebrain.modbus.codec import DataType, encode
from chargebrain.powerbrain.registers import BASE_ADDRESS, LAYOUTS
from chargebrain.powerbrain.registers import encode as encode_field
from common import free_port

PASSWORD = "bench-admin-pw"

SDM630 = {0x00: 230.0, 0x02: 230.0, 0x04: 230.0, 0x06: 10.0, 0x08: 10.0, 0x0A: 10.0,
          0x34: 6900.0, 0x48: 1234.5, 0x4A: 0.0}


def layout() -> list[int]:
    words = [0] * 0x50
    for address, value in SDM630.items():
        words[address:address + 2] = encode(value, DataType.F32)
    return words


POWERBRAIN = {"has_meter": 1, "charge_pilot_state": 2, "cable_current": 320,  # charging, 32 A
              "charging_cur_limit": 160, "charging_current": 160, "charging_enable": 1,
              "current_l1": 160, "current_l2": 160, "current_l3": 160, "power": 11040,
              "energy": 123456}


def powerbrain_layout() -> list[int]:
    """A Power Brain wallbox's registers from 8000: the table's defaults, a charging car."""
    layout = LAYOUTS["evse"]
    words = [0] * (layout.end - BASE_ADDRESS)
    for reg in layout.fields:
        if reg.readable:
            value = POWERBRAIN.get(reg.name, reg.default_for("evse"))
            words[reg.address - BASE_ADDRESS:reg.address - BASE_ADDRESS + reg.size] = \
                encode_field(reg, value)
    return words


async def start_server(latency_s: float, powerbrain: bool = False
                       ) -> tuple[int, ModbusTcpServer]:
    async def late(*_: object) -> None:
        await asyncio.sleep(latency_s)

    port = free_port()
    simdata = SimData(BASE_ADDRESS, values=powerbrain_layout(), datatype=SimType.REGISTERS) \
        if powerbrain else SimData(0, values=layout(), datatype=SimType.REGISTERS)
    device = SimDevice(id=0, simdata=[simdata], action=late)
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return port, server


def spread(meters: int, powerbrains: int) -> list[str]:
    """Device kinds in server order: the Power Brains spread evenly among the meters, so both
    kinds see short and long latencies."""
    count = meters + powerbrains
    slots = {round((i + 0.5) * count / powerbrains - 0.5) for i in range(powerbrains)} \
        if powerbrains else set()
    return ["evse_powerbrain" if i in slots else "meter_sdm630" for i in range(count)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--powerbrains", type=int, default=20)
    parser.add_argument("--slowest-ms", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = spread(args.meters, args.powerbrains)
    latencies = [args.slowest_ms / 1000 * (i + 1) / len(kinds) for i in range(len(kinds))]
    servers = [await start_server(lat, kind == "evse_powerbrain")
               for lat, kind in zip(latencies, kinds, strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        app = ChargeBrain(Settings(data_dir=Path(tmp), port=0, modbus_port=0,
                                   admin_password=PASSWORD, cycle_ms=60000))
        app.cycle.start_delay_s = 3600  # no cycle of its own: this script reads
        await app.start()
        try:
            url = f"http://127.0.0.1:{app.http_port}/cnf?cmd=set_device"
            auth = {"Authorization": aiohttp.encode_basic_auth("admin", PASSWORD)}
            async with aiohttp.ClientSession(headers=auth) as session:
                for (port, _), kind in zip(servers, kinds, strict=True):
                    body = {"devices": [{"dev_type": kind, "com_timeout_ms": 5000, "id": 1,
                                         "address": f"127.0.0.1:{port}"}]}
                    async with session.post(url, json=body) as response:
                        assert response.status == 200, await response.text()
            registry = app.devices
            pool = shared_pool()

            def sent() -> dict[str, int]:  # Modbus requests so far, per device kind
                out = dict.fromkeys(("meter_sdm630", "evse_powerbrain"), 0)
                for (port, _), kind in zip(servers, kinds, strict=True):
                    conn = pool.connection(Endpoint("127.0.0.1", port))
                    out[kind] += conn.requests if conn is not None else 0
                return out

            times_s, failed = [], 0
            for round_no in range(args.rounds + 1):  # the first round also connects
                if round_no == 1:
                    before = sent()
                start = time.perf_counter()
                results = await registry.read_all(registry.clock())
                times_s.append(time.perf_counter() - start)
                failed += sum(1 for r in results.values() if r is None)
            after = sent()
            requests = {kind: (after[kind] - before[kind]) / max(1, kinds.count(kind))
                        / args.rounds for kind in after}
        finally:
            await app.stop()
            for _, server in servers:
                await server.shutdown()
    measured = times_s[1:]
    per_read = [requests[kind] for kind in kinds]
    print(json.dumps({
        "meters": args.meters, "powerbrains": args.powerbrains, "slowest_ms": args.slowest_ms,
        "requests_per_read": requests,
        "sum_of_latencies_ms": round(sum(lat * n for lat, n in zip(latencies, per_read,
                                                                  strict=True)) * 1000),
        "slowest_device_ms": round(max(lat * n for lat, n in zip(latencies, per_read,
                                                                 strict=True)) * 1000),
        "read_all_median_ms": round(statistics.median(measured) * 1000, 1),
        "read_all_max_ms": round(max(measured) * 1000, 1),
        "failed_reads": failed,
    }))


if __name__ == "__main__":
    asyncio.run(main())
