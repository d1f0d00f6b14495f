"""Property tests of the planner's invariants (spec §5.7) over random physical sites.

Sites: group trees up to 4 levels, up to 30 wallboxes (200 in a smaller run), random phases,
rotations, limits, meter readings (some stale), timers, priorities, surplus and COM errors.
`CHARGEBRAIN_HYPOTHESIS_EXAMPLES` raises the example counts (e.g. 2000 for a long soak).
"""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargebrain.core.budget import gross_limit_ma, net_limit_ma
from chargebrain.core.plan import plan
from chargebrain.core.site import MeterInput, MeterRole, PlanResult, SiteInput
from chargebrain.units import mask_to_phases, rotate_mask, rotate_phases
from tests.core.world import NOW, UNLIMITED_LOAD, VOLT, World, worlds

_SCALE = int(os.environ.get("CHARGEBRAIN_HYPOTHESIS_EXAMPLES", "0"))


def _examples(default: int) -> int:
    return max(default, _SCALE)


_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow,
                                                         HealthCheck.data_too_large]}


def _controlled(world: World) -> list:
    return [e for e in world.site.evses if e.dev_id not in world.uncontrolled]


def _wants(e) -> bool:  # type: ignore[no-untyped-def]
    return (e.connected and e.authorised and e.allowed and e.phases_mask & 7 != 0
            and e.max_current_ma >= max(e.min_current_ma, 6000))


def _tier(e) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return (0 if e.surplus else 1, -e.priority)


def _site_budget(world: World, result: PlanResult) -> int:
    """The budget the spec allows: net limit − the active penalty at most, and at least
    net limit − max(active penalty, overdraft seen now) (only the part of an overdraft that
    the plan's own cuts do not remove becomes a new penalty)."""
    s = world.site.settings
    memory = world.memory
    penalty = memory.overdraft_penalty_ma
    if memory.overdraft_until_s is None or memory.overdraft_until_s <= NOW:
        penalty = 0
    worst = penalty
    if 0 in world.grid_nodes:
        grid = next(m for m in world.site.meters if m.role == MeterRole.GRID and m.group_id == 0)
        over = max(grid.currents_ma) - gross_limit_ma(s)  # type: ignore[arg-type]
        if over > 0:
            worst = max(penalty, over)
    budget = result.diagnostics.site_budget_ma
    assert budget[0] == budget[1] == budget[2]
    assert net_limit_ma(s) - worst <= budget[0] <= net_limit_ma(s) - penalty
    return budget[0]


def _mask(world: World, result: PlanResult, e) -> int:  # type: ignore[no-untyped-def]
    """The building phases an EVSE's setpoint loads: one phase (its L1, rotated) when the
    planner switched it to one phase, else the phases its car draws on."""
    if result.setpoints[e.dev_id].one_phase:
        return rotate_mask(result.setpoints[e.dev_id].phases_mask & 0b111, e.phase_rotation_deg)
    return world.evse_mask[e.dev_id]


def _allocated(world: World, result: PlanResult, node: int, filt=None) -> list[int]:  # type: ignore[no-untyped-def]
    """Sum of the controlled setpoints below `node` per building phase."""
    below = set(world.subtree(node))
    total = [0, 0, 0]
    for e in _controlled(world):
        if world.evse_group[e.dev_id] not in below or (filt is not None and not filt(e)):
            continue
        vec = mask_to_phases(_mask(world, result, e), result.setpoints[e.dev_id].current_ma)
        total = [a + b for a, b in zip(total, vec, strict=True)]
    return total


def _limit_rows(world: World, budget: int) -> list[tuple[int, int, int]]:
    """(node, phase, room for controlled EVSEs) for every limited node, assumed loads."""
    rows = []
    for g in world.parent:
        limit = budget if g == 0 else world.limit[g]
        if limit is None and g in world.stale_nodes:
            limit = UNLIMITED_LOAD  # a stale meter stops the wallboxes below it even here
        if limit is None:
            continue
        load = world.assumed_non_evse(g, budget)
        rows += [(g, p, limit - load[p]) for p in range(3)]
    return rows


def check_invariants(world: World, result: PlanResult) -> None:
    """Every invariant of spec §5.7 that a single plan must satisfy."""
    s = world.site.settings
    budget = _site_budget(world, result)
    sp = result.setpoints
    assert set(sp) == {e.dev_id for e in world.site.evses}
    rows = _limit_rows(world, budget)

    # 1. limits: allocated + non-EVSE load ≤ limit; all 0 where non-EVSE alone is too much
    for g, p, room in rows:
        got = _allocated(world, result, g)[p]
        assert got <= max(0, room), f"node {g} L{p + 1}: {got} mA allocated, room {room}"
    if not world.stale_nodes and not world.hidden_prod:
        for g in world.parent:  # with every meter fresh the assumption is the physical truth
            assert world.assumed_non_evse(g, budget) == world.true_non_evse(g)
    if s.max_total_evse_current_ma > 0:
        booked = [0, 0, 0]
        for _node, load in world.uncontrolled.values():
            booked = [a + b for a, b in zip(booked, load, strict=True)]
        got = _allocated(world, result, 0)
        for p in range(3):
            assert got[p] <= max(0, s.max_total_evse_current_ma - booked[p])

    # 2. every controlled EVSE gets 0 or between its min and max
    for e in _controlled(world):
        cur = sp[e.dev_id].current_ma
        if not _wants(e) or not s.lb_enabled:
            assert cur == 0, e.dev_id
        else:
            assert cur == 0 or max(e.min_current_ma, 6000) <= cur <= e.max_current_ma, e.dev_id
        assert sp[e.dev_id].paused == (_wants(e) and cur == 0)

    # 3. surplus EVSEs together stay within the surplus
    surplus_w = max(0, world.site.surplus_w if world.site.surplus_w is not None
                    else result.diagnostics.surplus_w)
    used = sum(sp[e.dev_id].current_ma * _mask(world, result, e).bit_count() * VOLT
               for e in _controlled(world) if e.surplus)
    assert used <= surplus_w * 1000

    # 4. strict priority: a paused EVSE that would fit besides the EVSEs of its own or higher
    #    tiers means no lower tier may charge
    for h in _controlled(world):
        r = sp[h.dev_id]
        if not r.paused or r.pause_reason in ("min_pause", "imbalance"):
            continue
        lower_charging = any(
            _tier(e) > _tier(h) and sp[e.dev_id].current_ma > 0 for e in _controlled(world))
        if not lower_charging:
            continue
        assert not _would_fit(world, result, h, rows, surplus_w), (h.dev_id, r.reason)

    # 5. imbalance: only non-EVSE load can leave it above the limit
    if s.max_imbalance_ma > 0:
        loads = _allocated(world, result, 0)
        if s.imbalance_add:
            site_load = world.assumed_non_evse(0, budget)
            loads = [a + b for a, b in zip(loads, site_load, strict=True)]
        hi, lo = loads.index(max(loads)), loads.index(min(loads))
        if loads[hi] - loads[lo] > s.max_imbalance_ma:
            assert s.imbalance_add
            for e in _controlled(world):
                mask = _mask(world, result, e)
                if sp[e.dev_id].current_ma > 0:
                    assert not (mask >> hi & 1 and not mask >> lo & 1), e.dev_id

    # 6. timers: a car inside its minimum pause stays off; a runner inside its minimum run
    #    time is never rotated out
    for e in _controlled(world):
        t = world.memory.evses[e.dev_id]
        held = t.pause_held and t.paused_since_s is not None
        if held and NOW - t.paused_since_s < s.min_pause_time_s:  # type: ignore[operator]
            assert sp[e.dev_id].current_ma == 0
        running = t.last_current_ma > 0 and t.running_since_s is not None
        if running and NOW - t.running_since_s < s.min_run_time_s:  # type: ignore[operator]
            assert sp[e.dev_id].pause_reason != "rotation"


def _would_fit(world: World, result: PlanResult, h, rows, surplus_w: int) -> bool:  # type: ignore[no-untyped-def]
    """Would h's minimum fit next to the EVSEs of its own and higher tiers?"""
    need = max(h.min_current_ma, 6000)
    mask = world.evse_mask[h.dev_id]
    path = world.path(world.evse_group[h.dev_id])

    def peers(e) -> bool:  # type: ignore[no-untyped-def]
        return _tier(e) <= _tier(h) and e.dev_id != h.dev_id

    for g, p, room in rows:
        if g in path and mask >> p & 1 and _allocated(world, result, g, peers)[p] + need > room:
            return False
    s = world.site.settings
    if s.max_total_evse_current_ma > 0:
        booked = [0, 0, 0]
        for _node, load in world.uncontrolled.values():
            booked = [a + b for a, b in zip(booked, load, strict=True)]
        got = _allocated(world, result, 0, peers)
        for p in range(3):
            if mask >> p & 1 and got[p] + need > s.max_total_evse_current_ma - booked[p]:
                return False
    if h.surplus:
        used = sum(result.setpoints[e.dev_id].current_ma * _mask(world, result, e).bit_count()
                   * VOLT for e in _controlled(world) if e.surplus and peers(e))
        if used + need * mask.bit_count() * VOLT > surplus_w * 1000:
            return False
    return True


@settings(max_examples=_examples(300), **_SETTINGS)
@given(worlds())
def test_invariants(world: World) -> None:
    check_invariants(world, plan(world.site, world.memory, NOW))


@settings(max_examples=_examples(25), **_SETTINGS)
@given(worlds(max_evses=200, max_groups=12))
def test_invariants_large_sites(world: World) -> None:
    check_invariants(world, plan(world.site, world.memory, NOW))


@settings(max_examples=_examples(100), **_SETTINGS)
@given(worlds(), st.randoms(use_true_random=False))
def test_deterministic_and_order_independent(world: World, rnd: random.Random) -> None:
    first = plan(world.site, world.memory, NOW)
    assert plan(world.site, world.memory, NOW) == first
    evses, groups, meters = (list(world.site.evses), list(world.site.groups),
                             list(world.site.meters))
    rnd.shuffle(evses)
    rnd.shuffle(groups)
    rnd.shuffle(meters)
    shuffled = SiteInput(world.site.settings, tuple(groups), tuple(meters), tuple(evses),
                         world.site.surplus_w)
    again = plan(shuffled, world.memory, NOW)
    assert again.setpoints == first.setpoints
    assert again.memory == first.memory
    assert again.diagnostics == first.diagnostics


@settings(max_examples=_examples(100), **_SETTINGS)
@given(worlds(), st.data())
def test_stale_meter_never_gives_more_current(world: World, data: st.DataObject) -> None:
    """A stale load meter stops every wallbox below it, and never beats its worst case fresh."""
    fresh = [m for m in world.site.meters
             if m.role in (MeterRole.CONSUMPTION, MeterRole.GRID) and m.read_at_s is not None]
    if not fresh:
        return
    meter = data.draw(st.sampled_from(fresh))
    g = meter.group_id
    budget = net_limit_ma(world.site.settings)
    limit = budget if g == 0 else world.limit[g]
    stale = _with_meter(world.site, MeterInput(meter.dev_id, meter.role, g, meter.currents_ma,
                                               meter.power_w, read_at_s=None))
    stale_result = plan(stale, world.memory, NOW)
    below = set(world.subtree(g))
    stale_below = [stale_result.setpoints[e.dev_id].current_ma for e in _controlled(world)
                   if world.evse_group[e.dev_id] in below]
    assert all(c == 0 for c in stale_below)
    if limit is None:
        return
    # The same meter fresh, reading its worst case: the node's limit used up by non-EVSE load.
    worst = (limit, limit, limit)
    if meter.role == MeterRole.GRID:
        draws = [0, 0, 0]
        for e in world.site.evses:
            if world.evse_group[e.dev_id] in below:
                grid_vec = _drawn(world, e)
                draws = [a + b for a, b in zip(draws, grid_vec, strict=True)]
        worst = tuple(limit + d for d in draws)  # type: ignore[assignment]
    fresh_worst = _with_meter(world.site, MeterInput(meter.dev_id, meter.role, g, worst,
                                                     meter.power_w, read_at_s=NOW))
    fresh_result = plan(fresh_worst, world.memory, NOW)
    fresh_below = [fresh_result.setpoints[e.dev_id].current_ma for e in _controlled(world)
                   if world.evse_group[e.dev_id] in below]
    assert sum(stale_below) <= sum(fresh_below)


def _drawn(world: World, e) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """What the EVSE draws now in the building frame (its reading, else its last offer)."""
    if e.measured_ma is not None:
        return rotate_phases(e.measured_ma, e.phase_rotation_deg)
    if e.charging:
        offered = world.memory.evses[e.dev_id].last_current_ma
        return mask_to_phases(world.evse_mask[e.dev_id], offered)
    return (0, 0, 0)


def _with_meter(site: SiteInput, meter: MeterInput) -> SiteInput:
    meters = tuple(meter if m.dev_id == meter.dev_id else m for m in site.meters)
    return SiteInput(site.settings, site.groups, meters, site.evses, site.surplus_w)
