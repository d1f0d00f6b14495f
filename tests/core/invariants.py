"""The invariants every plan must satisfy (spec §5.7), checked against the oracle.

Shared by the property tests (`test_properties.py`) and the mutation tests
(`test_mutations.py`, which break the planner on purpose and expect these checks to catch it).
Every failure message starts with the name of the check that failed (`budget:`, `safety:`,
`liveness:`, `fairness:`, `phases:`), so a test can tell which check caught a fault.

* `check_budget` – the site budget is what the settings say (max total × prc − reserve −
  penalty), computed by the oracle, not by the planner's functions.
* `check_safety` – no limit exceeded; 0 or between min and max; surplus pool; strict priority;
  imbalance; held pauses and minimum runs.
* `check_liveness` – free current is used: no controlled wallbox that wants current is paused
  while its minimum fits on every limit it loads, nor below its maximum while every limit it
  loads has at least `STEP_MA` of headroom.
* `check_fairness` – max-min fairness inside a tier: a wallbox below its maximum has a full
  limit on which no wallbox of its tier gets more than one step above it (except one held at
  its own, higher minimum) and no wallbox of a lower tier charges.
* `check_phases` – a wallbox the planner may not switch keeps the phases of its car.

Exemptions, each as narrow as the rule behind it:
* a pause held by `min_pause_time` (`pause_reason` "min_pause"): only when its timers say the
  pause is held (`EvseTimers.pause_held`: rotated out, or cut twice within min_pause_time) and
  not yet over;
* the imbalance rule (`imbalance` reason or pause): only with `max_imbalance` on, and only for
  a wallbox on one or two building phases (three-phase loads never change the imbalance);
* 1p/3p switching: a wallbox is judged on the phases its setpoint loads, so a one-phase box
  (switched down, or waiting its `phase_switch_delay` to go back) is not blamed for room on
  phases it does not use.
* PV surplus hysteresis, each checked against its timers (`_check_surplus`): a wallbox
  waiting out `surplus_start_delay` ("surplus_start") while the pool covers it; a running one
  held at exactly its minimum through a dip ("surplus_hold": outside the pool, never outside a
  limit); a surplus wallbox whose phases are not known yet gets its minimum only; a current
  the pool binds is rounded down to `surplus_step_ma`; a surplus start (or a wait for one)
  only where the pool covers its minimum besides the minimums of every other surplus wallbox
  of its or a higher tier that charges (held ones included) or waits to start; an idle
  surplus wallbox (offered current, drawing nothing for 60 s: `oracle.idle`) is outside the
  pool and at exactly its minimum, and only an idle one is given "surplus_idle".
`min_run_time` and round robin need no exemption: a runner inside its minimum run keeps its
place at admission, and whoever is paused for rotation finds its minimum does not fit.
"""

from __future__ import annotations

from chargebrain.core.site import EvseInput, PlanResult
from tests.core.oracle import (
    STEP_MA,
    Row,
    Usage,
    coefficient,
    controlled,
    held,
    idle,
    max_ma,
    min_ma,
    rows,
    setpoint_mask,
    site_budget,
    site_surplus_w,
    tier,
    usage,
    wants,
)
from tests.core.world import NOW, World


def check_all(world: World, result: PlanResult) -> None:
    """Every check below, on one plan of `world` at `NOW`."""
    budget = check_budget(world, result)
    all_rows = rows(world, budget, site_surplus_w(world))
    use = usage(world, result, all_rows)
    check_safety(world, result, budget, use)
    check_liveness(world, result, use)
    check_fairness(world, result, use)
    check_phases(world, result)


def check_budget(world: World, result: PlanResult) -> int:
    """The plan's site budget lies in the oracle's range; returns it."""
    b = site_budget(world)
    got = result.diagnostics.site_budget_ma
    assert got[0] == got[1] == got[2], f"budget: differs between phases {got}"
    assert b.low_ma <= got[0] <= b.high_ma, (
        f"budget: {got[0]} mA, the settings allow {b.low_ma}..{b.high_ma} mA (gross "
        f"{b.gross_ma}, net {b.net_ma}, penalty {b.active_penalty_ma}, overdraft "
        f"{b.overdraft_ma})")
    surplus = site_surplus_w(world)
    got_w = max(0, result.diagnostics.surplus_w)
    assert world.site.surplus_w is not None or got_w == surplus, (
        f"budget: surplus {got_w} W, the meters say {surplus} W")
    return got[0]


def check_safety(world: World, result: PlanResult, budget: int, use: Usage) -> None:
    """Spec §5.7: limits, ranges, surplus, strict priority, imbalance, pause/run timers."""
    s = world.site.settings
    sp = result.setpoints
    assert set(sp) == {e.dev_id for e in world.site.evses}, "safety: setpoints missing"

    # limits: allocated + non-EVSE load ≤ limit; all 0 where non-EVSE load alone is too much
    for row, head, held_use in zip(use.rows, use.headroom, use.held_use, strict=True):
        used = row.room - head - held_use  # a surplus hold is outside the pool (only)
        assert used <= max(0, row.room), f"safety: {row.name}: {used} used, room {row.room}"
    if not world.stale_nodes and not world.hidden_prod:
        for g in world.parent:  # with every meter fresh the assumption is the physical truth
            assert world.assumed_non_evse(g, budget) == world.true_non_evse(g)

    # every controlled EVSE gets 0 or between its min and max; paused ⇔ wants and gets 0
    for e in controlled(world):
        cur = sp[e.dev_id].current_ma
        if not wants(e) or not s.lb_enabled:
            assert cur == 0, f"safety: {e.dev_id} gets {cur} mA but wants none"
        else:
            assert cur == 0 or min_ma(e) <= cur <= e.max_current_ma, (
                f"safety: {e.dev_id} gets {cur} mA outside {min_ma(e)}..{e.max_current_ma}")
        assert sp[e.dev_id].paused == (wants(e) and cur == 0), f"safety: {e.dev_id} paused"

    _check_surplus(world, result)

    # strict priority: a paused EVSE that would fit besides the EVSEs of its own or higher
    # tiers means no lower tier may charge
    for h in controlled(world):
        r = sp[h.dev_id]
        if not r.paused or r.pause_reason in ("min_pause", "imbalance", "surplus_start"):
            continue
        if not any(tier(e) > tier(h) and sp[e.dev_id].current_ma > 0 for e in controlled(world)):
            continue
        peers = usage(world, result, use.rows,
                      lambda e, h=h: tier(e) <= tier(h) and e.dev_id != h.dev_id)  # type: ignore[misc]
        fits = all(peers.headroom[i] >= min_ma(h) * c
                   for i, c in _on(world, result, use, h))
        assert not fits, f"safety: {h.dev_id} paused ({r.reason}) while a lower tier charges"

    # imbalance: only non-EVSE load can leave it above the limit
    if s.max_imbalance_ma > 0:
        loads = _site_evse_load(world, result)
        if s.imbalance_add:
            site_load = world.assumed_non_evse(0, budget)
            loads = [a + b for a, b in zip(loads, site_load, strict=True)]
        hi, lo = loads.index(max(loads)), loads.index(min(loads))
        if loads[hi] - loads[lo] > s.max_imbalance_ma:
            assert s.imbalance_add, f"safety: imbalance {loads}"
            for e in controlled(world):
                mask = setpoint_mask(world, result, e)
                if sp[e.dev_id].current_ma > 0:
                    assert not (mask >> hi & 1 and not mask >> lo & 1), (
                        f"safety: {e.dev_id} charges on the high phase, imbalance {loads}")

    # timers: a car inside its held minimum pause stays off; a runner inside its minimum run
    # time is never rotated out
    for e in controlled(world):
        t = world.memory.evses[e.dev_id]
        if _pause_held(world, e):
            assert sp[e.dev_id].current_ma == 0, f"safety: {e.dev_id} inside its held pause"
        running = t.last_current_ma > 0 and t.running_since_s is not None
        if running and NOW - t.running_since_s < s.min_run_time_s:  # type: ignore[operator]
            assert sp[e.dev_id].pause_reason != "rotation", f"safety: {e.dev_id} rotated out"


def check_liveness(world: World, result: PlanResult, use: Usage) -> None:
    """Free current is used (see the module docstring for the exemptions)."""
    sp = result.setpoints
    for e in controlled(world):
        if not wants(e):
            continue
        r = sp[e.dev_id]
        cur = r.current_ma
        on = _on(world, result, use, e)
        if cur == 0:
            if r.pause_reason == "surplus_start":
                continue  # checked against its timer in _check_surplus
            if r.pause_reason == "min_pause":
                assert _pause_held(world, e), (
                    f"liveness: {e.dev_id} kept in a minimum pause that is not held")
                continue
            if r.pause_reason == "imbalance":
                _assert_imbalance_exempt(world, result, e)
                continue
            short = [use.rows[i].name for i, c in on if use.headroom[i] < min_ma(e) * c]
            assert short, (f"liveness: {e.dev_id} paused ({r.pause_reason}: {r.reason.text}) "
                           f"although its minimum {min_ma(e)} mA fits on every limit it loads")
        elif cur < max_ma(e):
            if r.reason.code == "imbalance":
                _assert_imbalance_exempt(world, result, e)
                continue
            if held(result, e) or idle(world, e):
                continue  # at its minimum on purpose (checked in _check_surplus)
            step = max(STEP_MA, world.site.settings.surplus_step_ma)
            full = [i for i, c in on
                    if use.headroom[i] < (step if use.rows[i].node is None else STEP_MA) * c]
            assert full, (f"liveness: {e.dev_id} at {cur} mA below its max {e.max_current_ma} "
                          f"mA ({r.reason.text}) while every limit it loads has headroom: "
                          + ", ".join(f"{use.rows[i].name} {use.headroom[i]}" for i, _ in on))


def check_fairness(world: World, result: PlanResult, use: Usage) -> None:
    """Max-min fairness inside a tier, within one step (module docstring)."""
    sp = result.setpoints
    by_id = {e.dev_id: e for e in controlled(world)}
    for e in by_id.values():
        r = sp[e.dev_id]
        cur = r.current_ma
        if (not wants(e) or cur == 0 or cur >= max_ma(e) or r.reason.code == "imbalance"
                or held(result, e) or idle(world, e)):
            continue
        problems: list[str] = []
        pool_step = max(STEP_MA, world.site.settings.surplus_step_ma)
        for i, c in _on(world, result, use, e):
            if use.headroom[i] >= (pool_step if use.rows[i].node is None else STEP_MA) * c:
                continue  # not full: it does not hold e back
            unfair = []
            for other, _c in use.coeff[i].items():
                f = by_id[other]
                got = sp[other].current_ma
                if other == e.dev_id or got == 0:
                    continue
                if use.rows[i].node is None and held(result, f):
                    continue  # held at its minimum through a dip: outside the pool
                if tier(f) > tier(e):
                    unfair.append(f"{other} (lower tier) {got}")
                elif (tier(f) == tier(e) and got > cur + STEP_MA and got != min_ma(f)):
                    unfair.append(f"{other} {got}")
            if not unfair:
                break  # a fair bottleneck
            problems.append(f"{use.rows[i].name}: " + ", ".join(unfair))
        else:
            raise AssertionError(f"fairness: {e.dev_id} held at {cur} mA (max "
                                 f"{e.max_current_ma}) on limits that give more to "
                                 + "; ".join(problems))


def check_phases(world: World, result: PlanResult) -> None:
    """A wallbox the planner may not switch keeps its car's phases; a switchable one is on
    its car's phases or on its own L1."""
    ctrl = {e.dev_id for e in controlled(world)}
    for e in world.site.evses:
        sp = result.setpoints[e.dev_id]
        car = e.phases_mask & 0b111
        switchable = e.dev_id in ctrl and e.phase_switching and car.bit_count() > 1
        if not switchable:
            assert sp.one_phase is None and sp.phases_mask == car, (
                f"phases: {e.dev_id} cannot switch phases but is set to mask "
                f"{sp.phases_mask:03b} (one_phase={sp.one_phase}), its car uses {car:03b}")
        else:
            assert sp.one_phase is not None, f"phases: {e.dev_id}: no 1p/3p decision"
            assert sp.phases_mask == (0b001 if sp.one_phase else car), (
                f"phases: {e.dev_id} set to mask {sp.phases_mask:03b}, one_phase={sp.one_phase}")


def _check_surplus(world: World, result: PlanResult) -> None:
    """The surplus hysteresis only ever acts as its timers say (module docstring)."""
    s = world.site.settings
    for e in controlled(world):
        sp = result.setpoints[e.dev_id]
        t = world.memory.evses[e.dev_id]
        if not wants(e):
            continue
        if sp.pause_reason == "surplus_start":
            since = t.surplus_cover_since_s
            waited = 0.0 if since is None or since > NOW else NOW - since
            assert e.surplus and t.last_current_ma == 0 and waited < s.surplus_start_delay_s, (
                f"safety: {e.dev_id} waits for a surplus start it may not wait for "
                f"(waited {waited} s of {s.surplus_start_delay_s} s)")
        is_idle = idle(world, e)
        assert (sp.reason.code == "surplus_idle") == (is_idle and sp.current_ma > 0), (
            f"safety: {e.dev_id} reason {sp.reason.code}, idle {is_idle}")
        if is_idle and sp.current_ma > 0:
            assert sp.current_ma == min_ma(e), (
                f"safety: {e.dev_id} idle at {sp.current_ma} mA, not at its minimum")
        starts = sp.pause_reason == "surplus_start" or (
            e.surplus and sp.current_ma > 0 and t.last_current_ma == 0)
        if starts:
            _check_start_besides_others(world, result, e)
        if held(result, e):
            delay = e.surplus_stop_delay_s or s.surplus_stop_delay_s
            low = t.surplus_low_since_s
            low_for = 0.0 if low is None or low > NOW else NOW - low
            run_for = NOW - t.running_since_s if t.running_since_s is not None else 0.0
            assert e.surplus and sp.current_ma == min_ma(e), (
                f"safety: {e.dev_id} held at {sp.current_ma} mA, not at its minimum")
            assert t.last_current_ma > 0 and t.running_since_s is not None, (
                f"safety: {e.dev_id} held through a surplus dip but was not running")
            assert delay > 0 and t.surplus_confirmed and (
                low_for < delay or run_for < s.min_run_time_s), (
                f"safety: {e.dev_id} held although its stop delay {delay} s is over "
                f"(low for {low_for} s, running {run_for} s, confirmed "
                f"{t.surplus_confirmed})")


def _check_start_besides_others(world: World, result: PlanResult, e: EvseInput) -> None:
    """A surplus start of `e` (or its wait for one): the pool covers the minimums of `e` and
    of every other surplus wallbox of its or a higher tier that charges or waits to start,
    idle ones aside (the two-cars-take-turns rule, docs "PV surplus")."""
    pool = [Row("surplus pool", None, None, site_surplus_w(world) * 1000)]
    need = 0
    for f in controlled(world):
        spf = result.setpoints[f.dev_id]
        if not (f.surplus and wants(f)) or tier(f) > tier(e) or idle(world, f):
            continue
        if spf.current_ma > 0 or spf.pause_reason == "surplus_start":
            need += coefficient(world, result, pool[0], f) * min_ma(f)
    assert pool[0].room >= need, (
        f"safety: {e.dev_id} starts on {pool[0].room} mA·V of surplus, the minimums of the "
        f"surplus wallboxes charging or starting need {need}")


def _on(world: World, result: PlanResult, use: Usage, e: EvseInput) -> list[tuple[int, int]]:
    """(row index, coefficient) of every limit `e`'s setpoint loads."""
    return [(i, c[e.dev_id]) for i, c in enumerate(use.coeff) if e.dev_id in c]


def _pause_held(world: World, e: EvseInput) -> bool:
    """A pause that min_pause_time holds: flagged held by the allocator, and not yet over."""
    t = world.memory.evses[e.dev_id]
    return (t.pause_held and t.paused_since_s is not None
            and NOW - t.paused_since_s < world.site.settings.min_pause_time_s)


def _assert_imbalance_exempt(world: World, result: PlanResult, e: EvseInput) -> None:
    mask = setpoint_mask(world, result, e)
    assert world.site.settings.max_imbalance_ma > 0 and mask != 0b111, (
        f"liveness: {e.dev_id} held back for imbalance, but it cannot change the imbalance")


def _site_evse_load(world: World, result: PlanResult) -> list[int]:
    total = [0, 0, 0]
    for e in controlled(world):
        mask = setpoint_mask(world, result, e)
        cur = result.setpoints[e.dev_id].current_ma
        for p in range(3):
            if mask >> p & 1:
                total[p] += cur
    return total

