"""`get_dev_info` with 50 live devices while the control cycle runs, vs a bare aiohttp handler.

    .venv/bin/python bench/bench_api.py [--seconds 5] [--rounds 3] [--cycle-ms 250] [--json]

The same target as bench/bench_dev_info.py (spec §11: chargebrain ≥ 50 % of the requests/s of
a bare aiohttp JSON handler on the same machine), measured under operating conditions: a
`chargebrain serve --demo --cycle-ms 250` child process, i.e. the control cycle reading,
planning and writing four times a second, cars charging on the simulated site, the grid meter
pushed every cycle, topped up through the API to 50 devices (wallboxes in groups, simulated
and HTTP-input meters, virtual meters). Its `get_dev_info` answer bytes are then served by a
bare aiohttp child process (pre-serialised: the baseline). The load generator is
`wrk -t1 -c32` (bench/common.py), bare and chargebrain rounds alternating, medians compared;
no wrk run may see a non-2xx answer or a socket error, and the bare rate must be ≥ 1.5 ×
chargebrain's (else the generator is the bottleneck).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
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
DEVICES = 50


def api(server: Server, cmd: str, body: object | None = None, **query: object) -> Any:
    qs = "&".join([f"cmd={cmd}"] + [f"{k}={v}" for k, v in query.items()])
    return server.call(qs, body, timeout_s=10)


def top_up(server: Server) -> None:
    """Add devices to the demo site until there are 50."""
    have = len(api(server, "get_dev_info")["devices"])
    group = next(d["dev_id"] for d in api(server, "get_dev_info")["devices"]
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
        api(server, "set_device", {"devices": [config]})
    for d in api(server, "get_dev_info")["devices"]:
        if d["dev_type"] == "meter_ajax" and d["name"].startswith("bench"):
            api(server, "set_ajax_meter", {"current": [1000, 2000, 3000]}, dev_id=d["dev_id"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--cycle-ms", type=int, default=250, help="control cycle period")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bytes(int(args.serve_bare[0]), args.serve_bare[1])
        return 0

    exit_on_sigterm()
    ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        cb = Server(Path(tmp) / "data", password=PASSWORD, cycle_ms=args.cycle_ms, demo=True,
                    modbus_port=0, log=False)
        try:
            cb.start()
            top_up(cb)
            deadline = time.monotonic() + 60
            while True:  # until the demo's cars charge: live readings everywhere
                body = api(cb, "get_dev_info")
                demo = [d for d in body["devices"] if d["name"].startswith("Sim-Wallbox")]
                if all(d["state"] == 3 for d in demo) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert len(body["devices"]) == DEVICES, len(body["devices"])
            charging = sum(1 for d in body["devices"] if d.get("state") == 3)
            answer = raw_get(f"{cb.url}/cnf?cmd=get_dev_info")
            bare, base = bare_server(__file__, {"get_dev_info": answer}, Path(tmp))
            try:
                row = compare_rounds(f"{base}/cnf?cmd=get_dev_info",
                                     f"{cb.url}/cnf?cmd=get_dev_info", rounds=args.rounds,
                                     seconds=args.seconds)
            finally:
                stop(bare)
            cycle_time = api(cb, "get_params")["cycle_time"]
        finally:
            cb.stop()
    bare_rate, cb_rate = row["bare_rps"], row["chargebrain_rps"]
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "devices": DEVICES,
              "charging": charging, "answer_bytes": len(answer),
              "cycle_ms": args.cycle_ms, "cycle_time_under_load_ms": cycle_time,
              "generator": "wrk -t1 -c32", **row, "target": 0.5,
              "ok": row["ratio"] >= 0.5 and row["generator_ok"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['date']}  {result['machine']}")
        print(f"get_dev_info, {DEVICES} devices ({charging} charging), cycle {args.cycle_ms} ms, "
              f"wrk -t1 -c32: bare aiohttp {bare_rate}/s, chargebrain {cb_rate}/s, ratio "
              f"{row['ratio']:.1%} (target ≥ 50 %), generator headroom "
              f"{row['generator_headroom']}×")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
