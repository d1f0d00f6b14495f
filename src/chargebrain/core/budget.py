"""Site budget and load accounting: from limits and meter readings to per-node non-EVSE load.

Pure functions used by `core.plan`. Everything is per building phase (3-tuples, mA).

* The site budget is `max_total_current × max_total_cur_prc % − reserve_current − penalty`.
* An overdraft is a measured site load above `max_total_current × prc %` — beyond the reserve,
  which is there to absorb the fluctuations between two cycles; its size cuts the budget for
  `overdraft_hold_s` (5 min).
* The non-EVSE load of a node covers everything below it that the allocator does not control:
  - a node with a fresh grid meter: grid reading − the draw of every EVSE below + the booked
    load of the uncontrolled EVSEs below (their worst case replaces their measured draw).
    Readings arrive at different times, so what each EVSE drew *when the grid meter measured*
    is known only as a range (`draw_bounds_ma`): its last measurement before the meter's,
    widened towards every setpoint it was handed that it may still have been following. The
    grid reading then brackets the non-EVSE load; the node keeps the value it was last booked
    with when that lies inside the bracket (no invented house-load jump while wallboxes
    settle), else takes the nearest end of it. A first estimate takes the upper end (safe);
  - otherwise: the node's own consumption/production/storage meters + the booked load of the
    uncontrolled EVSEs directly in it + the non-EVSE load of each child node;
  - a stale meter that measures load (grid, consumption, storage) makes its node's non-EVSE load
    the node's whole limit (unlimited node: unlimited), which then also counts in the parents
    that have no grid meter of their own. A stale production meter simply counts as 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chargebrain.core.model import SITE_GROUP, UNLIMITED, UNLIMITED_MA
from chargebrain.core.site import (
    CommandSample,
    DrawSample,
    MeterInput,
    MeterRole,
    SiteSettings,
)
from chargebrain.units import ZERO, Phases, add, sub

LOAD_ROLES = (MeterRole.CONSUMPTION, MeterRole.GRID, MeterRole.STORAGE_HOME,
              MeterRole.STORAGE_ALL)


def gross_limit_ma(settings: SiteSettings) -> int:
    """The per-phase site limit the fuse sees: max total × share %."""
    share = max(0, min(100, settings.max_total_cur_prc))
    return settings.max_total_current_ma * share // 100


def net_limit_ma(settings: SiteSettings) -> int:
    """The per-phase site limit before any penalty: max total × share % − reserve."""
    reserve = max(0, settings.reserve_current_ma)  # a negative reserve would add room
    return gross_limit_ma(settings) - reserve


def site_budget_ma(settings: SiteSettings, penalty_ma: int) -> Phases:
    """The site budget on each phase: the net limit minus an active overdraft penalty."""
    b = net_limit_ma(settings) - max(0, penalty_ma)
    return (b, b, b)


def overdraft_ma(settings: SiteSettings, measured_ma: Phases | None) -> int:
    """How far the measured site load exceeds the gross limit on its worst phase (0 = none).

    Load inside the reserve is not an overdraft: the allocator fills up to limit − reserve, so
    measuring against that would turn every small rise of the house load into a 5-minute cut."""
    if measured_ma is None:
        return 0
    return max(0, max(measured_ma) - gross_limit_ma(settings))


def meter_currents_ma(meter: MeterInput, voltage_v: int) -> Phases:
    """The meter's per-phase currents; a power-only meter's power spread over its phases."""
    if meter.currents_ma is not None:
        return meter.currents_ma
    mask = meter.phases_mask & 0b111 or 0b111
    n = mask.bit_count()
    per_phase = round(meter.power_w * 1000 / (max(voltage_v, 1) * n))
    return (per_phase if mask & 1 else 0, per_phase if mask & 2 else 0,
            per_phase if mask & 4 else 0)


def meter_load_ma(meter: MeterInput, voltage_v: int) -> Phases:
    """What a fresh meter contributes to its node's non-EVSE load (grid meters excluded).

    Consumption counts only positively (a negative reading is treated as a wiring error, not
    as room); production is negative load; storage charging is load (we cannot command the
    battery to yield, so we protect the fuse against it), discharge is negative load only for
    a "storage all" battery (a home battery's discharge is not counted on).
    """
    cur = meter_currents_ma(meter, voltage_v)
    role = meter.role
    if role == MeterRole.CONSUMPTION:
        return _map(cur, lambda v: max(0, v))
    if role == MeterRole.PRODUCTION:
        return _map(cur, lambda v: -v)
    if role == MeterRole.STORAGE_HOME:
        return _map(cur, lambda v: max(0, v))
    if role == MeterRole.STORAGE_ALL:
        return cur
    return ZERO


DRAWING_MA = 500  # a phase carrying more than this is in use by the car


def draw_bounds_ma(readings: Sequence[DrawSample], commands: Sequence[CommandSample],
                   phases_mask: int, at_s: float, settle_s: float, response_s: float = 0.0,
                   silent_s: float = float("inf")) -> tuple[Phases, Phases]:
    """What an EVSE drew at `at_s` (EVSE frame): the lowest and highest plausible value.

    The base is the last measurement at or before `at_s` (the first one when all are later).
    A car can change its draw on its own between two measurements (unplugged, full, paused or
    resumed by the car), so the range also spans every later measurement: the change may have
    come before `at_s`; and with no measurement within `silent_s` before `at_s` or later, the
    car may have stopped since the last one: the lowest draw is 0. With no car connected at the
    base, that is all there is. Otherwise the car may also have been on its way to a setpoint
    handed over after the base (one handed over at the moment of the base answered it, so it
    came after it), up to `response_s` before `at_s` (no car reacts faster), or to the one it
    had at the base if that was handed over less than `settle_s` before: it was somewhere
    between the base and such a setpoint. Setpoints widen the range on the phases the car
    draws on (all of `phases_mask` while it draws nothing yet).
    Without any measurement the range is nothing (0, 0).
    """
    if not readings:
        return ZERO, ZERO
    base = readings[0]
    for sample in reversed(readings):
        if sample.at_s <= at_s:
            base = sample
            break
    lo = list(base.currents_ma)
    hi = list(base.currents_ma)
    for sample in readings:
        if sample.at_s > base.at_s:
            for i in range(3):
                lo[i] = min(lo[i], sample.currents_ma[i])
                hi[i] = max(hi[i], sample.currents_ma[i])
    if readings[-1].at_s < at_s - silent_s:  # not seen for a while: it may have stopped
        lo = [0, 0, 0]
    if not base.plugged:
        return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])
    using = [c > DRAWING_MA for c in base.currents_ma]
    if not any(using):
        using = [bool(phases_mask >> i & 1) for i in range(3)]
    followed: list[int] = []  # setpoints the car may have been on its way to at `at_s`
    in_force: CommandSample | None = None  # the setpoint it had when the base was measured
    for command in commands:
        if command.at_s < base.at_s:  # one handed out with the base reading answered it
            in_force = command
        elif command.at_s <= at_s - response_s:  # a car needs response_s to react at all
            followed.append(command.current_ma)
    if in_force is not None and base.at_s - in_force.at_s < settle_s:
        followed.append(in_force.current_ma)
    for cur in followed:
        cur = max(0, cur)
        for i in range(3):
            if using[i]:
                lo[i] = min(lo[i], cur)
                hi[i] = max(hi[i], cur)
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """The non-EVSE load below one node, and whether a stale meter's worst case is in it.

    `measured_ma` is, for a node with a fresh grid meter, the measured part of `non_evse_ma`
    (before booked load): the value to remember for the next step (`PlanMemory.non_evse_ma`).
    """

    non_evse_ma: Phases
    stale: bool  # a stale meter's worst case is part of it (here or below)
    own_stale: bool = False  # a load meter of this node itself is stale
    measured_ma: Phases | None = None


def node_loads(
    *,
    children: Mapping[int, list[int]],
    node_limit_ma: Mapping[int, Phases],
    meters: Iterable[MeterInput],
    booked_ma: Mapping[int, Phases],
    evse_draw_below_ma: Mapping[int, tuple[Phases, Phases]],
    booked_below_ma: Mapping[int, Phases],
    now_s: float,
    voltage_v: int,
    previous_ma: Mapping[int, Phases] | None = None,
) -> dict[int, NodeLoad]:
    """The non-EVSE load of every node (see the module docstring for the rules).

    `booked_ma[g]` is the booked load of uncontrolled EVSEs directly in node g;
    `evse_draw_below_ma[g]` is the (lowest, highest) draw of all EVSEs in g's whole subtree at
    the time of g's grid reading, `booked_below_ma[g]` the booked load of the uncontrolled ones
    there; `previous_ma[g]` what the last step settled on for g. Meters of unknown nodes count
    at the site.
    """
    previous = previous_ma or {}
    own: dict[int, Phases] = {g: ZERO for g in children}
    grid: dict[int, Phases] = {}
    stale_here: set[int] = set()
    for m in meters:
        g = m.group_id if m.group_id in children else SITE_GROUP
        if m.role == MeterRole.DISPLAY or (m.role == MeterRole.EV):
            continue
        if m.is_stale(now_s):
            if m.role in LOAD_ROLES:
                stale_here.add(g)
            continue
        if m.role == MeterRole.GRID:
            grid[g] = add(grid.get(g, ZERO), meter_currents_ma(m, voltage_v))
        else:
            own[g] = add(own[g], meter_load_ma(m, voltage_v))

    out: dict[int, NodeLoad] = {}
    for g in _children_first(children):
        if g in stale_here:
            out[g] = NodeLoad(node_limit_ma.get(g, UNLIMITED), True, True)
        elif g in grid:
            low_draw, high_draw = evse_draw_below_ma.get(g, (ZERO, ZERO))
            measured = _settle(previous.get(g), sub(grid[g], high_draw),
                               sub(grid[g], low_draw))
            out[g] = NodeLoad(add(measured, booked_below_ma.get(g, ZERO)), False,
                              measured_ma=measured)
        else:
            total = add(own[g], booked_ma.get(g, ZERO))
            stale = False
            for c in children[g]:
                total = add(total, out[c].non_evse_ma)
                stale = stale or out[c].stale
            out[g] = NodeLoad(_cap(total), stale)
    return out


def _settle(previous: Phases | None, low: Phases, high: Phases) -> Phases:
    """The previous value where it lies within [low, high], else the nearest end; with no
    previous value the upper end (the safe side)."""
    if previous is None:
        return high
    return (min(max(previous[0], low[0]), high[0]), min(max(previous[1], low[1]), high[1]),
            min(max(previous[2], low[2]), high[2]))


def _children_first(children: Mapping[int, list[int]]) -> list[int]:
    """Every node reachable from the site, each after all of its children (no recursion)."""
    order: list[int] = []
    stack = [SITE_GROUP]
    while stack:
        g = stack.pop()
        order.append(g)
        stack.extend(children[g])
    order.reverse()
    return order


def _cap(values: Phases) -> Phases:
    # Several unlimited worst cases add up; keep the number readable, it means "everything".
    return _map(values, lambda v: min(v, UNLIMITED_MA))


def _map(values: Phases, f) -> Phases:  # type: ignore[no-untyped-def]
    return (f(values[0]), f(values[1]), f(values[2]))
