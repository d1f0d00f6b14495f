"""Benchmark: HTTP reads of chargebrain against a bare aiohttp handler, measured with wrk.

    .venv/bin/python bench/bench_dev_info.py [--seconds 5] [--rounds 3] [--json]

Starts, as child processes on loopback:
- `python -m chargebrain serve` with a fresh data dir, configured through the API to 50
  devices (the factory E1, M1, M2, then `evse_sim` wallboxes and `meter_sim` meters
  alternating), later to 200;
- a *bare* aiohttp server whose one handler answers, for each `cmd`, the very bytes
  chargebrain answered for it, pre-serialised (the baseline: aiohttp's own cost for the same
  body, nothing else).

Measured with `wrk -t1 -c32` (bench/common.py), bare and chargebrain rounds alternating,
medians compared: `get_dev_info` with 50 and with 200 devices, `get_params`, and the
`cmd=modbus&device=evse&read=8093` register read. Target (issue 9): each ≥ 50 % of bare. The
generator check: the bare rate must be at least 1.5 × chargebrain's, else wrk (sharing the
cores) would be the bottleneck and the ratio would say nothing; it is printed per row.
Every wrk run must see no non-2xx answer and no socket error.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    WRK_CONNECTIONS,
    WRK_THREADS,
    Server,
    bare_server,
    compare_rounds,
    ensure_wrk,
    exit_on_sigterm,
    machine,
    raw_get,
    serve_bytes,
    stop,
)

PASSWORD = "bench-admin-pw"
MODBUS_READ = "modbus&device=evse&read=8093"


def add_devices(cb: Server, total: int) -> None:
    """Configure devices through the API until there are `total`."""
    have = len(cb.call("cmd=get_dev_info", timeout_s=10)["devices"])
    for i in range(have, total):
        device = ({"dev_type": "evse_sim", "max_charging_cur": 16000} if i % 2 == 0
                  else {"dev_type": "meter_sim", "sim_power_w": 1000 * i})
        cb.call("cmd=set_device", {"devices": [device]}, timeout_s=10)


def measure(tmp: Path, cb: Server, what: str, cmd: str, args: argparse.Namespace
            ) -> dict[str, Any]:
    body = raw_get(f"{cb.url}/cnf?cmd={cmd}")
    bare, base = bare_server(__file__, {cmd.split("&")[0]: body}, tmp)
    try:
        row = compare_rounds(f"{base}/cnf?cmd={cmd}", f"{cb.url}/cnf?cmd={cmd}",
                             rounds=args.rounds, seconds=args.seconds, bare_pid=bare.pid,
                             cb_pid=cb.proc.pid if cb.proc else None)
    finally:
        stop(bare)
    return {"what": what, "cmd": cmd, "answer_bytes": len(body), **row}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bytes(int(args.serve_bare[0]), args.serve_bare[1])
        return 0

    exit_on_sigterm()
    ensure_wrk()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # the default 3 s cycle runs: the snapshot is rebuilt after every cycle, as in use
        cb = Server(Path(tmp) / "data", password=PASSWORD, modbus_port=0, log=False)
        try:
            cb.start(timeout_s=20)
            add_devices(cb, 50)
            rows.append(measure(Path(tmp), cb, "get_dev_info, 50 devices", "get_dev_info",
                                args))
            rows.append(measure(Path(tmp), cb, "get_params", "get_params", args))
            rows.append(measure(Path(tmp), cb, "cmd=modbus read (8093)", MODBUS_READ, args))
            add_devices(cb, 200)
            rows.append(measure(Path(tmp), cb, "get_dev_info, 200 devices", "get_dev_info",
                                args))
        finally:
            cb.stop()
    # where wrk saturates first (bare not 1.5 × ahead), judge by CPU cost per answer instead
    ok = all((r["ratio"] >= 0.5 and r["generator_ok"]) or r.get("cpu_ratio", 0) >= 0.5
             for r in rows)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "generator": f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}",
              "seconds": args.seconds, "rounds_per_server": args.rounds, "results": rows,
              "ratio": min(r["ratio"] for r in rows), "target": 0.5, "ok": ok}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['date']}  {result['machine']}  ({result['generator']})")
        for r in rows:
            print(f"{r['what']} ({r['answer_bytes']} B): bare {r['bare_rps']}/s, chargebrain "
                  f"{r['chargebrain_rps']}/s, ratio {r['ratio']:.1%} (target ≥ 50 %); "
                  f"generator headroom {r['generator_headroom']}× "
                  f"({'ok' if r['generator_ok'] else 'TOO LOW'}); per server CPU-second: "
                  f"bare {r.get('bare_per_cpu_s')}, chargebrain "
                  f"{r.get('chargebrain_per_cpu_s')}, ratio {r.get('cpu_ratio', 0):.1%}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
