"""Benchmark: `cmd=get_dev_info` with 50 devices vs a bare aiohttp JSON handler.

    .venv/bin/python bench/bench_dev_info.py [--seconds 3] [--rounds 3] [--clients 4]

Starts, as child processes on loopback:
- `python -m chargebrain serve` with a fresh data dir, configured (through the API) to 50
  devices: the factory E1, M1, M2 plus 24 `evse_sim` wallboxes and 23 `meter_sim` meters;
- a *bare* aiohttp server whose one handler answers `web.json_response(body)` with the very
  `get_dev_info` object chargebrain returned (serialised per request, nothing else) — the
  baseline.

This process is the load generator: `--clients` concurrent aiohttp requests (keep-alive) as
fast as they come back, for `--seconds` per round; bare and chargebrain rounds alternate and
the medians are compared (spec §11 target: chargebrain ≥ 50 % of bare). Every answer is
checked (status 200, 50 devices).
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

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-admin-pw"
DEVICES = 50


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
    app.router.add_get("/cnf", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def api(base_url: str, cmd: str, body: object | None = None) -> object:
    import base64

    auth = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base_url}/cnf?cmd={cmd}", data=data,
                                     headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


async def http_rate(url: str, seconds: float, clients: int) -> float:
    import aiohttp

    done = [0]

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        while time.monotonic() < deadline:
            async with session.get(url) as resp:
                body = await resp.json()
                if resp.status != 200 or len(body["devices"]) != DEVICES:
                    raise RuntimeError(f"bad answer {resp.status}")
            done[0] += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.monotonic()
        deadline = start + seconds
        await asyncio.gather(*(worker(session, deadline) for _ in range(clients)))
        return done[0] / (time.monotonic() - start)


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
    parser.add_argument("--clients", type=int, default=4, help="concurrent requests")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1])
        return 0

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory() as tmp:
        cb_port, bare_port = free_port(), free_port()
        cb = subprocess.Popen(
            [sys.executable, "-m", "chargebrain", "serve", "--data-dir", f"{tmp}/data",
             "--port", str(cb_port), "--modbus-port", "0", "--admin-password", PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        bare: subprocess.Popen[bytes] | None = None
        try:
            cb_url = f"http://127.0.0.1:{cb_port}"
            wait_http(f"{cb_url}/cnf?cmd=get_dev_info")
            for i in range(DEVICES - 3):
                device = ({"dev_type": "evse_sim", "max_charging_cur": 16000} if i % 2 == 0
                          else {"dev_type": "meter_sim", "sim_power_w": 1000 * i})
                api(cb_url, "set_device", {"devices": [device]})
            body = api(cb_url, "get_dev_info")
            assert isinstance(body, dict) and len(body["devices"]) == DEVICES
            body_path = Path(tmp) / "body.json"
            body_path.write_text(json.dumps(body))
            bare = subprocess.Popen(
                [sys.executable, __file__, "--serve-bare", str(bare_port), str(body_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            bare_url = f"http://127.0.0.1:{bare_port}/cnf?cmd=get_dev_info"
            wait_http(bare_url)
            rates: dict[str, list[float]] = {"bare": [], "chargebrain": []}
            for _ in range(args.rounds):
                rates["bare"].append(asyncio.run(http_rate(bare_url, args.seconds,
                                                           args.clients)))
                rates["chargebrain"].append(asyncio.run(http_rate(
                    f"{cb_url}/cnf?cmd=get_dev_info", args.seconds, args.clients)))
        finally:
            stop(cb)
            if bare is not None:
                stop(bare)
    bare_rate = statistics.median(rates["bare"])
    cb_rate = statistics.median(rates["chargebrain"])
    result = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{os.cpu_count()} cores, Python {platform.python_version()}",
              "devices": DEVICES, "clients": args.clients, "rounds": rates,
              "bare_rps": round(bare_rate), "chargebrain_rps": round(cb_rate),
              "ratio": round(cb_rate / bare_rate, 3)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"get_dev_info, {DEVICES} devices, {args.clients} clients: "
              f"bare aiohttp {bare_rate:.0f}/s, chargebrain {cb_rate:.0f}/s, "
              f"ratio {cb_rate / bare_rate:.1%} (target ≥ 50 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
