"""The simulated PV day (spec §11 "PV day"): `chargebrain simulate-day` with the benchmark's
header (machine, date, commit).

    .venv/bin/python bench/bench_simday.py [--seed 1] [--step-s 10] [--json]

Runs the whole day (00:00–24:00, 8640 cycles at 10 s) through the real control cycle once
with chargebrain's hysteresis and once evcc-style (enable 1 min, disable 3 min), solves the
perfect-foresight optimum, and prints both side by side with the targets of docs/benchmarks.md
(0 limit excess; ≤ 1 start/stop per car per 10 min; ≤ 4 phase switches per session; PV into
cars ≥ 90 % of the optimum). See docs/simulate-day.md.
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
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--lp-step-s", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setup = day.DaySetup(day.profile_for(args.seed, None), step_s=args.step_s,
                         lp_step_s=args.lp_step_s)
    report = day.run_day(setup)
    header = {"machine": machine(), "date": datetime.date.today().isoformat(),
              "commit": _commit()}
    if args.json:
        print(json.dumps({**header, **report.as_dict()}, indent=2))
    else:
        print(f"{header['machine']}, {header['date']}, commit {header['commit']}")
        print(day.format_text(report))


if __name__ == "__main__":
    main()
