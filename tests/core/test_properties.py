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

from chargebrain.core.plan import plan
from chargebrain.core.site import MeterInput, MeterRole, SiteInput
from tests.core.invariants import check_all
from tests.core.oracle import controlled, drawn_ma, site_budget
from tests.core.world import NOW, World, worlds

_SCALE = int(os.environ.get("CHARGEBRAIN_HYPOTHESIS_EXAMPLES", "0"))


def _examples(default: int) -> int:
    return max(default, _SCALE)


_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow,
                                                         HealthCheck.data_too_large]}


@settings(max_examples=_examples(300), **_SETTINGS)
@given(worlds())
def test_invariants(world: World) -> None:
    check_all(world, plan(world.site, world.memory, NOW))


@settings(max_examples=_examples(25), **_SETTINGS)
@given(worlds(max_evses=200, max_groups=12))
def test_invariants_large_sites(world: World) -> None:
    check_all(world, plan(world.site, world.memory, NOW))


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
    budget = site_budget(world).net_ma
    limit = budget if g == 0 else world.limit[g]
    stale = _with_meter(world.site, MeterInput(meter.dev_id, meter.role, g, meter.currents_ma,
                                               meter.power_w, read_at_s=None))
    stale_result = plan(stale, world.memory, NOW)
    below = set(world.subtree(g))
    stale_below = [stale_result.setpoints[e.dev_id].current_ma for e in controlled(world)
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
                grid_vec = drawn_ma(world, e)
                draws = [a + b for a, b in zip(draws, grid_vec, strict=True)]
        worst = tuple(limit + d for d in draws)  # type: ignore[assignment]
    fresh_worst = _with_meter(world.site, MeterInput(meter.dev_id, meter.role, g, worst,
                                                     meter.power_w, read_at_s=NOW))
    fresh_result = plan(fresh_worst, world.memory, NOW)
    fresh_below = [fresh_result.setpoints[e.dev_id].current_ma for e in controlled(world)
                   if world.evse_group[e.dev_id] in below]
    assert sum(stale_below) <= sum(fresh_below)


def _with_meter(site: SiteInput, meter: MeterInput) -> SiteInput:
    meters = tuple(meter if m.dev_id == meter.dev_id else m for m in site.meters)
    return SiteInput(site.settings, site.groups, meters, site.evses, site.surplus_w)
