"""Allocation time for 10 / 100 / 1000 / 10000 EVSEs in a 3-level group tree.

    .venv/bin/python bench/bench_allocator.py [--sizes 10,100,1000,10000] [--seconds 2] [--json]

For each size it builds one site: the site limit, three levels of `evse_group`s below it (leaf
groups of about ten wallboxes), a grid meter at the site and a consumption meter on every
first-level group, a mix of 3-phase and 1-phase cars on rotated boxes, two priorities, a few
surplus boxes, half of them running with timers. Limits are chosen so that group and site limits
bind and some cars must pause (the expensive case). It then times, on the steady state (the
memory of a previous cycle):

* `plan()`: the whole planning step (budget, load accounting, allocation, diagnostics);
* `allocate()`: the allocator alone on the same snapshot;
* a bare baseline in the same run: one Python pass that gives every EVSE an equal share and
  builds its setpoint, i.e. the least any planner must do per EVSE.

Reported: median and p95 per call, and the ratio plan / baseline. Target (spec §11): plan for
1000 EVSEs < 10 ms median.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

from chargebrain.core.allocator import allocate
from chargebrain.core.model import Reason, Setpoint, Snapshot
from chargebrain.core.plan import plan, snapshot
from chargebrain.core.site import (
    EvseInput,
    GroupInput,
    MeterInput,
    MeterRole,
    PlanMemory,
    SiteInput,
    SiteSettings,
)
from common import machine

NOW = 100_000.0


def build_site(n: int) -> SiteInput:
    """A deterministic car park with `n` wallboxes under a 3-level group tree."""
    leaves = max(1, n // 10)
    branch = max(1, math.ceil(leaves ** (1 / 3)))
    groups: list[GroupInput] = []
    leaf_ids: list[int] = []
    next_id = 1
    for _a in range(branch):
        g1 = next_id
        next_id += 1
        groups.append(GroupInput(g1, 0, 16_000 * max(1, n // branch) // 3, f"feeder {g1}"))
        for _b in range(branch):
            g2 = next_id
            next_id += 1
            groups.append(GroupInput(g2, g1, 16_000 * max(1, n // branch**2) // 2, f"bus {g2}"))
            for _c in range(branch):
                g3 = next_id
                next_id += 1
                groups.append(GroupInput(g3, g2, 16_000 * max(1, n // branch**3) * 2 // 3,
                                         f"row {g3}"))
                leaf_ids.append(g3)
    evses = []
    grid = [5_000, 5_000, 5_000]
    for i in range(n):
        one_phase = i % 10 < 3
        mask = 0b001 if one_phase else 0b111
        rotation = (0, 120, 240)[i % 3]
        running = i % 2 == 0
        measured = None
        if running:
            measured = (10_000, 0, 0) if one_phase else (10_000, 10_000, 10_000)
            grid[i % 3 if one_phase else 0] += 10_000
            if not one_phase:
                grid[1] += 10_000
                grid[2] += 10_000
        evses.append(EvseInput(
            dev_id=f"E{1000 + i}", group_id=leaf_ids[i % len(leaf_ids)], connected=True,
            charging=running, measured_ma=measured, phases_mask=mask, phase_rotation_deg=rotation,
            min_current_ma=6000, max_current_ma=16_000 if i % 4 else 32_000,
            priority=2 if i % 7 == 0 else 1, surplus=i % 20 == 0, arrival_order=i,
            session_energy_wh=(i * 37) % 5000,
        ))
    meters = [MeterInput("M1", MeterRole.GRID, 0, tuple(grid), sum(grid) * 230 // 1000,  # type: ignore[arg-type]
                         read_at_s=NOW)]
    for g in groups:
        if g.parent_id == 0:
            meters.append(MeterInput(f"M{g.group_id + 1}", MeterRole.CONSUMPTION, g.group_id,
                                     (2_000, 1_000, 3_000), read_at_s=NOW))
    settings = SiteSettings(max_total_current_ma=12_000 * n // 3 + 20_000, max_imbalance_ma=20_000)
    return SiteInput(settings, tuple(groups), tuple(meters), tuple(evses),
                     surplus_w=3_000 + 500 * n)


def steady_memory(site: SiteInput) -> PlanMemory:
    """The memory after two cycles, so that timers and pauses are in play."""
    first = plan(site, PlanMemory(), NOW - 6)
    return plan(site, first.memory, NOW - 3).memory


def baseline(snapshot: Snapshot) -> dict[str, Setpoint]:
    """Equal share of the site's room, one pass over the EVSEs: the floor of any planner."""
    site = next(g for g in snapshot.groups if g.group_id == 0)
    share = max(0, min(site.limit_ma) - max(site.non_evse_load_ma)) // max(1, len(snapshot.evses))
    reason = Reason("site_limit", "equal share")
    out = {}
    for d in snapshot.evses:
        cur = min(d.max_ma, share)
        cur = cur if cur >= d.min_ma else 0
        out[d.dev_id] = Setpoint(d.dev_id, cur, d.phases_mask, cur == 0, reason)
    return out


def time_calls(fn, seconds: float, min_runs: int = 5) -> list[float]:  # type: ignore[no-untyped-def]
    """Per-call wall times (s) of `fn()`, repeated for about `seconds`."""
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--seconds", type=float, default=2.0, help="time spent per measurement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        site = build_site(n)
        memory = steady_memory(site)
        snap = snapshot(site, memory, NOW)
        result = plan(site, memory, NOW)
        charging = sum(1 for s in result.setpoints.values() if s.current_ma > 0)
        base = time_calls(lambda snap=snap: baseline(snap), args.seconds)
        alloc = time_calls(lambda snap=snap: allocate(snap), args.seconds)
        full = time_calls(lambda site=site, memory=memory: plan(site, memory, NOW), args.seconds)
        rows.append({
            "evses": n, "groups": len(site.groups), "charging": charging,
            "plan_median_ms": statistics.median(full) * 1e3, "plan_p95_ms": p95(full) * 1e3,
            "allocate_median_ms": statistics.median(alloc) * 1e3,
            "allocate_p95_ms": p95(alloc) * 1e3,
            "baseline_median_ms": statistics.median(base) * 1e3,
            "ratio_plan_to_baseline": statistics.median(full) / statistics.median(base),
            "runs": len(full),
        })
    if args.json:
        print(json.dumps({"machine": machine(os_release=True), "results": rows}, indent=2))
        return
    print(f"machine: {machine(os_release=True)}")
    print("| EVSEs | groups | charging | plan median | plan p95 | allocate median | "
          "allocate p95 | baseline median | plan / baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['evses']} | {r['groups']} | {r['charging']} | {r['plan_median_ms']:.2f} ms"
              f" | {r['plan_p95_ms']:.2f} ms | {r['allocate_median_ms']:.2f} ms | "
              f"{r['allocate_p95_ms']:.2f} ms | {r['baseline_median_ms']:.3f} ms | "
              f"{r['ratio_plan_to_baseline']:.0f}× |")


if __name__ == "__main__":
    main()
