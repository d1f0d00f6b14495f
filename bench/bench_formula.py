"""Formula evaluations per second (core.formula), compile time, and the live environment.

    .venv/bin/python bench/bench_formula.py [--seconds 1] [--json]

Measured, each as the best of five rounds of about `--seconds / 5` s (the machine is shared:
the best round is the least disturbed one):

* `rule`: the typical rule formula of the issue,
  `M1.current_l1 < 16000 && date.hour >= 10 ? min(32000, CM.limit) : 6000`, evaluated with a
  `DictEnv` (one dict lookup per name) and with the control cycle's `LiveEnv` over a snapshot of
  50 devices (about 700 names, CM formula variables looked up lazily);
* `smoothing`: an arithmetic expression-meter formula,
  `(power_w * (20 - dt) + M1.power_w * dt) / 20`;
* `per_phase`: `16000 - M1.current` as a limit (three evaluations, the least wins);
* `compile`: parsing and compiling the rule formula without the cache.

Target (issue 10): at least 500,000 evaluations/s of the rule formula.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

from chargebrain.control.formula_env import LiveEnv, OverlayEnv, per_phase_min
from chargebrain.core import formula as f

RULE = "M1.current_l1 < 16000 && date.hour >= 10 ? min(32000, CM.limit) : 6000"
SMOOTHING = "(power_w * (20 - dt) + M1.power_w * dt) / 20"
PER_PHASE = "16000 - M1.current"


def snapshot(devices: int = 50) -> dict[str, float]:
    """About what FormulaNames.env() holds for a site with `devices` devices."""
    values: dict[str, float] = {}
    for n in range(1, devices + 1):
        for prefix in (f"m{n}", f"e{n}"):
            for member in ("current_l1", "current_l2", "current_l3", "power_w", "import_wh",
                           "export_wh", "com_err"):
                values[f"{prefix}.{member}"] = float(n * 100)
    values.update({"date.hour": 11.0, "cm.limit": 20000.0, "date.dayminute": 660.0})
    return values


def rate(call: Callable[[], object], seconds: float) -> float:
    """Calls per second: the best of five rounds."""
    best = 0.0
    for _ in range(5):
        n = 0
        batch = 1000
        start = time.perf_counter()
        deadline = start + seconds / 5
        while True:
            for _ in range(batch):
                call()
            n += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    values = snapshot()
    dict_env = f.DictEnv(values)
    live_env = LiveEnv(values, {"cm.double": "CM.limit * 2"})
    rule = f.compile_formula(RULE)
    smoothing = f.compile_formula(SMOOTHING)
    per_phase = f.compile_formula(PER_PHASE)
    own = OverlayEnv(live_env, {"power_w": 2000.0, "dt": 3.0})
    assert rule.evaluate(dict_env) == rule.evaluate(live_env) == 20000.0

    results = {
        "rule_dict_env_per_s": rate(lambda: rule.evaluate(dict_env), args.seconds),
        "rule_live_env_per_s": rate(lambda: rule.evaluate(live_env), args.seconds),
        "smoothing_live_env_per_s": rate(lambda: smoothing.evaluate(own), args.seconds),
        "per_phase_limit_per_s": rate(lambda: per_phase_min(per_phase, live_env),
                                      args.seconds),
        "compile_per_s": rate(lambda: f._compile_cached.__wrapped__(RULE), args.seconds),
    }
    machine = f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, **results}, indent=2))
        return
    print(f"machine: {machine}")
    for name, value in results.items():
        print(f"{name:28} {value:12,.0f}")
    target = 500_000
    verdict = "meets" if results["rule_live_env_per_s"] >= target else "misses"
    print(f"rule formula with the live env {verdict} the target of {target:,}/s")


if __name__ == "__main__":
    main()
