"""Soak run: the demo site plus 100 simulated devices under API load, for minutes or hours.

    .venv/bin/python bench/soak.py --minutes 30 [--devices 100] [--cycle-ms 1000]
                                   [--rps 100] [--clients 4] [--sample-s 5] [--json]

Starts `chargebrain serve --demo` as a child process on free loopback ports, adds `--devices`
simulated devices through the API (5 charging groups, wallboxes with plugged-in cars spread
over them, simulated meters), then runs an API load generator as a second process
(`--loadgen`: `--clients` keep-alive connections sharing `--rps` requests per second: reads of
get_dev_info, get_params, explain, cmd=modbus, get_devices, get_transactions; writes of CM
variables; cars plugged and unplugged; some refused requests) for `--minutes`. Every
`--sample-s` it samples the server's resident memory (/proc/PID/status VmRSS) and the number of
the last completed control cycle (`cmd=explain`). At the end the server gets SIGTERM and the
database its integrity check.

Verdict (exit status 0 when all hold):
- memory: the median RSS of the last tenth of the run is at most 10 % above the median of the
  tenth right after warm-up (warm-up: the first fifth, at least 20 s);
- cycles: none missed — completed cycles ≥ elapsed time / period − 1 between the first and
  the last sample;
- the load generator saw no 5xx answer and no broken connection; the server stayed up, exited
  with status 0 on SIGTERM, and `PRAGMA integrity_check` is ok.
tests/reliability/test_soak.py runs the 2-minute variant in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import Server, exit_on_sigterm, machine, rss_bytes

PASSWORD = "soak-admin-pw"
DB_FILE = "chargebrain.sqlite3"
GROUPS = 5
MAX_GROWTH = 0.10


def add_devices(server: Server, count: int) -> list[str]:
    """`count` simulated devices through the API: groups, wallboxes with cars, meters.
    Returns the wallboxes' dev_ids."""
    before = {d["dev_id"] for d in server.call("cmd=get_devices")}
    groups = min(GROUPS, count)
    evses = (count - groups) // 2
    meters = count - groups - evses
    group_numbers = []
    for i in range(groups):
        server.call("cmd=set_device", {"devices": [{
            "dev_type": "evse_group", "name": f"Soak group {i + 1}",
            "max_charging_cur": 63000}]})
    for device in server.call("cmd=get_devices"):
        if device["dev_id"] not in before and device["dev_type"] == "evse_group":
            group_numbers.append(int(device["dev_id"][1:]))
    for i in range(evses):
        group = group_numbers[i % len(group_numbers)] if group_numbers else 0
        server.call("cmd=set_device", {"devices": [{
            "dev_type": "evse_sim", "name": f"Soak box {i + 1}", "group": group,
            "phase_rotation": (0, 120, 240)[i % 3]}]})
    for i in range(meters):
        server.call("cmd=set_device", {"devices": [{
            "dev_type": "meter_sim", "name": f"Soak meter {i + 1}", "role": 0}]})
    boxes = [d["dev_id"] for d in server.call("cmd=get_devices")
             if d["dev_id"] not in before and d["dev_type"] == "evse_sim"]
    for i, dev_id in enumerate(boxes):
        server.call(f"cmd=sim_vehicle&dev_id={dev_id}&plugged=1&phases={1 if i % 4 == 0 else 3}"
                    f"&max_current=16000&soc={10 + i % 60}&capacity=60000")
    return boxes


def cycle_number(server: Server) -> int:
    return int(server.call("cmd=explain&dev_id=E1")["cycle"])


# -- the load generator (second process) ------------------------------------------------------

@dataclass
class LoadResult:
    requests: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    broken: int = 0  # connection errors / timeouts
    seconds: float = 0.0


async def _loadgen(url: str, seconds: float, rps: float, clients: int, boxes: list[str],
                   seed: int) -> LoadResult:
    import aiohttp

    result = LoadResult()
    rng = random.Random(seed)
    headers = {"Authorization": aiohttp.encode_basic_auth("admin", PASSWORD)}
    interval = clients / rps if rps > 0 else 0.0
    started = time.monotonic()
    deadline = started + seconds

    def pick() -> tuple[str, str, Any]:
        roll = rng.random()
        if roll < 0.35:
            return "GET", "cmd=get_dev_info", None
        if roll < 0.45:
            return "GET", "cmd=get_params", None
        if roll < 0.55:
            return "GET", "cmd=explain&dev_id=E1", None
        if roll < 0.63:
            return "GET", "cmd=modbus&device=evse&read=8093", None
        if roll < 0.68:
            return "GET", "cmd=get_devices", None
        if roll < 0.73:
            since = int(time.time()) - 60
            return "GET", f"cmd=get_transactions&from={since}", None
        if roll < 0.85:
            name = f"soak{rng.randrange(16)}"
            return "GET", f"cmd=set_cm_vars&name={name}&val={rng.randrange(10**6)}", None
        if roll < 0.93 and boxes:
            box = rng.choice(boxes)
            return "GET", f"cmd=sim_vehicle&dev_id={box}&plugged={rng.randrange(2)}", None
        if roll < 0.97:
            return "POST", "cmd=set_cm_vars", {"vars": [{"name": "bad name", "expr": 1}]}
        return "GET", "cmd=explain&dev_id=E999", None

    async def client(session: aiohttp.ClientSession, offset: float) -> None:
        next_at = time.monotonic() + offset
        while time.monotonic() < deadline:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            method, query, body = pick()
            try:
                async with session.request(method, f"{url}/cnf?{query}", json=body,
                                           headers=headers) as resp:
                    await resp.read()
                    key = str(resp.status)
                    result.by_status[key] = result.by_status.get(key, 0) + 1
            except (aiohttp.ClientError, TimeoutError):
                result.broken += 1
            result.requests += 1

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session, i * interval / max(1, clients))
                               for i in range(clients)))
    result.seconds = time.monotonic() - started
    return result


def start_loadgen(server: Server, seconds: float, rps: float, clients: int, boxes: list[str]
                  ) -> subprocess.Popen[str]:
    args = [sys.executable, __file__, "--loadgen", "--url", server.url, "--seconds",
            str(seconds), "--rps", str(rps), "--clients", str(clients), "--boxes",
            ",".join(boxes)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


# -- the run ----------------------------------------------------------------------------------

@dataclass
class Sample:
    t_s: float
    rss_mb: float
    cycle: int


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(samples: list[Sample], period_s: float, load: dict[str, Any], exit_status: int | None,
            integrity: str) -> dict[str, Any]:
    """The numbers and whether each criterion holds."""
    duration = samples[-1].t_s - samples[0].t_s if len(samples) > 1 else 0.0
    warm = max(20.0, duration / 5)
    tenth = max(duration / 10, 1e-9)
    after_warm = [s.rss_mb for s in samples if warm <= s.t_s - samples[0].t_s <= warm + tenth]
    last = [s.rss_mb for s in samples if s.t_s - samples[0].t_s >= duration - tenth]
    base_mb, end_mb = _median(after_warm), _median(last)
    growth = end_mb / base_mb - 1 if after_warm and last else float("nan")
    elapsed = samples[-1].t_s - samples[0].t_s if len(samples) > 1 else 0.0
    done = samples[-1].cycle - samples[0].cycle if len(samples) > 1 else 0
    expected = elapsed / period_s
    missed = max(0, int(expected - 1 - done + 0.999)) if expected >= 1 else 0
    status = load.get("by_status", {})
    five_xx = sum(n for code, n in status.items() if code.startswith("5"))
    checks = {
        "memory_growth_ok": bool(growth <= MAX_GROWTH),
        "no_missed_cycles": missed == 0,
        "no_5xx": five_xx == 0,
        "no_broken_connections": load.get("broken", 1) == 0,
        "clean_exit": exit_status == 0,
        "integrity_ok": integrity == "ok",
    }
    return {
        "rss_after_warmup_mb": round(base_mb, 1), "rss_end_mb": round(end_mb, 1),
        "rss_max_mb": round(max(s.rss_mb for s in samples), 1),
        "rss_growth_pct": round(growth * 100, 2),
        "cycles_completed": done, "cycles_expected": round(expected, 1),
        "missed_cycles": missed, "requests": load.get("requests", 0),
        "requests_per_s": round(load.get("requests", 0) / max(load.get("seconds", 1), 1e-9), 1),
        "by_status": status, "five_xx": five_xx, "broken": load.get("broken"),
        "exit_status": exit_status, "integrity": integrity, "checks": checks,
        "ok": all(checks.values()),
    }


def soak(minutes: float, devices: int, cycle_ms: int, rps: float, clients: int,
         sample_s: float, data_root: Path) -> dict[str, Any]:
    data_dir = data_root / "data"
    loadgen: subprocess.Popen[str] | None = None
    with Server(data_dir, password=PASSWORD, cycle_ms=cycle_ms, demo=True) as server:
        startup_s = server.start()
        try:
            boxes = add_devices(server, devices)
            devices_total = len(server.call("cmd=get_devices"))
            seconds = minutes * 60
            loadgen = start_loadgen(server, seconds, rps, clients, boxes)
            samples: list[Sample] = []
            began = time.monotonic()
            assert server.proc is not None and server.log_path is not None
            while True:
                now = time.monotonic() - began
                if server.proc.poll() is not None:
                    raise RuntimeError("the server died: "
                                       + server.log_path.read_text()[-2000:])
                samples.append(Sample(round(now, 2), rss_bytes(server.proc.pid) / 2**20,
                                      cycle_number(server)))
                if now >= seconds:
                    break
                time.sleep(min(sample_s, max(0.0, seconds - now)))
            out, _ = loadgen.communicate(timeout=120)
            load = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        finally:
            if loadgen is not None and loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
            exit_status = server.stop()
    with sqlite3.connect(data_dir / DB_FILE) as db:
        integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
    result = verdict(samples, cycle_ms / 1000, load, exit_status, integrity)
    result.update({"minutes": minutes, "devices_added": devices,
                   "devices_total": devices_total, "cycle_ms": cycle_ms, "rps_target": rps,
                   "clients": clients, "startup_s": round(startup_s, 3), "machine": machine(),
                   "date": time.strftime("%Y-%m-%d"),
                   "samples": [asdict(s) for s in samples]})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--cycle-ms", type=int, default=1000)
    parser.add_argument("--rps", type=float, default=100.0, help="API requests per second")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--data-dir", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--boxes", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.loadgen:
        boxes = [b for b in args.boxes.split(",") if b]
        result = asyncio.run(_loadgen(args.url, args.seconds, args.rps, args.clients, boxes,
                                      seed=os.getpid()))
        print(json.dumps(asdict(result)))
        return 0
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        result = soak(args.minutes, args.devices, args.cycle_ms, args.rps, args.clients,
                      args.sample_s, args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="chargebrain-soak-") as tmp:
            result = soak(args.minutes, args.devices, args.cycle_ms, args.rps, args.clients,
                          args.sample_s, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        summary = {k: v for k, v in result.items() if k != "samples"}
        for key, value in summary.items():
            print(f"{key}: {value}")
        print("SOAK OK" if result["ok"] else "SOAK FAILED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
