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
import json
import statistics
import tempfile
from pathlib import Path

from common import (
    Server,
    devices_check,
    exit_on_sigterm,
    get_dev_info_rounds,
    machine,
    serve_json,
)

PASSWORD = "bench-admin-pw"
DEVICES = 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--clients", type=int, default=4, help="concurrent requests")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_json(int(args.serve_bare[0]), args.serve_bare[1])
        return 0

    exit_on_sigterm()
    with tempfile.TemporaryDirectory() as tmp:
        cb = Server(Path(tmp) / "data", password=PASSWORD, modbus_port=0, log=False)
        try:
            cb.start(timeout_s=20)
            for i in range(DEVICES - 3):
                device = ({"dev_type": "evse_sim", "max_charging_cur": 16000} if i % 2 == 0
                          else {"dev_type": "meter_sim", "sim_power_w": 1000 * i})
                cb.call("cmd=set_device", {"devices": [device]}, timeout_s=10)
            body = cb.call("cmd=get_dev_info", timeout_s=10)
            assert isinstance(body, dict) and len(body["devices"]) == DEVICES
            rates = get_dev_info_rounds(__file__, body, Path(tmp), cb.url, rounds=args.rounds,
                                        seconds=args.seconds, clients=args.clients,
                                        check=devices_check(DEVICES), wait_s=20.0)
        finally:
            cb.stop()
    bare_rate = statistics.median(rates["bare"])
    cb_rate = statistics.median(rates["chargebrain"])
    result = {"machine": machine(cpu_model=False),
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
