"""Run every benchmark in bench/ and print one summary table against the spec §11 targets.

    .venv/bin/python bench/run_all.py [--only cycle,api] [--quick] [--json] [--results FILE]

Each `bench/bench_*.py`, then `bench/rss_startup.py` and a 2-minute `bench/soak.py`, is run as
its own process with `--json` (every benchmark here prints
its result as one JSON document with that flag); the table shows the headline numbers of each
and whether the target is met. `--quick` passes shorter settings to the benchmarks that know
them (fewer seconds/rounds: a smoke run, not a measurement). A benchmark that fails or prints
no JSON is listed with its exit status and last output line. Exit status: 0 when every
benchmark ran and met its target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

Row = tuple[str, str, str, bool | None]  # what, measured, target, met (None: informational)

QUICK_ARGS = {
    "bench_allocator": ["--sizes", "10,100,1000", "--seconds", "0.5"],
    "bench_modbus": ["--seconds", "1", "--rounds", "1"],
    "bench_dev_info": ["--seconds", "1", "--rounds", "1"],
    "bench_api": ["--seconds", "1", "--rounds", "1"],
    "bench_cycle": ["--pushes", "10", "--seconds", "3"],
    "rss_startup": ["--sizes", "10,100", "--starts", "1", "--settle-s", "1"],
    "soak": ["--minutes", "0.5"],
    "bench_usage": ["--repeat", "5", "--ticks", "200"],
}
# scripts that are not named bench_*.py but belong to the run: memory and start-up, and the
# short soak (the long soak is `bench/soak.py --minutes 30`, see docs/benchmarks.md)
EXTRA = ["rss_startup", "soak"]
FULL_ARGS = {"soak": ["--minutes", "2"]}


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _allocator(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for row in r.get("results", []):
        n = row["evses"]
        target = "< 10 ms" if n == 1000 else ""
        met = row["plan_median_ms"] < 10 if n == 1000 else None
        rows.append((f"plan(), {n} EVSEs, median", f"{row['plan_median_ms']:.2f} ms", target,
                     met))
    return rows


def _ratio(what: str, target: float) -> Callable[[dict[str, Any]], list[Row]]:
    def extract(r: dict[str, Any]) -> list[Row]:
        return [(what, _pct(r["ratio"]), f"≥ {target * 100:.0f} %", r["ratio"] >= target)]
    return extract


def _http(r: dict[str, Any]) -> list[Row]:
    return [(f"{row['what']} vs bare aiohttp (pre-serialised), wrk",
             f"{_pct(row['ratio'])} (generator headroom {row['generator_headroom']}×)", "≥ 50 %",
             row["ratio"] >= 0.5 and row["generator_ok"]) for row in r["results"]]


def _cycle(r: dict[str, Any]) -> list[Row]:
    re, dr = r["reaction"], r["drift"]
    return [
        ("pushed overload → setpoints written, p95", f"{re['p95_ms']} ms "
         f"(median {re['median_ms']})", "< 300 ms", re["p95_ms"] < 300),
        (f"cycle period {dr['cycle_ms']} ms under API load, mean", f"{dr['loaded_mean_ms']} ms "
         f"({dr['mean_drift_pct']} %)", "within 10 %", dr["mean_drift_pct"] < 10),
        (f"cycle period {dr['cycle_ms']} ms under API load, p95", f"{dr['loaded_p95_ms']} ms "
         f"({dr['p95_drift_pct']} %)", "within 10 %", dr["p95_drift_pct"] < 10),
        ("cycle work p95, idle → under API load", f"{dr['idle_work_p95_ms']} → "
         f"{dr['loaded_work_p95_ms']} ms", "", None),
    ]


def _rss_startup(r: dict[str, Any]) -> list[Row]:
    base = r["baseline"]
    rows: list[Row] = [("bare aiohttp + pymodbus process: RSS, start to first answer",
                        f"{base['rss_mb']} MB, {base['startup_s']} s", "", None)]
    for row in r["results"]:
        n = row["devices"]
        rss_target = "< 80 MB" if 100 <= n < 1000 else ""
        rows.append((f"RSS with {n} devices", f"{row['rss_mb']} MB ({row['rss_ratio']}× bare)",
                     rss_target, row["rss_mb"] < 80 if rss_target else None))
        rows.append((f"start to first answer, {n} devices",
                     f"{row['startup_s']} s ({row['startup_ratio']}× bare)", "< 2 s",
                     row["startup_s"] < 2))
    return rows


def _soak(r: dict[str, Any]) -> list[Row]:
    return [
        (f"soak {r['minutes']} min, {r['devices_total']} devices, RSS growth after warm-up",
         f"{r['rss_growth_pct']} % ({r['rss_after_warmup_mb']} → {r['rss_end_mb']} MB)",
         "≤ 10 %", r["checks"]["memory_growth_ok"]),
        (f"soak: cycles completed / expected ({r['cycle_ms']} ms)",
         f"{r['cycles_completed']} / {r['cycles_expected']}", "none missed",
         r["checks"]["no_missed_cycles"]),
        (f"soak: {r['requests']} API requests ({r['requests_per_s']}/s)",
         f"5xx {r['five_xx']}, broken {r['broken']}, exit {r['exit_status']}, "
         f"integrity {r['integrity']}", "0, 0, 0, ok",
         r["checks"]["no_5xx"] and r["checks"]["no_broken_connections"]
         and r["checks"]["clean_exit"] and r["checks"]["integrity_ok"]),
    ]


def _usage(r: dict[str, Any]) -> list[Row]:
    q, h, tick = r["query_in_process"], r["query_http"], r["tick"]
    return [
        (f"usage graphs: a year of {q['devices']} devices + site, storage",
         f"{r['year']['size_mb']} MB", "a few tens of MB (< 50)", r["year"]["size_mb"] < 50),
        ("year chart of a device (in-process), median / p95",
         f"{q['device']['median_ms']} / {q['device']['p95_ms']} ms", "< 100 ms",
         q["device"]["p95_ms"] < 100),
        ("year chart of the site (4 series) over HTTP, median",
         f"{h['site']['median_ms']} ms", "< 100 ms", h["site"]["median_ms"] < 100),
        ("recorder tick: event loop / writer thread, median",
         f"{tick['on_loop']['median_ms']} / {tick['writer']['median_ms']} ms", "", None),
    ]


EXTRACT: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "bench_allocator": _allocator,
    "bench_modbus": _ratio("Modbus TCP reads vs bare pymodbus", 0.8),
    "bench_dev_info": _http,
    "bench_api": _ratio("get_dev_info, demo + 250 ms cycle, vs bare aiohttp, wrk", 0.5),
    "bench_cycle": _cycle,
    "rss_startup": _rss_startup,
    "soak": _soak,
    "bench_usage": _usage,
}


def _generic(r: Any) -> list[Row]:
    if isinstance(r, dict) and "ratio" in r:
        return [("ratio", _pct(float(r["ratio"])), "", None)]
    return [("result", json.dumps(r)[:60], "", None)]


def _parse(stdout: str) -> Any:
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        for line in reversed(text.splitlines()):  # a last-line JSON after other output
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run one benchmark; if this is interrupted, SIGTERM it and give it time to stop its own
    child servers (its `finally` blocks) before it is killed."""
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=HERE.parent) as proc:
        try:
            out, err = proc.communicate()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


RAW: dict[str, Any] = {}  # every benchmark's own JSON result, for --results


def run(name: str, quick: bool) -> tuple[list[Row], str]:
    args = [sys.executable, str(HERE / f"{name}.py"), "--json"]
    if quick:
        args += QUICK_ARGS.get(name, [])
    else:
        args += FULL_ARGS.get(name, [])
    started = time.monotonic()
    proc = _run(args)
    took = f"{time.monotonic() - started:.0f} s"
    result = _parse(proc.stdout)
    RAW[name] = result
    if result is None:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return [("did not report", f"exit {proc.returncode}: {last[0][:60]}", "", False)], took
    try:
        return EXTRACT.get(name, _generic)(result), took
    except (KeyError, TypeError, ValueError) as err:
        return [("unexpected result", f"{type(err).__name__}: {err}"[:60], "", False)], took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated names, e.g. cycle,api")
    parser.add_argument("--quick", action="store_true", help="short smoke settings")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument("--results", type=Path,
                        help="also write every benchmark's own JSON result to this file")
    args = parser.parse_args()
    names = sorted(p.stem for p in HERE.glob("bench_*.py")) + EXTRA
    if args.only:
        wanted = {f"bench_{n.strip().removeprefix('bench_')}" for n in args.only.split(",")}
        wanted |= {n.strip() for n in args.only.split(",")}  # rss_startup, soak
        names = [n for n in names if n in wanted]
    table: list[tuple[str, str, Row]] = []
    for name in names:
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows, took = run(name, args.quick)
        table.extend((name, took, row) for row in rows)
    ok = all(row[3] is not False for _, _, row in table)
    if args.results is not None:
        args.results.write_text(json.dumps(RAW, indent=1))
    if args.json:
        print(json.dumps([{"bench": n, "took": t, "what": r[0], "measured": r[1],
                           "target": r[2], "met": r[3]} for n, t, r in table], indent=2))
        return 0 if ok else 1
    print(f"{time.strftime('%Y-%m-%d')}  ({'quick smoke run' if args.quick else 'full run'})")
    print("| benchmark | what | measured | target | met |")
    print("|---|---|---|---|---|")
    for name, took, (what, measured, target, met) in table:
        mark = "" if met is None else ("yes" if met else "NO")
        print(f"| {name} ({took}) | {what} | {measured} | {target} | {mark} |")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
