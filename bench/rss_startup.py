"""Resident memory with 10 / 100 / 1000 devices, and start-up time to the first answer.

    .venv/bin/python bench/rss_startup.py [--sizes 10,100,1000] [--starts 3] [--settle-s 5]
                                          [--json]

Baseline, measured in the same run: a *bare* process that imports aiohttp and pymodbus, serves
one JSON handler over aiohttp and the Power Brain register layout over a bare pymodbus server
(nothing behind either) — the least a process with chargebrain's two servers can weigh and
take to start.

For each size N a real `chargebrain serve` (child process, default 3 s cycle, Modbus on) is
configured through the API to N devices in total: the factory E1, M1, M2, then about a tenth
charging groups, wallboxes (`evse_sim`, each with a plugged-in virtual car) spread over the
groups and simulated meters. After `--settle-s` seconds of running cycles its RSS
(/proc/PID/status VmRSS, median of 5 samples one second apart) is taken. Then the process is
stopped (SIGTERM) and started again `--starts` times on the same data: the start-up time is
from `Popen` to the first answered `cmd=get_dev_info` (median), with those N devices loaded.
Targets (spec §11): RSS with 100 devices < 80 MB; start to first answer < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Server, exit_on_sigterm, free_port_block, machine, rss_bytes, stop, wait_http

PASSWORD = "bench-admin-pw"
RSS_TARGET_MB = 80.0
STARTUP_TARGET_S = 2.0

BARE = r"""
import asyncio, sys
from aiohttp import web
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from chargebrain.powerbrain.registers import LAYOUTS

async def main(http_port, modbus_port):
    app = web.Application()
    async def handler(request):
        return web.json_response({"params": {}, "devices": []})
    app.router.add_get("/cnf", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    blocks = [SimData(a, values=[0] * n, datatype=DataType.REGISTERS)
              for a, n in LAYOUTS["evse"].runs()]
    server = ModbusTcpServer(SimDevice(id=0, simdata=blocks), address=("127.0.0.1", modbus_port))
    await server.serve_forever(background=True)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def _rss_median(pid: int, samples: int = 5) -> float:
    values = []
    for i in range(samples):
        if i:
            time.sleep(1.0)
        values.append(rss_bytes(pid) / 2**20)
    return statistics.median(values)


def bare_baseline(starts: int) -> dict[str, float]:
    """RSS and time to first answer of the bare aiohttp + pymodbus process."""
    times, rss = [], []
    for _ in range(starts):
        http_port, modbus_port = free_port_block(1), free_port_block(1)
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", BARE, str(http_port), str(modbus_port)])
        try:
            wait_http(f"http://127.0.0.1:{http_port}/cnf", proc=proc, poll_s=0.005)
            times.append(time.perf_counter() - began)
            rss.append(_rss_median(proc.pid, 3))
        finally:
            stop(proc)
    return {"rss_mb": round(statistics.median(rss), 1),
            "startup_s": round(statistics.median(times), 3)}


def configure(server: Server, total: int) -> int:
    """Grow the installation to `total` devices through the API; returns the count."""
    existing = len(server.call("cmd=get_devices"))
    to_add = max(0, total - existing)
    groups = to_add // 10
    evses = (to_add - groups) // 2
    meters = to_add - groups - evses
    group_ids = []
    for i in range(groups):
        server.call("cmd=set_device", {"devices": [{
            "dev_type": "evse_group", "name": f"Group {i + 1}", "max_charging_cur": 63000}]})
    for device in server.call("cmd=get_devices"):
        if device["dev_type"] == "evse_group":
            group_ids.append(int(device["dev_id"][1:]))
    for i in range(evses):
        group = group_ids[i % len(group_ids)] if group_ids else 0
        server.call("cmd=set_device", {"devices": [{
            "dev_type": "evse_sim", "name": f"Box {i + 1}", "group": group,
            "phase_rotation": (0, 120, 240)[i % 3]}]})
    for i in range(meters):
        server.call("cmd=set_device", {"devices": [{
            "dev_type": "meter_sim", "name": f"Meter {i + 1}", "role": 0}]})
    for device in server.call("cmd=get_devices"):
        if device["dev_type"] == "evse_sim":
            server.call(f"cmd=sim_vehicle&dev_id={device['dev_id']}&plugged=1&phases=3"
                        "&max_current=16000&soc=20&capacity=60000")
    return len(server.call("cmd=get_devices"))


def measure(size: int, starts: int, settle_s: float, root: Path) -> dict[str, Any]:
    data_dir = root / f"n{size}" / "data"
    data_dir.mkdir(parents=True)
    with Server(data_dir, password=PASSWORD, cycle_ms=3000) as server:
        first_start_s = server.start()
        count = configure(server, size)
        time.sleep(settle_s)
        assert server.proc is not None
        rss_mb = _rss_median(server.proc.pid)
    times = []
    for _ in range(starts):
        with Server(data_dir, password=PASSWORD, cycle_ms=3000) as again:
            times.append(again.start())
            assert len(again.call("cmd=get_dev_info")["devices"]) == count
    return {"devices": count, "rss_mb": round(rss_mb, 1),
            "startup_s": round(statistics.median(times), 3),
            "first_start_s": round(first_start_s, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    baseline = bare_baseline(args.starts)
    results = []
    with tempfile.TemporaryDirectory(prefix="chargebrain-rss-") as tmp:
        for size in sizes:
            print(f"rss_startup: {size} devices …", file=sys.stderr, flush=True)
            row = measure(size, args.starts, args.settle_s, Path(tmp))
            row["rss_ratio"] = round(row["rss_mb"] / baseline["rss_mb"], 2)
            row["startup_ratio"] = round(row["startup_s"] / baseline["startup_s"], 2)
            results.append(row)
    hundred = next((r for r in results if r["devices"] >= 100), None)
    met = {
        "rss_100_devices": None if hundred is None else hundred["rss_mb"] < RSS_TARGET_MB,
        "startup": all(r["startup_s"] < STARTUP_TARGET_S for r in results),
    }
    out = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "baseline": baseline,
           "results": results, "targets": {"rss_100_devices_mb": RSS_TARGET_MB,
                                           "startup_s": STARTUP_TARGET_S}, "met": met,
           "pid": os.getpid()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"machine: {out['machine']}  date: {out['date']}")
        print(f"bare aiohttp+pymodbus: RSS {baseline['rss_mb']} MB, "
              f"first answer {baseline['startup_s']} s")
        print("| devices | RSS MB | × bare | start to first answer s | × bare | first start s |")
        print("|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['devices']} | {r['rss_mb']} | {r['rss_ratio']} | {r['startup_s']} | "
                  f"{r['startup_ratio']} | {r['first_start_s']} |")
    return 0 if all(v is not False for v in met.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
