"""`get_dev_info` with 50 live devices while the control cycle runs, vs a bare aiohttp handler.

    .venv/bin/python bench/bench_api.py [--seconds 3] [--rounds 3] [--clients 4]
                                        [--cycle-ms 250] [--json]

The same target as bench/bench_dev_info.py (spec §11: chargebrain ≥ 50 % of the requests/s of
a bare aiohttp JSON handler on the same machine), measured under operating conditions: a
`chargebrain serve --demo --cycle-ms 250` child process, i.e. the control cycle reading,
planning and writing four times a second, cars charging on the simulated site, the grid meter
pushed every cycle, topped up through the API to 50 devices (wallboxes in groups, simulated
and HTTP-input meters, virtual meters). Its `get_dev_info` answer is then served by a bare
aiohttp child process (`web.json_response` of that object, serialised per request: the
baseline). This process is the load generator: `--clients` concurrent keep-alive connections
for `--seconds` per round, bare and chargebrain rounds alternating, medians compared. Every
answer is checked (status 200, 50 devices).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-admin-pw"
DEVICES = 50


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_bare(port: int, body_path: str) -> None:
    """The baseline: one aiohttp handler answering a fixed object as JSON."""
    from aiohttp import web

    body = json.loads(Path(body_path).read_text())

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_route("*", "/cnf", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def api(base_url: str, cmd: str, body: object | None = None, **query: object) -> Any:
    qs = "&".join([f"cmd={cmd}"] + [f"{k}={v}" for k, v in query.items()])
    data = None if body is None else json.dumps(body).encode()
    auth = aiohttp.encode_basic_auth("admin", PASSWORD)
    request = urllib.request.Request(f"{base_url}/cnf?{qs}", data=data,
                                     headers={"Authorization": auth})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def top_up(base_url: str) -> None:
    """Add devices to the demo site until there are 50."""
    have = len(api(base_url, "get_dev_info")["devices"])
    group = next(d["dev_id"] for d in api(base_url, "get_dev_info")["devices"]
                 if d["dev_type"] == "evse_group")
    kinds = (["evse_sim"] * 17 + ["meter_sim"] * 12 + ["meter_ajax"] * 5
             + ["meter_virtual_surplus_avg", "meter_virtual_produced_power",
                "meter_virtual_remaining_evse_power"])
    for n, kind in enumerate(kinds[:DEVICES - have]):
        config: dict[str, Any] = {"dev_type": kind, "name": f"bench {n}"}
        if kind == "evse_sim":
            config.update(group=int(group[1:]) if n % 2 else 0, phase_rotation=(0, 120, 240)[
                n % 3], prio=1 + n % 2)
        elif kind == "meter_sim":
            config.update(role=1 if n % 2 else 0, sim_power_w=100 * n)
        api(base_url, "set_device", {"devices": [config]})
    for d in api(base_url, "get_dev_info")["devices"]:
        if d["dev_type"] == "meter_ajax" and d["name"].startswith("bench"):
            api(base_url, "set_ajax_meter", {"current": [1000, 2000, 3000]}, dev_id=d["dev_id"])


async def http_rate(url: str, seconds: float, clients: int) -> float:
    count = 0
    loop = asyncio.get_running_loop()

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal count
        while loop.time() < deadline:
            async with session.get(url) as resp:
                body = await resp.json()
                if resp.status != 200 or len(body["devices"]) != DEVICES:
                    raise RuntimeError(f"bad answer from {url}: {resp.status}")
                count += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = loop.time()
        await asyncio.gather(*(worker(session, started + seconds) for _ in range(clients)))
        return count / (loop.time() - started)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections")
    parser.add_argument("--cycle-ms", type=int, default=250, help="control cycle period")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1])
        return 0

    env = {k: v for k, v in os.environ.items() if k != "CHARGEBRAIN_ADMIN_PASSWORD"}
    rates: dict[str, list[float]] = {"bare": [], "chargebrain": []}
    with tempfile.TemporaryDirectory() as tmp:
        port, bare_port = free_port(), free_port()
        cb = subprocess.Popen(
            [sys.executable, "-m", "chargebrain", "serve", "--data-dir", f"{tmp}/data",
             "--port", str(port), "--modbus-port", "0", "--demo",
             "--cycle-ms", str(args.cycle_ms), "--admin-password", PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        bare = None
        try:
            cb_url = f"http://127.0.0.1:{port}"
            wait_http(f"{cb_url}/cnf?cmd=get_dev_info")
            top_up(cb_url)
            deadline = time.monotonic() + 60
            while True:  # until the demo's cars charge: live readings everywhere
                body = api(cb_url, "get_dev_info")
                demo = [d for d in body["devices"] if d["name"].startswith("Sim-Wallbox")]
                if all(d["state"] == 3 for d in demo) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert len(body["devices"]) == DEVICES, len(body["devices"])
            charging = sum(1 for d in body["devices"] if d.get("state") == 3)
            body_path = Path(tmp) / "body.json"
            body_path.write_text(json.dumps(body))
            bare = subprocess.Popen(
                [sys.executable, __file__, "--serve-bare", str(bare_port), str(body_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            bare_url = f"http://127.0.0.1:{bare_port}/cnf?cmd=get_dev_info"
            wait_http(bare_url)
            asyncio.run(http_rate(bare_url, 0.5, args.clients))  # warm-up
            asyncio.run(http_rate(f"{cb_url}/cnf?cmd=get_dev_info", 0.5, args.clients))
            for _ in range(args.rounds):
                rates["bare"].append(asyncio.run(http_rate(bare_url, args.seconds,
                                                           args.clients)))
                rates["chargebrain"].append(asyncio.run(http_rate(
                    f"{cb_url}/cnf?cmd=get_dev_info", args.seconds, args.clients)))
            cycle_time = api(cb_url, "get_params")["cycle_time"]
        finally:
            stop(cb)
            if bare is not None:
                stop(bare)
    bare_rate = statistics.median(rates["bare"])
    cb_rate = statistics.median(rates["chargebrain"])
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "devices": DEVICES,
              "charging": charging, "answer_bytes": len(json.dumps(body)),
              "cycle_ms": args.cycle_ms, "cycle_time_under_load_ms": cycle_time,
              "clients": args.clients,
              "rounds": {k: [round(v) for v in vs] for k, vs in rates.items()},
              "bare_rps": round(bare_rate), "chargebrain_rps": round(cb_rate),
              "ratio": round(cb_rate / bare_rate, 3), "target": 0.5,
              "ok": cb_rate / bare_rate >= 0.5}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['date']}  {result['machine']}")
        print(f"get_dev_info, {DEVICES} devices ({charging} charging), cycle {args.cycle_ms} ms, "
              f"{args.clients} clients: bare aiohttp {bare_rate:.0f}/s, chargebrain "
              f"{cb_rate:.0f}/s, ratio {cb_rate / bare_rate:.1%} (target ≥ 50 %)")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
