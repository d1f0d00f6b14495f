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
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

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
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections")
    parser.add_argument("--cycle-ms", type=int, default=250, help="control cycle period")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_json(int(args.serve_bare[0]), args.serve_bare[1])
        return 0

    exit_on_sigterm()
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
            rates = get_dev_info_rounds(__file__, body, Path(tmp), cb.url, rounds=args.rounds,
                                        seconds=args.seconds, clients=args.clients,
                                        check=devices_check(DEVICES), warm_up_s=0.5)
            cycle_time = api(cb, "get_params")["cycle_time"]
        finally:
            cb.stop()
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
