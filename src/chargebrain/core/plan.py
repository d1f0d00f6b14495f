"""One planning step: `plan(site, memory, now_s) -> PlanResult` (pure: no I/O, no clock).

The steps, in the order of spec §5:

1. Overdraft: a measured site load above the net limit is recorded and cuts the budget by its
   size for `overdraft_hold_s` (the penalty lives in `PlanMemory`).
2. Site budget per phase: max total × share % − reserve − penalty; the EVSE share capped by
   `max_total_evse_current_ma` when set.
3. EVSEs are split into *controlled* ones and *uncontrolled* ones whose load is booked:
   a disabled EVSE (it gets the `disable_policy` setpoint), an EVSE in COM error (its setpoint is
   held for `com_error_grace_s`, its last reading booked; after that its last power is booked).
4. Non-EVSE load per node from the meters (`core.budget.node_loads`), with every EVSE rotated
   into the building frame. An EVSE without fresh measurement draws what it was offered.
5. Demand per controlled EVSE, then the allocator (`core.allocator.allocate`), with the
   1p/3p decision for EVSEs that can switch phases (`_allocate_with_phases`).
6. Diagnostics for the API; observation mode computes them but returns `write=False`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from chargebrain.core.allocator import Tree, allocate, build_tree
from chargebrain.core.budget import (
    draw_bounds_ma,
    gross_limit_ma,
    meter_currents_ma,
    node_loads,
    overdraft_ma,
    site_budget_ma,
)
from chargebrain.core.model import (
    MIN_CURRENT_FLOOR_MA,
    SITE_GROUP,
    UNLIMITED,
    UNLIMITED_MA,
    Allocation,
    AllocParams,
    EvseDemand,
    EvseTimers,
    GroupSpec,
    Reason,
    Setpoint,
    Snapshot,
)
from chargebrain.core.site import (
    Diagnostics,
    DisablePolicy,
    EvseInput,
    MeterRole,
    NodeDiagnostics,
    PlanMemory,
    PlanResult,
    SiteInput,
)
from chargebrain.units import ZERO, Phases, add, mask_to_phases, rotate_phases, sub

_ROTATIONS = {0: 0, 120: 120, 240: 240}


class _EvseView(NamedTuple):
    """One EVSE in the building frame, with what it draws now and what is booked for it."""

    evse: EvseInput
    group_id: int
    mask: int  # building frame
    draw_ma: Phases  # what it draws now (measured, else offered while charging)
    controlled: bool
    booked_ma: Phases = ZERO  # uncontrolled only: the load we reserve for it


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Everything worked out before the allocator runs (steps 1-5 of the module docstring)."""

    snapshot: Snapshot
    views: list[_EvseView]
    tree: Tree
    budget_ma: Phases
    evse_cap_ma: Phases
    overdraft_ma: int
    penalty_ma: int
    until_s: float | None
    grid_w: int | None
    surplus_w: int
    evse_w: int  # what all EVSEs draw now
    over_ma: Phases  # measured site load above the gross limit, per phase (0 where none)
    site_low_draw_ma: dict[str, Phases]  # controlled EVSEs: least they drew at the grid reading
    non_evse_memory: dict[int, Phases]  # what grid-metered nodes were booked with (memory)
    idle_since: dict[str, float]  # surplus EVSEs offered current, drawing nothing: since when


def plan(site: SiteInput, memory: PlanMemory, now_s: float) -> PlanResult:
    """Plan one cycle: setpoints with reasons, the memory for the next cycle, diagnostics."""
    s = site.settings
    p = _prepare(site, memory, now_s)
    controlled = [v for v in p.views if v.controlled]
    if s.lb_enabled:
        alloc = _allocate_with_phases(p.snapshot, controlled, memory, now_s,
                                      s.phase_switch_delay_s, s.max_phase_switches)
        left = _overdraft_left_ma(p, controlled, alloc.setpoints)
        if left > p.penalty_ma:
            # Load above the limit that this step's own cuts do not remove: cut the budget
            # by what is left, for overdraft_hold_s, and plan again with it.
            p = _prepare(site, memory, now_s, new_penalty_ma=left)
            controlled = [v for v in p.views if v.controlled]
            alloc = _allocate_with_phases(p.snapshot, controlled, memory, now_s,
                                          s.phase_switch_delay_s, s.max_phase_switches)
        setpoints = dict(alloc.setpoints)
        timers = dict(alloc.timers)
    else:
        obs = Reason("observation", "observation mode: load management does not write")
        setpoints = {v.evse.dev_id: Setpoint(v.evse.dev_id, 0, v.evse.phases_mask, False, obs)
                     for v in controlled}
        timers = {}
    for v in p.views:
        if not v.controlled:
            sp, t = _uncontrolled(v, memory, now_s, s.disable_policy, s.com_error_grace_s)
            setpoints[v.evse.dev_id] = (
                sp if s.lb_enabled else sp._replace(reason=Reason(
                    "observation", "observation mode: load management does not write")))
            timers[v.evse.dev_id] = t

    for dev_id, since in p.idle_since.items():
        t = timers.get(dev_id)
        if t is not None and t.last_current_ma > 0:  # still offered: the idle time goes on
            timers[dev_id] = t._replace(surplus_idle_since_s=since)
    diagnostics = _diagnostics(site, p, setpoints, now_s)
    new_memory = PlanMemory(timers, p.penalty_ma, p.until_s, p.non_evse_memory)
    return PlanResult(setpoints, new_memory, diagnostics, write=s.lb_enabled)


def _overdraft_left_ma(p: _Prepared, controlled: list[_EvseView],
                       setpoints: Mapping[str, Setpoint]) -> int:
    """The part of a measured overdraft that this step's setpoints do not command away.

    On each building phase: load above the gross limit, minus what the controlled EVSEs surely
    drew at the grid reading (the low end of their draw range) beyond what they are now given.
    An overdraft that the new setpoints already remove (a house-load jump answered by cutting
    the cars) costs no penalty; one they cannot remove (load we do not control, a wallbox that
    ignores its setpoint) does. Crediting only the low end keeps the rule safe: a cut is
    counted only as far as the car is known to have drawn what is cut."""
    over_ma = p.over_ma
    if max(over_ma) <= 0:
        return 0
    cut = [0, 0, 0]
    for v in controlled:
        low = p.site_low_draw_ma.get(v.evse.dev_id)
        if low is None:
            continue
        given = _given_ma(v, setpoints[v.evse.dev_id])
        for i in range(3):
            if low[i] > given[i]:
                cut[i] += low[i] - given[i]
    return max(0, max(over_ma[i] - cut[i] for i in range(3)))


def _given_ma(v: _EvseView, sp: Setpoint) -> Phases:
    """A setpoint as per-phase current in the building frame."""
    mask = v.mask
    if sp.one_phase is not None:  # the planner chose the phases of a switchable box
        mask = _ROTATED[_ROTATIONS[v.evse.phase_rotation_deg]][sp.phases_mask & 0b111]
    return mask_to_phases(mask, max(0, sp.current_ma))


PHASE_SWITCH_MARGIN_MA = 1000  # 3p must fit at min + this per phase before switching back


def _allocate_with_phases(snap: Snapshot, controlled: list[_EvseView], memory: PlanMemory,
                          now_s: float, delay_s: float, max_switches: int = 0) -> Allocation:
    """Allocate, deciding 1p/3p for every controlled EVSE that can switch phases now.

    A switchable EVSE runs on three phases unless its 3-phase minimum cannot be admitted but a
    1-phase minimum (on the box's L1, rotated into the building frame) can: then it switches
    to one phase at once. It goes back to three phases only after its 3-phase minimum plus
    `PHASE_SWITCH_MARGIN_MA` per phase has fitted (a trial allocation admits it) continuously
    for `delay_s`. Its mode and that timer live in its `EvseTimers`; unplugging resets to 3p.

    The same rules serve PV surplus, because the surplus pool is one of the limits a trial
    admits against: a surplus EVSE goes down when its 3-phase minimum is not covered (after
    its stop delay, when it was running: the allocator holds it at the minimum first) but the
    1-phase one is (a trial that only waits for `surplus_start_delay` counts as covered), and
    up when 3 × (min + margin) × V of surplus has lasted `delay_s` (hysteresis in W and time).
    At most `max_switches` automatic switches per session (0 = no cap); `forced_phases` 1 or
    3 (manual override, `switch_phases` variable) replaces the automatic choice.
    """
    switchable: dict[str, _EvseView] = {}
    remembered_car: dict[str, bool] = {}
    for v in controlled:
        e = v.evse
        if e.phase_switching and e.phase_rotation_deg in _ROTATIONS:
            t = memory.evses.get(e.dev_id)
            # A car we put on one phase shows only L1 in its learned phases: still a 3p car.
            remembered = t is not None and t.three_phase_car and e.connected
            if (e.phases_mask & 0b111).bit_count() > 1 or remembered:
                switchable[e.dev_id] = v
                remembered_car[e.dev_id] = remembered
    if not switchable:
        return allocate(snap)
    one: dict[str, bool] = {}
    fits: dict[str, float | None] = {}
    switches: dict[str, int] = {}
    auto: set[str] = set()  # may switch automatically this step
    for dev_id, v in switchable.items():
        t = memory.evses.get(dev_id)
        keep = t is not None and t.one_phase and v.evse.connected
        switches[dev_id] = t.phase_switches if t is not None and v.evse.connected else 0
        forced = v.evse.forced_phases
        if forced in (1, 3):
            keep = forced == 1
        elif max_switches <= 0 or switches[dev_id] < max_switches:
            auto.add(dev_id)
        one[dev_id] = keep
        fits[dev_id] = t.three_phase_fits_since_s if keep and t is not None else None
    was_one = {k: (t.one_phase and switchable[k].evse.connected) if (t := memory.evses.get(k))
               else False for k in switchable}
    start = dict(one)

    def run(modes: dict[str, bool], margin: frozenset[str] = frozenset()) -> Allocation:
        demands = []
        for d in snap.evses:
            v = switchable.get(d.dev_id)
            if v is not None:
                rot = _ROTATIONS[v.evse.phase_rotation_deg]
                car = 0b001 if modes[d.dev_id] else v.evse.phases_mask & 0b111
                if car == 0b001 and not modes[d.dev_id]:
                    car = 0b111  # remembered 3p car (see above)
                d = d._replace(phases_mask=_ROTATED[rot][car], evse_phases_mask=car,
                               surplus_phases=0 if modes[d.dev_id] else d.surplus_phases)
            if d.dev_id in margin:
                low = d.min_ma + PHASE_SWITCH_MARGIN_MA
                d = d._replace(min_ma=low, max_ma=max(d.max_ma, low))
            demands.append(d)
        return allocate(Snapshot(snap.now_s, snap.groups, tuple(demands), snap.params,
                                 snap.timers))

    alloc = run(one)
    # Down at once: a 3p EVSE whose minimum is not admitted tries one phase.
    down = [k for k in auto if not one[k] and alloc.setpoints[k].paused
            and alloc.setpoints[k].pause_reason not in ("min_pause", "surplus_start")]
    if down:
        trial = run({**one, **dict.fromkeys(down, True)})
        for k in down:
            if _admits(trial.setpoints[k]):
                one[k], fits[k] = True, None
    # Up after the delay: a 1p EVSE whose 3p minimum (+ margin) fits in a trial.
    # The last switch a session's cap allows is never spent going up: a session left on one
    # phase can still charge from the least surplus (1.4 kW), one left on three phases cannot.
    up_candidates = [k for k in auto if one[k] and start[k]
                     and (max_switches <= 0 or switches[k] + 1 < max_switches)]
    if up_candidates:
        trial = run({**one, **dict.fromkeys(up_candidates, False)}, frozenset(up_candidates))
        # Three phases must fit besides the others: a switch up that would push an EVSE
        # admitted now into a pause or a surplus hold (it takes their share) does not count.
        others_keep = all(_admits(trial.setpoints[j]) for j, sp in alloc.setpoints.items()
                          if j not in up_candidates and _admits(sp))
        for k in up_candidates:
            if others_keep and _admits(trial.setpoints[k]):
                since = fits[k]
                fits[k] = since = now_s if since is None or since > now_s else since
                if now_s - since >= delay_s:
                    one[k], fits[k] = False, None
            else:
                fits[k] = None
    if one != start or down:
        alloc = run(one)
    setpoints, timers = dict(alloc.setpoints), dict(alloc.timers)
    for k in switchable:
        sp = setpoints[k]
        if one[k] != was_one[k] and switchable[k].evse.forced_phases not in (1, 3):
            switches[k] += 1
        if one[k]:
            since = fits[k]
            why = ("forced" if switchable[k].evse.forced_phases == 1
                   else "switch cap reached" if k not in auto
                   else "three phases fit, back in "
                   f"{max(0.0, delay_s - (now_s - since)):.0f} s" if since is not None
                   else "its three-phase minimum does not fit")
            sp = sp._replace(reason=sp.reason._replace(
                text=f"{sp.reason.text} [one_phase: {why}]"))
        setpoints[k] = sp._replace(one_phase=one[k])
        connected = switchable[k].evse.connected
        timers[k] = timers[k]._replace(one_phase=one[k], three_phase_fits_since_s=fits[k],
                                       three_phase_car=connected
                                       and (one[k] or remembered_car[k]),
                                       phase_switches=switches[k] if connected else 0)
    return Allocation(setpoints, timers)


def _admits(sp: Setpoint) -> bool:
    """A trial admitted the EVSE (or only the surplus start delay keeps it waiting); being
    held at the minimum through a surplus dip is not being admitted."""
    if sp.current_ma > 0:
        return sp.reason.code != "surplus_hold"
    return sp.pause_reason == "surplus_start"


def snapshot(site: SiteInput, memory: PlanMemory, now_s: float) -> Snapshot:
    """The allocator's input that `plan` would build (for `explain`, benchmarks, tests)."""
    return _prepare(site, memory, now_s).snapshot


def _prepare(site: SiteInput, memory: PlanMemory, now_s: float,
             new_penalty_ma: int | None = None) -> _Prepared:
    s = site.settings
    volt = s.system_voltage_v if s.system_voltage_v > 0 else 230  # 0 V is no setting
    group_specs = [GroupSpec(g.group_id, g.parent_id, g.name) for g in site.groups
                   if g.group_id != SITE_GROUP]
    tree = build_tree(group_specs)
    children = tree.children()
    group_limit = {g.group_id: g.max_current_ma for g in site.groups}

    # 1. overdraft, measured at a fresh site grid meter
    site_grid = [m for m in site.meters if m.role == MeterRole.GRID
                 and (m.group_id == SITE_GROUP or m.group_id not in tree.nodes)]
    grid_fresh = bool(site_grid) and not any(m.is_stale(now_s) for m in site_grid)
    grid_ma: Phases | None = None
    grid_w: int | None = None
    if grid_fresh:
        grid_ma = ZERO
        grid_w = 0
        for m in site_grid:
            grid_ma = add(grid_ma, meter_currents_ma(m, volt))
            grid_w += m.power_w
    over_now_ma = overdraft_ma(s, grid_ma)
    gross = gross_limit_ma(s)
    over_ma: Phases = ZERO if grid_ma is None else (
        max(0, grid_ma[0] - gross), max(0, grid_ma[1] - gross), max(0, grid_ma[2] - gross))
    penalty_ma = memory.overdraft_penalty_ma
    until_s = memory.overdraft_until_s
    if until_s is None or now_s >= until_s:
        penalty_ma, until_s = 0, None
    if new_penalty_ma is not None and new_penalty_ma > penalty_ma:
        penalty_ma, until_s = new_penalty_ma, now_s + s.overdraft_hold_s

    # 2. budget
    budget_ma = site_budget_ma(s, penalty_ma)

    # 3. EVSEs in the building frame, controlled or booked
    views = [_view(e, memory, now_s, tree.nodes, s.disable_policy, s.com_error_grace_s, volt)
             for e in sorted(site.evses, key=lambda e: e.dev_id)]
    booked: dict[int, Phases] = {}
    drawn: dict[int, Phases] = {}
    for v in views:
        if v.booked_ma != ZERO:
            booked[v.group_id] = add(booked.get(v.group_id, ZERO), v.booked_ma)
        if v.draw_ma != ZERO:
            drawn[v.group_id] = add(drawn.get(v.group_id, ZERO), v.draw_ma)
    booked_below = _subtree_sums(tree, booked)
    draw_bounds, site_low = _draw_bounds_below(site, views, tree, now_s)

    # The EVSE-only cap covers every wallbox, so what uncontrolled ones may draw comes off it.
    evse_cap_ma = (sub((s.max_total_evse_current_ma,) * 3, booked_below.get(SITE_GROUP, ZERO))
                   if s.max_total_evse_current_ma > 0 else UNLIMITED)

    # 4. non-EVSE load per node
    node_limit: dict[int, Phases] = {SITE_GROUP: budget_ma}
    for gid in tree.nodes:
        limit = group_limit.get(gid)
        if gid != SITE_GROUP:
            node_limit[gid] = (limit,) * 3 if limit is not None else UNLIMITED
    loads = node_loads(children=children, node_limit_ma=node_limit, meters=site.meters,
                       booked_ma=booked, evse_draw_below_ma=draw_bounds,
                       booked_below_ma=booked_below, now_s=now_s, voltage_v=volt,
                       previous_ma=memory.non_evse_ma)
    remembered = {g: load.measured_ma for g, load in loads.items()
                  if load.measured_ma is not None}

    # 5. the allocator's snapshot
    specs = tuple(
        GroupSpec(gid, tree.parent[gid], tree.nodes[gid].name, node_limit[gid],
                  evse_cap_ma if gid == SITE_GROUP else UNLIMITED, loads[gid].non_evse_ma,
                  loads[gid].stale, penalty_ma if gid == SITE_GROUP else 0, loads[gid].own_stale)
        for gid in tree.nodes
    )
    ev_total = ZERO
    for vec in drawn.values():
        ev_total = add(ev_total, vec)
    evse_w = _power_w(ev_total, volt)
    controlled_draw = ZERO
    for v in views:
        if v.controlled and v.draw_ma != ZERO:
            controlled_draw = add(controlled_draw, v.draw_ma)
    surplus_w = site.surplus_w if site.surplus_w is not None else _surplus_w(
        site, _power_w(controlled_draw, volt), grid_w, now_s)
    params = AllocParams(s.min_pause_time_s, s.min_run_time_s, s.max_imbalance_ma,
                         s.imbalance_add, s.fcfs, float(max(0, surplus_w)), volt,
                         s.surplus_start_delay_s, s.surplus_stop_delay_s, s.surplus_step_ma)
    idle_since = _surplus_idle_since(views, memory, now_s)
    snap = Snapshot(now_s, specs, tuple(
        _demand(v, v.evse.dev_id in idle_since
                and now_s - idle_since[v.evse.dev_id] >= SURPLUS_IDLE_S)
        for v in views if v.controlled), params, memory.evses)
    return _Prepared(snap, views, tree, budget_ma, evse_cap_ma, over_now_ma, penalty_ma, until_s,
                     grid_w, surplus_w, evse_w, over_ma, site_low, remembered, idle_since)


SURPLUS_IDLE_S = 60.0  # a surplus EVSE offered current that draws nothing this long is idle
SURPLUS_IDLE_MA = 500  # below this on every phase it draws nothing


def _surplus_idle_since(views: list[_EvseView], memory: PlanMemory,
                        now_s: float) -> dict[str, float]:
    """Controlled surplus EVSEs that were offered current last cycle but draw less than
    `SURPLUS_IDLE_MA` on every phase (a full car, a car that paused itself): since when."""
    out: dict[str, float] = {}
    for v in views:
        if not (v.controlled and v.evse.surplus):
            continue
        t = memory.evses.get(v.evse.dev_id)
        if t is None or t.last_current_ma <= 0 or max(v.draw_ma) >= SURPLUS_IDLE_MA:
            continue
        since = t.surplus_idle_since_s
        out[v.evse.dev_id] = now_s if since is None or since > now_s else since
    return out


def _draw_bounds_below(site: SiteInput, views: list[_EvseView], tree: Tree, now_s: float
                       ) -> tuple[dict[int, tuple[Phases, Phases]], dict[str, Phases]]:
    """For every node with a fresh grid meter: the (lowest, highest) draw of all EVSEs below
    it at the time of its grid reading (building frame; see core.budget). Also the lowest
    draw of each controlled EVSE at the site's grid reading (for the overdraft rule)."""
    read_at: dict[int, float] = {}
    for m in site.meters:
        if m.role != MeterRole.GRID or m.is_stale(now_s) or m.read_at_s is None:
            continue
        g = m.group_id if m.group_id in tree.nodes else SITE_GROUP
        read_at[g] = min(read_at.get(g, m.read_at_s), m.read_at_s)
    out: dict[int, tuple[Phases, Phases]] = {}
    site_low: dict[str, Phases] = {}
    if not read_at:
        return out, site_low
    settle_s = site.settings.settle_s
    response_s = site.settings.response_s
    for v in views:
        e = v.evse
        for node in tree.path(v.group_id):
            at_s = read_at.get(node)
            if at_s is None:
                continue
            if v.controlled and e.readings and e.measured_ma is not None:
                low, high = draw_bounds_ma(e.readings, e.commands, e.phases_mask, at_s,
                                           settle_s, response_s, site.settings.silent_s)
                rotation = _ROTATIONS.get(e.phase_rotation_deg)
                if rotation is None:  # unknown wiring: any building phase may carry it
                    low = (min(low),) * 3 if min(low) > 0 else ZERO
                    high = (max(high),) * 3
                elif rotation:
                    low, high = rotate_phases(low, rotation), rotate_phases(high, rotation)
            else:
                low = high = v.draw_ma
            if node == SITE_GROUP and v.controlled:
                site_low[e.dev_id] = low
            lo_sum, hi_sum = out.get(node, (ZERO, ZERO))
            out[node] = (add(lo_sum, low), add(hi_sum, high))
    return out, site_low


def _subtree_sums(tree: Tree, per_group: dict[int, Phases]) -> dict[int, Phases]:
    """For every node, the sum of `per_group` over the node and all nodes below it."""
    out: dict[int, Phases] = {}
    for g, vec in per_group.items():
        for node in tree.path(g):
            out[node] = add(out.get(node, ZERO), vec)
    return out


def _view(e: EvseInput, memory: PlanMemory, now_s: float, nodes: dict, policy: int,
          grace_s: float, volt: int) -> _EvseView:
    group = e.group_id if e.group_id in nodes else SITE_GROUP
    rotation = _ROTATIONS.get(e.phase_rotation_deg)
    emask = e.phases_mask & 0b111
    # Unknown wiring: the car may load any building phase, so book it on all three.
    mask = (0b111 if emask else 0) if rotation is None else _ROTATED[rotation][emask]
    measured = e.measured_ma
    if measured is not None:
        if rotation == 0:
            draw = measured
        elif rotation is not None:
            draw = rotate_phases(measured, rotation)
        else:
            draw = (max(measured),) * 3
    elif e.charging:
        last = memory.evses.get(e.dev_id)
        draw = mask_to_phases(mask, last.last_current_ma if last is not None else 0)
    else:
        draw = ZERO
    if e.com_error_since_s is not None:
        if now_s - e.com_error_since_s < grace_s:
            return _EvseView(e, group, mask, draw, False, draw)
        per_phase = max(0, round(e.last_power_w * 1000 / (volt * max(1, mask.bit_count()))))
        return _EvseView(e, group, mask, draw, False, mask_to_phases(mask, per_phase))
    if not e.enabled:
        held = 0
        if e.connected and policy == DisablePolicy.MIN_CURRENT:
            held = max(e.min_current_ma, MIN_CURRENT_FLOOR_MA)
        elif e.connected and policy == DisablePolicy.UNLIMITED:
            held = e.max_current_ma
        reserved = mask_to_phases(mask, held)
        return _EvseView(e, group, mask, draw, False, _pmax(draw, reserved))
    return _EvseView(e, group, mask, draw, True)


def _rotate_mask(mask: int, rotation: int) -> int:
    shift = rotation // 120
    return ((mask << shift) | (mask >> (3 - shift))) & 0b111


_ROTATED = {rot: tuple(_rotate_mask(m, rot) for m in range(8)) for rot in (0, 120, 240)}


def _pmax(a: Phases, b: Phases) -> Phases:
    return (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]))


_NOT_CONNECTED = Reason("not_connected", "no car connected")
_NOT_AUTHORISED = Reason("not_authorised", "waiting for authorisation (RFID/PIN/user)")


def _demand(v: _EvseView, idle: bool = False) -> EvseDemand:
    e = v.evse
    reason: Reason | None = None
    if not e.connected:
        reason = _NOT_CONNECTED
    elif not e.authorised:
        reason = _NOT_AUTHORISED
    elif not e.allowed:
        reason = Reason("not_allowed", e.not_allowed_reason or "charging not allowed now")
    min_ma = e.min_current_ma if e.min_current_ma > MIN_CURRENT_FLOOR_MA else MIN_CURRENT_FLOOR_MA
    max_ma, max_reason, predicted = e.max_current_ma, e.max_reason, 0
    if e.surplus and not e.phases_known and not e.phase_switching:
        # Phases not known yet: the surplus is predicted for one phase (a start from 1.4 kW),
        # and the car gets no more than its minimum until its phases show (the booking of the
        # limits stays on all three phases). A box that can switch needs no prediction: the
        # planner chooses its phases.
        predicted = 1
        if max_ma > min_ma:
            max_ma, max_reason = min_ma, "phases not known yet"
    # positional: this runs for every EVSE every cycle
    return EvseDemand(e.dev_id, v.group_id, e.priority, min_ma, max_ma, v.mask,
                      reason is None, reason, e.surplus, e.arrival_order, e.session_energy_wh,
                      max_reason, e.phases_mask & 0b111, e.surplus_stop_delay_s, predicted,
                      idle)


def _uncontrolled(v: _EvseView, memory: PlanMemory, now_s: float, policy: int,
                  grace_s: float) -> tuple[Setpoint, EvseTimers]:
    e = v.evse
    mask = e.phases_mask & 0b111
    if e.com_error_since_s is not None:
        last = memory.evses.get(e.dev_id) or EvseTimers()
        silent = now_s - e.com_error_since_s
        if silent < grace_s:
            reason = Reason("com_error", f"no answer for {silent:.0f} s: holding the last "
                            "setpoint, its last reading counts as load")
            return Setpoint(e.dev_id, last.last_current_ma, mask, False, reason), last
        reason = Reason("com_error", f"no answer for {silent:.0f} s: its last power "
                        f"{e.last_power_w} W is booked as load")
        return Setpoint(e.dev_id, 0, mask, False, reason), EvseTimers()
    if policy == DisablePolicy.MIN_CURRENT:
        cur = max(e.min_current_ma, MIN_CURRENT_FLOOR_MA)
        reason = Reason("disabled", "device disabled: left at its minimum current")
        return Setpoint(e.dev_id, cur, mask, False, reason), EvseTimers(last_current_ma=cur)
    if policy == DisablePolicy.UNLIMITED:
        reason = Reason("disabled", "device disabled: all limits removed")
        return (Setpoint(e.dev_id, e.max_current_ma, mask, False, reason, unlimited=True),
                EvseTimers(last_current_ma=e.max_current_ma))
    reason = Reason("disabled", "device disabled: charging off")
    return Setpoint(e.dev_id, 0, mask, False, reason), EvseTimers()


def _power_w(currents: Phases, volt: int) -> int:
    return round(sum(currents) * volt / 1000)


def _surplus_w(site: SiteInput, ev_w: int, grid_w: int | None, now_s: float) -> int:
    """PV surplus: what would be exported if no controlled car charged (0 when a needed meter
    is stale). `ev_w` is what the controlled EVSEs draw now (a disabled or silent wallbox's
    draw is not ours to give away).

    With a site grid meter: −grid + EV power + storage charging − home-storage discharge.
    Without: production − consumption (+ discharge of "storage all" batteries). With
    `surplus_use_battery` a home battery's (role 5) discharge counts like a role-6 one.
    """
    meters = site.meters
    use_battery = site.settings.surplus_use_battery
    if grid_w is not None:
        surplus = -grid_w + ev_w
        for m in meters:
            if m.is_stale(now_s):
                if m.role in (MeterRole.STORAGE_HOME, MeterRole.STORAGE_ALL):
                    return 0
                continue
            if m.role in (MeterRole.STORAGE_HOME, MeterRole.STORAGE_ALL) and m.power_w > 0:
                surplus += m.power_w  # the battery yields to the cars
            elif m.role == MeterRole.STORAGE_HOME and m.power_w < 0 and not use_battery:
                surplus += m.power_w  # home battery discharge is not for cars
        return surplus
    if any(m.role == MeterRole.GRID and (m.group_id == SITE_GROUP) for m in meters):
        return 0  # the site grid meter is stale
    surplus = 0
    for m in meters:
        feeds_cars = m.role == MeterRole.STORAGE_ALL or (
            use_battery and m.role == MeterRole.STORAGE_HOME)
        relevant = m.role in (MeterRole.PRODUCTION, MeterRole.CONSUMPTION) or feeds_cars
        if relevant and m.is_stale(now_s):
            return 0
        if m.role == MeterRole.PRODUCTION:
            surplus += m.power_w
        elif m.role == MeterRole.CONSUMPTION or (feeds_cars and m.power_w < 0):
            surplus -= m.power_w  # a discharging battery that may feed cars adds to it
    return surplus


def _diagnostics(site: SiteInput, p: _Prepared, setpoints: dict[str, Setpoint],
                 now_s: float) -> Diagnostics:
    views, specs, tree = p.views, p.snapshot.groups, p.tree
    budget_ma, evse_cap_ma = p.budget_ma, p.evse_cap_ma
    volt = p.snapshot.params.system_voltage_v
    grid_w, surplus_w = p.grid_w, p.surplus_w
    s = site.settings
    per_group: dict[int, list[int]] = {}
    evse_phases: dict[str, tuple[int, int]] = {}
    for v in views:
        if not v.controlled:
            continue
        sp = setpoints[v.evse.dev_id]
        mask = v.mask
        if sp.one_phase is not None:  # the planner chose the phases of a switchable box
            mask = _ROTATED[_ROTATIONS[v.evse.phase_rotation_deg]][sp.phases_mask & 0b111]
        evse_phases[v.evse.dev_id] = (v.group_id, mask)
        cur = sp.current_ma
        if cur > 0:
            acc = per_group.get(v.group_id)
            if acc is None:
                acc = per_group[v.group_id] = [0, 0, 0]
            if mask & 1:
                acc[0] += cur
            if mask & 2:
                acc[1] += cur
            if mask & 4:
                acc[2] += cur
    below = _subtree_sums(tree, {g: (a[0], a[1], a[2]) for g, a in per_group.items()})
    allocated = {g.group_id: below.get(g.group_id, ZERO) for g in specs}
    site_evse_load = allocated[SITE_GROUP]
    nodes: dict[int, NodeDiagnostics] = {}
    for g in specs:
        room = sub(sub(g.limit_ma, g.non_evse_load_ma), allocated[g.group_id])
        is_site = g.group_id == SITE_GROUP
        if is_site and max(evse_cap_ma) < UNLIMITED_MA:
            room = tuple(min(r, c - a) for r, c, a in
                         zip(room, evse_cap_ma, allocated[g.group_id], strict=True))  # type: ignore[assignment]
        nodes[g.group_id] = NodeDiagnostics(
            g.group_id, g.parent_id, g.limit_ma, g.non_evse_load_ma, allocated[g.group_id],
            room, g.stale, evse_cap_ma if is_site and max(evse_cap_ma) < UNLIMITED_MA else None)
    site_spec = next(g for g in specs if g.group_id == SITE_GROUP)
    non_evse = site_spec.non_evse_load_ma
    evse_room = tuple(max(0, min(b - n, c)) for b, n, c in
                      zip(budget_ma, non_evse, evse_cap_ma, strict=True))
    fresh = [m for m in site.meters if not m.is_stale(now_s)]
    production_w = sum(m.power_w for m in fresh if m.role == MeterRole.PRODUCTION)
    consumers = [m for m in fresh if m.role == MeterRole.CONSUMPTION]
    evse_w = p.evse_w
    storage_w = sum(m.power_w for m in fresh
                    if m.role in (MeterRole.STORAGE_HOME, MeterRole.STORAGE_ALL))
    if consumers:
        consumption_w = sum(m.power_w for m in consumers)
    elif grid_w is not None:
        consumption_w = grid_w + production_w - evse_w - storage_w
    else:
        consumption_w = 0
    error_w = sum(v.evse.last_power_w for v in views
                  if v.evse.com_error_since_s is not None
                  and now_s - v.evse.com_error_since_s >= s.com_error_grace_s)
    judged = add(site_evse_load, non_evse) if s.imbalance_add else site_evse_load
    return Diagnostics(
        site_budget_ma=budget_ma,
        evse_budget_ma=evse_room,  # type: ignore[arg-type]
        non_evse_ma=non_evse,
        overdraft_ma=p.overdraft_ma,
        overdraft_penalty_ma=p.penalty_ma,
        cons_evse_power_w=evse_w,
        avail_evse_power_w=round(sum(evse_room) * volt / 1000),
        grid_power_w=grid_w,
        consumption_power_w=consumption_w,
        production_power_w=production_w,
        surplus_w=surplus_w,
        error_power_w=error_w,
        imbalance_ma=max(judged) - min(judged),
        nodes=nodes,
        evse_phases=evse_phases,
    )
