"""`chargebrain simulate-day`: the options and the run (sim/day.py does the work)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `simulate-day` subcommand to the `chargebrain` parser."""
    p = sub.add_parser(
        "simulate-day",
        help="simulate a cloudy PV day through the real control cycle, against its optimum",
        description="Runs a simulated day (PV, house load, two cars with a solar-surplus "
                    "rule) through the real control cycle in accelerated time, once with "
                    "chargebrain's hysteresis and once evcc-style, and compares both with the "
                    "perfect-foresight optimum (a linear program). See docs/simulate-day.md.")
    p.add_argument("--seed", type=int, default=1, help="the generated day (default 1)")
    p.add_argument("--profile", type=Path, default=None,
                   help="a recorded day as CSV instead (time_s,pv_w,house_l1_w,house_l2_w,"
                        "house_l3_w)")
    p.add_argument("--write-profile", type=Path, default=None,
                   help="also write the day's profile as CSV to this file (every 10 s)")
    p.add_argument("--step-s", type=float, default=10.0,
                   help="simulated seconds per control cycle (1…600, default 10)")
    p.add_argument("--start-h", type=float, default=0.0, help="window start (h, default 0)")
    p.add_argument("--end-h", type=float, default=24.0, help="window end (h, default 24)")
    p.add_argument("--limit-a", type=float, default=25.0,
                   help="site limit per phase (A, default 25)")
    p.add_argument("--lp-step-s", type=float, default=60.0,
                   help="step of the optimum's linear program (s, default 60)")
    p.add_argument("--config", choices=("both", "chargebrain", "evcc"), default="both",
                   help="which hysteresis to simulate (default both)")
    p.add_argument("--trace", type=Path, default=None,
                   help="write every step of each run as CSV: FILE with the run's label "
                        "before the suffix (e.g. day.chargebrain.csv)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from chargebrain.sim import day
    from chargebrain.sim.day_profile import write_csv

    if not 1 <= args.step_s <= 600:
        parser.error("--step-s must be between 1 and 600")
    if not 0 <= args.start_h < args.end_h <= 24:
        parser.error("--start-h and --end-h must satisfy 0 <= start < end <= 24")
    if not 6 <= args.limit_a <= 10000:
        parser.error("--limit-a must be between 6 and 10000")
    if not 1 <= args.lp_step_s <= 3600:
        parser.error("--lp-step-s must be between 1 and 3600")
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        profile = day.profile_for(args.seed, args.profile)
    except (OSError, ValueError) as err:
        print(f"chargebrain simulate-day: {err}", file=sys.stderr)
        return 2
    if args.write_profile is not None:
        write_csv(profile, args.write_profile)
    configs = {"both": day.CONFIGS, "chargebrain": day.CONFIGS[:1],
               "evcc": day.CONFIGS[1:]}[args.config]
    setup = day.DaySetup(profile, step_s=args.step_s, start_h=args.start_h, end_h=args.end_h,
                         limit_ma=round(args.limit_a * 1000), lp_step_s=args.lp_step_s)
    report = day.run_day(setup, configs)
    if args.trace is not None:
        for run_report in report.runs:
            target = args.trace.with_name(f"{args.trace.stem}.{run_report.label}"
                                          f"{args.trace.suffix or '.csv'}")
            day.write_trace(run_report, target)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(day.format_text(report))
    return 0
