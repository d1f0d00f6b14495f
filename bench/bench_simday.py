"""The simulated PV day (spec §11 "PV day"): `chargebrain simulate-day` with the benchmark's
header (machine, date, commit).

    .venv/bin/python bench/bench_simday.py [--seed 1 | --seeds 1,2,3] [--step-s 10] [--json]

Runs the whole day (00:00–24:00, 8640 cycles at 10 s) through the real control cycle once
with chargebrain's hysteresis and once evcc-style (enable 1 min, disable 3 min), solves the
perfect-foresight optimum, and prints both side by side with the targets of docs/benchmarks.md
(0 limit excess; ≤ 1 start/stop per car per 10 min; ≤ 4 phase switches per session; PV into
cars ≥ 90 % of the optimum). See docs/simulate-day.md. `--seeds` runs several generated days
and ends with one summary line per day and configuration.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess

from chargebrain.sim import day
from common import ROOT, machine


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", default="", help="several days, e.g. 1,2,3 (overrides --seed)")
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--lp-step-s", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or [args.seed]
    header = {"machine": machine(), "date": datetime.date.today().isoformat(),
              "commit": _commit()}
    reports = {}
    for seed in seeds:
        setup = day.DaySetup(day.profile_for(seed, None), step_s=args.step_s,
                             lp_step_s=args.lp_step_s)
        reports[seed] = day.run_day(setup)
    if args.json:
        if len(seeds) == 1:
            print(json.dumps({**header, **reports[seeds[0]].as_dict()}, indent=2))
        else:
            print(json.dumps({**header, "days": {str(k): r.as_dict()
                                                 for k, r in reports.items()}}, indent=2))
        return
    print(f"{header['machine']}, {header['date']}, commit {header['commit']}")
    for seed, report in reports.items():
        print(f"\n# seed {seed}")
        print(day.format_text(report))
    if len(seeds) > 1:
        print("\nseed  config        PV kWh  PV into cars % of optimum  limit excess  "
              "max starts/stops per 10 min  max phase switches")
        for seed, report in reports.items():
            for run in report.runs:
                starts = max(max(c.max_starts_10min, c.max_stops_10min)
                             for c in run.cars.values())
                switches = max(max(c.phase_switches, default=0) for c in run.cars.values())
                print(f"{seed:>4}  {run.label:<12}  {run.pv_wh / 1000:6.1f}  "
                      f"{report.pv_share_pct(run):26.1f}  {run.limit_excess_count:12}  "
                      f"{starts:27}  {switches:18}")


if __name__ == "__main__":
    main()
