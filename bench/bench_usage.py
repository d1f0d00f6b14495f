"""Benchmark: usage graphs on a recorded year of 20 devices and the site.

    .venv/bin/python bench/bench_usage.py [--repeat 50] [--json]

1. Writes the simulated year of tests/recorder/year.py (20 devices + 4 site flows, accelerated
   time: every tier ends as full as a year of 10 s recording leaves it) into a fresh data dir
   and reports the database size.
2. Year-chart query latency, in-process (`recorder.charts.chart` on its own connection, as
   `get_usage` runs it): every device and the site, `--repeat` times each; median, p95, max.
3. The same over HTTP: `chargebrain serve` on that data dir, `GET /cnf?cmd=get_usage&span=year`
   for E1, M1, M2 (the devices the server has configured) and `site`, round trip.
4. Recorder cost per 10 s tick at the steady state (a full raw tier, rollups as they fall due):
   on the event loop (decode the snapshot's get_dev_info bytes of 20 devices, take the
   measurements) and in the writer thread (energy, insert, rollup, prune: one transaction).

Target (spec §11): a year-chart query < 100 ms; a year of 20 devices in a few tens of MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from common import ROOT, Server, exit_on_sigterm, machine

sys.path.insert(0, str(ROOT))  # the simulated year lives with the tests

from tests.recorder.year import END_S, ticks, twenty_devices

from chargebrain.recorder.charts import chart
from chargebrain.recorder.samples import EnergyMeter, measurements
from chargebrain.recorder.storage import UsageDb
from chargebrain.store.db import Store

PASSWORD = "bench-admin-pw"
BATCH_TICKS = 6


def stats_ms(values_s: list[float]) -> dict[str, float]:
    ordered = sorted(values_s)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def write_year(data_dir: Path) -> tuple[Store, UsageDb, float]:
    store = Store.open(data_dir)
    db = UsageDb(store.path)
    site = twenty_devices()
    meter = EnergyMeter(max_gap_s=3600)
    began = time.perf_counter()
    batch: list[Any] = []
    pending = 0
    for t in ticks():
        batch += meter.samples(t, site.measurements(t))
        pending += 1
        if pending == BATCH_TICKS:
            db.write(batch)
            batch, pending = [], 0
    db.write(batch)
    return store, db, time.perf_counter() - began


def query_in_process(db: UsageDb, repeat: int) -> dict[str, Any]:
    keys = [*db.series]
    devices = [k for k in keys if not k.startswith("site.")]
    device_times, site_times = [], []
    rows = 0
    for _ in range(repeat):
        for key in devices:
            began = time.perf_counter()
            rows = len(chart(db, key, "year", END_S).rows)
            device_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        chart(db, "site", "year", END_S)
        site_times.append(time.perf_counter() - began)
    return {"devices": len(devices), "rows": rows, "device": stats_ms(device_times),
            "site": stats_ms(site_times)}


def query_http(data_dir: Path, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Server(data_dir, password=PASSWORD, modbus_port=0) as server:
        server.start()
        for dev_id in ("E1", "M1", "M2", "site"):
            url = f"{server.url}/cnf?cmd=get_usage&dev_id={dev_id}&span=year&end={END_S}"
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                with urllib.request.urlopen(url, timeout=10) as resp:
                    body = json.loads(resp.read())
                times.append(time.perf_counter() - began)
            out[dev_id] = {**stats_ms(times), "rows": len(body["rows"]),
                           "bytes": len(json.dumps(body))}
    return out


def tick_cost(db: UsageDb, ticks_n: int) -> dict[str, Any]:
    """Steady-state cost of one 10 s tick of 20 devices after the recorded year."""
    site = twenty_devices()
    meter = EnergyMeter(max_gap_s=30, last=db.last_samples())
    snapshot = orjson.dumps(_dev_info(site, END_S))
    loop_times, write_times = [], []
    for i in range(1, ticks_n + 1):
        t = END_S + 10 * i
        began = time.perf_counter()
        taken = measurements(orjson.loads(snapshot))
        loop_times.append(time.perf_counter() - began)
        fresh = site.measurements(t)  # the simulated values of this tick
        assert len(taken) == len(fresh)
        began = time.perf_counter()
        db.write(meter.samples(t, fresh))
        write_times.append(time.perf_counter() - began)
    return {"ticks": ticks_n, "on_loop": stats_ms(loop_times),
            "writer": {**stats_ms(write_times),
                       "mean_ms": round(statistics.mean(write_times) * 1000, 3)}}


def _dev_info(site: Any, t: int) -> dict[str, Any]:
    """A get_dev_info-shaped answer of the simulated site (what the recorder decodes)."""
    devices = []
    for m in site.measurements(t)[:20]:
        evse = m.key.startswith("E")
        d = {"dev_id": m.key, "name": f"device {m.key}", "is_evse": evse, "device_enabled": 1,
             "com_err": False, "power_w": m.power_w, "current_l1": m.currents_ma[0],
             "current_l2": m.currents_ma[1], "current_l3": m.currents_ma[2],
             "dev_type": "evse_sim" if evse else "meter_sim", "com_err_secs": 0,
             "com_errors": 0, "last_error": "", "lreason": "", "desc": ""}
        if evse:
            d.update({"total_energy": m.import_wh, "last_set_charging_cur": m.offered_ma,
                      "state": m.state, "paused": False, "pause_time": 0})
        else:
            d.update({"import": m.import_wh, "export": m.export_wh, "role": 0,
                      "voltage_l1": 230, "voltage_l2": 230, "voltage_l3": 230})
        devices.append(d)
    return {"params": {"grid_pwr": 0, "cons_pwr": 0, "cons_evse_power": 0}, "devices": devices}


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        store, db, write_s = write_year(data_dir)
        result: dict[str, Any] = {
            "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "year": {"write_s": round(write_s, 1), "size_mb": round(db.size_bytes() / 1e6, 1),
                     "series": len(db.series)},
            "query_in_process": query_in_process(db, args.repeat),
        }
        db.close()
        store.close()
        result["query_http"] = query_http(data_dir, args.repeat)
        store = Store.open(data_dir)
        db = UsageDb(store.path)
        result["tick"] = tick_cost(db, args.ticks)
        result["size_after_ticks_mb"] = round(db.size_bytes() / 1e6, 1)
        db.close()
        store.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    q, h, tk = result["query_in_process"], result["query_http"], result["tick"]
    print(f"machine: {result['machine']}, {result['date']}")
    print(f"a year of {q['devices']} devices + site: {result['year']['size_mb']} MB "
          f"({result['year']['series']} series; written in {result['year']['write_s']} s)")
    print(f"year chart in-process, device ({q['rows']} rows): {q['device']}")
    print(f"year chart in-process, site: {q['site']}")
    for dev_id, r in h.items():
        print(f"year chart over HTTP, {dev_id}: {r}")
    print(f"tick on the event loop: {tk['on_loop']}; in the writer thread: {tk['writer']}")


if __name__ == "__main__":
    main()
