"""Charging-rule evaluation time per EVSE and cycle (core.rules.evaluate).

    .venv/bin/python bench/bench_rules.py [--seconds 2] [--json]

Three rule lists, each evaluated with its memory carried from call to call (the steady state
of the control cycle), for a 3-phase car:

* `mode5`: one legacy mode-5 rule (surplus, udur 300) — the most common list;
* `fallback`: the reference "surplus, else a normal rule" recipe (3 rules), at 21:40, with the
  night rule's value a formula (`16000 - M1.current`), so it is evaluated once per phase;
* `program`: 10 rules with And/Or links, a goto, a parameter and a trigger variable.

Reported: evaluations per second and µs per evaluation (one EVSE, one cycle).
"""

from __future__ import annotations

import argparse
import json
import time

from chargebrain.core.formula import DictEnv
from chargebrain.core.rules import (
    PhaseValues,
    RuleContext,
    RuleMemory,
    compile_rules,
    evaluate,
    validate_rules,
)

LISTS: dict[str, list[dict]] = {
    "mode5": [{"mode": 5, "udur": 300}],
    "fallback": [
        {"id": 1, "solar": True, "cond": {"type": "surplus", "value": 6500, "undercut_s": 300},
         "action": {"type": "surplus", "end": True}},
        {"id": 2, "solar": True, "action": {"type": "set", "value": -1, "end": True}},
        {"id": 3, "cond": {"type": "time", "start": 1260, "end": 360},
         "action": {"type": "set", "value": "16000 - M1.current"}}],
    "program": [
        {"id": 10, "action": {"type": "param", "value": 1200}},
        {"id": 11, "action": {"type": "param", "value": 1380}},
        {"cond": {"type": "time_range", "start": "param(10)", "end": "param(11)"},
         "action": {"type": "and"}},
        {"cond": {"type": "charging_cars", "value": 1}, "action": {"type": "or"}},
        {"cond": {"type": "formula", "value": "CM.boost"},
         "action": {"type": "trigger_var", "var": "CM.hold", "duration": 600}},
        {"cond": {"type": "formula", "value": "CM.hold"}, "action": {"type": "goto", "goto": 9}},
        {"action": {"type": "set", "value": 6000}},
        {"cond": {"type": "grid_import", "value": 20000}, "action": {"type": "set", "value": 0}},
        {"action": {"type": "end"}},
        {"id": 9, "action": {"type": "set", "value": "min(16000, 32000 - M1.current)"}}],
}


def measure(rules: list[dict], seconds: float) -> float:
    program = compile_rules(validate_rules(rules))
    env = DictEnv({"m1.current_l1": 3000, "m1.current_l2": 2000, "m1.current_l3": 1000,
                   "cm.boost": 1})
    ctx = RuleContext(now_s=0.0, weekday=0, dayminute=1300, surplus_w=5500, charge_phases=3,
                      phases=(PhaseValues(grid_import_ma=5000),) * 3, num_charging=1, env=env)
    memory = RuleMemory()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            _, memory = evaluate(program, ctx, memory)
        count += 200
        if time.perf_counter() >= deadline:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {name: measure(rules, args.seconds) for name, rules in LISTS.items()}
    if args.json:
        print(json.dumps(out))
        return
    for name, rate in out.items():
        print(f"{name:10s} {rate:10.0f} evaluations/s  {1e6 / rate:7.1f} µs each")


if __name__ == "__main__":
    main()
