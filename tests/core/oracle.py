"""An independent oracle for the property tests: the site budget and the limits, from the world.

Everything here is worked out from the `World` (the generated site and its physical truth) and
the rules of spec §5 / docs/load-management.md, without calling the planner's own arithmetic
(`core.budget`, `core.plan`): if the planner misreads a setting, the oracle does not repeat the
mistake. Only the phase helpers of `chargebrain.units` are shared.

Where the oracle cannot follow a rule on its own it gives a range that the planner must land in
(see `Budget`), and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chargebrain.core.site import EvseInput, MeterRole, PlanResult
from chargebrain.units import Phases, mask_to_phases, rotate_mask, rotate_phases
from tests.core.world import NOW, UNLIMITED_LOAD, VOLT, World

STEP_MA = 500
"""The resolution of the liveness and fairness checks. The allocator is exact to the mA, but
floors every wallbox's current to a whole mA, so a "full" limit may keep up to 1 mA per wallbox
on it (≤ 200 in the generated sites). 0.5 A is far below what any real wallbox resolves."""

MIN_FLOOR_MA = 6000  # IEC 61851: nobody is offered less than 6 A (except 0)


@dataclass(frozen=True, slots=True)
class Budget:
    """The site budget per building phase (the same on all three), as the spec defines it.

    `max_total_current × max_total_cur_prc % − reserve − penalty`. The penalty is the one
    running in memory, or a new one from an overdraft measured now. Which part of a measured
    overdraft becomes a new penalty depends on what the planner's first allocation would
    command away (`_overdraft_left_ma` in core/plan.py; scenario overdraft_commanded_away):
    the oracle cannot follow that without re-running the planner, so it bounds it: a new
    penalty is never larger than the whole overdraft and never smaller than the running one.
    With no overdraft (most sites) the range is a single value.
    """

    gross_ma: int  # max_total_current × prc %: what the fuse may see (overdraft threshold)
    net_ma: int  # gross − reserve: what the planner may fill up to
    active_penalty_ma: int  # a penalty still running from memory
    overdraft_ma: int  # measured site load above gross on its worst phase (fresh grid meter)

    @property
    def high_ma(self) -> int:
        """The largest budget the spec allows now (no new penalty)."""
        return self.net_ma - self.active_penalty_ma

    @property
    def low_ma(self) -> int:
        """The smallest budget the spec allows now (the whole overdraft as a new penalty)."""
        return self.net_ma - max(self.active_penalty_ma, self.overdraft_ma)


def site_budget(world: World) -> Budget:
    """The site budget range, from the settings, the memory and the site grid meter."""
    s = world.site.settings
    share_pct = min(100, max(0, s.max_total_cur_prc))
    gross = s.max_total_current_ma * share_pct // 100
    net = gross - max(0, s.reserve_current_ma)  # a negative reserve gives no extra room
    until = world.memory.overdraft_until_s
    active = world.memory.overdraft_penalty_ma if until is not None and until > NOW else 0
    over = 0
    if 0 in world.grid_nodes:  # only a fresh site grid meter measures the real total
        reading = site_grid_meter(world).currents_ma
        assert reading is not None
        over = max(0, max(reading) - gross)
    return Budget(gross, net, max(0, active), over)


def site_grid_meter(world: World):  # type: ignore[no-untyped-def]
    return next(m for m in world.site.meters if m.role == MeterRole.GRID and m.group_id == 0)


def drawn_ma(world: World, e: EvseInput) -> Phases:
    """What a wallbox draws now, building frame: its reading, else its last offer while the car
    charges, else nothing (spec §5.3)."""
    if e.measured_ma is not None:
        return rotate_phases(e.measured_ma, e.phase_rotation_deg)
    if e.charging:
        offered = world.memory.evses[e.dev_id].last_current_ma
        return mask_to_phases(world.evse_mask[e.dev_id], offered)
    return (0, 0, 0)


def site_surplus_w(world: World) -> int:
    """The PV surplus the surplus wallboxes may use (W), from the meters (docs §8).

    With a site grid meter: −grid + what the controlled wallboxes draw now (0 when that meter
    is stale; a disabled or silent wallbox's draw is not the planner's to give away).
    Without: production − consumption (0 when one of those meters is stale). The generated
    sites have no storage. A surplus formula (`SiteInput.surplus_w`) replaces all of this.
    """
    if world.site.surplus_w is not None:
        return max(0, world.site.surplus_w)
    meters = world.site.meters
    site_grid = [m for m in meters if m.role == MeterRole.GRID and m.group_id == 0]
    if site_grid:
        if 0 not in world.grid_nodes:
            return 0
        ev_ma = sum(sum(drawn_ma(world, e)) for e in controlled(world))
        return max(0, -sum(m.power_w for m in site_grid) + round(ev_ma * VOLT / 1000))
    surplus = 0
    for m in meters:
        if m.role not in (MeterRole.PRODUCTION, MeterRole.CONSUMPTION):
            continue
        if m.read_at_s is None or NOW - m.read_at_s > m.timeout_s:
            return 0
        surplus += m.power_w if m.role == MeterRole.PRODUCTION else -m.power_w
    return max(0, surplus)


def controlled(world: World) -> list[EvseInput]:
    """The wallboxes the planner controls (not disabled, not silent)."""
    return [e for e in world.site.evses if e.dev_id not in world.uncontrolled]


def wants(e: EvseInput) -> bool:
    """A controlled wallbox that wants current: car, authorised, allowed, a usable range."""
    return (e.connected and e.authorised and e.allowed and e.phases_mask & 7 != 0
            and e.max_current_ma >= max(e.min_current_ma, MIN_FLOOR_MA))


def min_ma(e: EvseInput) -> int:
    return max(e.min_current_ma, MIN_FLOOR_MA)


def max_ma(e: EvseInput) -> int:
    """The most `e` may get: its maximum; a surplus wallbox whose phases are not known yet
    only its minimum (docs "PV surplus": the surplus is predicted for one phase)."""
    if (e.surplus and not e.phases_known and not e.phase_switching
            and e.max_current_ma >= min_ma(e)):
        return min_ma(e)
    return e.max_current_ma


def surplus_phases(world: World, result: PlanResult, e: EvseInput) -> int:
    """The phases the surplus pool divides by for `e`: those of its setpoint, or one (the
    prediction) while its phases are not known and the planner did not choose them."""
    mask = setpoint_mask(world, result, e)
    if not e.phases_known and not e.phase_switching:
        return 1
    return mask.bit_count()


IDLE_AFTER_S = 60.0  # docs "PV surplus": offered current, no draw this long = idle
IDLE_BELOW_MA = 500  # ... and "no draw" is below this on every phase


def idle(world: World, e: EvseInput) -> bool:
    """`e` is a surplus wallbox that was offered current but has drawn nothing (below
    IDLE_BELOW_MA on every phase) for IDLE_AFTER_S: it does not use the surplus pool."""
    t = world.memory.evses[e.dev_id]
    since = t.surplus_idle_since_s
    return (e.surplus and t.last_current_ma > 0 and since is not None and since <= NOW
            and NOW - since >= IDLE_AFTER_S and max(drawn_ma(world, e)) < IDLE_BELOW_MA)


def held(result: PlanResult, e: EvseInput) -> bool:
    """`e` is held at its minimum through a surplus dip (outside the surplus pool)."""
    return result.setpoints[e.dev_id].reason.code == "surplus_hold"


def tier(e: EvseInput) -> tuple[int, int]:
    """Strict tiers, smaller first: surplus wallboxes, then by priority (highest first)."""
    return (0 if e.surplus else 1, -e.priority)


def setpoint_mask(world: World, result: PlanResult, e: EvseInput) -> int:
    """The building phases a setpoint loads: the box's L1 (rotated) when the planner switched
    it to one phase, else the phases its car draws on."""
    sp = result.setpoints[e.dev_id]
    if sp.one_phase:
        return rotate_mask(sp.phases_mask & 0b111, e.phase_rotation_deg)
    return world.evse_mask[e.dev_id]


@dataclass(frozen=True, slots=True)
class Row:
    """One limit the controlled wallboxes share: a node's phase, the EVSE cap's phase, or the
    surplus pool. `room` is what the controlled wallboxes may use together (mA; the pool:
    mA·V), `name` says which limit it is (for failure messages)."""

    name: str
    node: int | None  # the node (None: the surplus pool)
    phase: int | None  # building phase 0-2 (None: the pool)
    room: int
    evse_cap: bool = False  # the site's max_total_evse_current


def rows(world: World, budget_ma: int, surplus_w: int) -> list[Row]:
    """Every limit of the site with the room it leaves for the controlled wallboxes.

    Non-EVSE load is what the spec lets the planner assume (`World.assumed_non_evse`: the
    truth where meters are fresh, the fail-safe worst case where one is stale). The planner
    infers it at a grid meter from each wallbox's draw *range* at the time of the reading
    (`draw_bounds_ma`); the generated wallboxes carry no reading history, so that range is a
    single value there and the truth is exact. Sites with lagging readings would need the
    oracle to take the upper end of the range (the safe side) instead.
    """
    out: list[Row] = []
    for g in sorted(world.parent):
        limit = budget_ma if g == 0 else world.limit[g]
        if limit is None and g in world.stale_nodes:
            limit = UNLIMITED_LOAD  # a stale meter stops the wallboxes below it even here
        if limit is None:
            continue
        load = world.assumed_non_evse(g, budget_ma)
        where = "site" if g == 0 else f"group {g}"
        out += [Row(f"{where} L{p + 1}", g, p, limit - load[p]) for p in range(3)]
    cap = world.site.settings.max_total_evse_current_ma
    if cap > 0:
        booked = [0, 0, 0]  # the cap covers the uncontrolled wallboxes too
        for _node, load in world.uncontrolled.values():
            booked = [a + b for a, b in zip(booked, load, strict=True)]
        out += [Row(f"EVSE cap L{p + 1}", 0, p, cap - booked[p], evse_cap=True)
                for p in range(3)]
    if any(e.surplus and wants(e) for e in controlled(world)):
        out.append(Row("surplus pool", None, None, surplus_w * 1000))
    return out


def coefficient(world: World, result: PlanResult, row: Row, e: EvseInput) -> int:
    """How much of `row` one mA of `e`'s setpoint uses (0: `e` is not on it)."""
    mask = setpoint_mask(world, result, e)
    if row.node is None:
        if not e.surplus or idle(world, e):
            return 0  # an idle surplus wallbox stays booked on the hard limits only
        return surplus_phases(world, result, e) * VOLT
    assert row.phase is not None
    if not mask >> row.phase & 1:
        return 0
    if row.evse_cap or row.node in world.path(world.evse_group[e.dev_id]):
        return 1
    return 0


@dataclass
class Usage:
    """The plan laid over the rows: who is on each row and how much room is left there."""

    rows: list[Row]
    coeff: list[dict[str, int]]  # per row: dev_id → coefficient (only wallboxes on it)
    headroom: list[int]  # per row: room − what the setpoints use (and the pool reserves)
    held_use: list[int]  # per row: what wallboxes held through a surplus dip use there

    def rows_of(self, dev_id: str) -> list[int]:
        return [i for i, c in enumerate(self.coeff) if dev_id in c]


def usage(world: World, result: PlanResult, all_rows: list[Row],
          filt: Callable[[EvseInput], bool] | None = None) -> Usage:
    """Lay the setpoints of the controlled wallboxes (those `filt` accepts) over the rows."""
    evses = [e for e in controlled(world) if filt is None or filt(e)]
    coeff: list[dict[str, int]] = []
    headroom: list[int] = []
    held_use: list[int] = []
    for row in all_rows:
        on: dict[str, int] = {}
        used = held_here = 0
        for e in evses:
            c = coefficient(world, result, row, e)
            if not c:
                continue
            sp = result.setpoints[e.dev_id]
            on[e.dev_id] = c
            used += c * sp.current_ma
            if row.node is None and held(result, e):
                held_here += c * sp.current_ma  # held at its minimum: may overrun the pool
            elif row.node is None and sp.pause_reason == "surplus_start":
                used += c * min_ma(e)  # its minimum is reserved while it waits to start
        coeff.append(on)
        headroom.append(row.room - used)
        held_use.append(held_here)
    return Usage(all_rows, coeff, headroom, held_use)
