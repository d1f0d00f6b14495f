"""The allocator: a pure function from a `Snapshot` to setpoints with reasons.

How current is divided (docs/load-management.md explains the why):

1. Every node of the limit tree gives one *row* per building phase: the room left there for
   EVSEs, `min(limit − non-EVSE load, EVSE-only limit)`. An EVSE uses the rows of every node on
   its path to the site, on each building phase it draws on. Surplus EVSEs additionally share a
   power *pool* (the PV surplus).
2. EVSEs are processed in strict tiers: surplus EVSEs before normal ones, then by priority,
   highest first. Inside a tier the order is: running EVSEs still within their minimum run
   time, then waiting EVSEs (longest waiting first), then running EVSEs past their minimum run
   time (the longest running last); with `fcfs` the plug-in order replaces the fairness keys.
3. Admission: in that order, an EVSE is admitted at its minimum current only if the minimum
   fits on every one of its rows; otherwise it is paused. EVSEs inside their minimum pause are
   not considered at all.
4. Water-filling: the tier's admitted EVSEs are raised together (max-min fair per phase) until
   each reaches its maximum or a row it uses is full. What the tier leaves passes on.
5. Imbalance: if the site's phases differ by more than `max_imbalance_ma`, the EVSEs that load
   the highest phase but not the lowest are reduced, lowest tier first, and paused if reducing
   to their minimum is not enough. The cuts become caps (or pauses) and steps 2-4 run again, so
   the room they free is shared out under the same rules, until a round needs no cut.

All arithmetic on limits is integer mA (the pool is integer mA·V); the water level is a float,
floored to whole mA at the end, which can only lower a current.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from chargebrain.core.model import (
    MIN_CURRENT_FLOOR_MA,
    SITE_GROUP,
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
from chargebrain.units import Phases

_PHASE_NAMES = ("L1", "L2", "L3")
_INF = float("inf")
_NO_TIMERS = EvseTimers()


# --------------------------------------------------------------------------- the limit tree


@dataclass(frozen=True, slots=True)
class Tree:
    """The validated group tree: parent of every node and each node's path to the site."""

    nodes: dict[int, GroupSpec]
    parent: dict[int, int | None]
    paths: dict[int, tuple[int, ...]]  # node → (node, parent, …, site)

    def path(self, group_id: int) -> tuple[int, ...]:
        """The path from `group_id` to the site; an unknown group hangs off the site."""
        return self.paths.get(group_id, self.paths[SITE_GROUP])

    def children(self) -> dict[int, list[int]]:
        """Direct children of every node, each list sorted."""
        out: dict[int, list[int]] = {g: [] for g in self.nodes}
        for g, p in self.parent.items():
            if p is not None:
                out[p].append(g)
        for kids in out.values():
            kids.sort()
        return out


def build_tree(groups: Iterable[GroupSpec]) -> Tree:
    """Index the groups; unknown parents and cycles are re-hung under the site (fail-safe).

    The site node is added (unlimited) when missing, so there is always a root.
    """
    nodes = {g.group_id: g for g in sorted(groups, key=lambda g: g.group_id)}
    if SITE_GROUP not in nodes:
        nodes[SITE_GROUP] = GroupSpec(SITE_GROUP, None)
    parent: dict[int, int | None] = {}
    for gid, g in nodes.items():
        if gid == SITE_GROUP:
            parent[gid] = None
        else:
            p = g.parent_id if g.parent_id in nodes and g.parent_id != gid else SITE_GROUP
            parent[gid] = p
    paths: dict[int, tuple[int, ...]] = {SITE_GROUP: (SITE_GROUP,)}
    for gid in nodes:
        chain: list[int] = []
        seen: set[int] = set()
        cur: int | None = gid
        while cur is not None and cur not in paths and cur not in seen:
            seen.add(cur)
            chain.append(cur)
            cur = parent[cur]
        if cur is None or cur in seen:  # a cycle: cut it at the node we started from
            parent[chain[-1]] = SITE_GROUP
            cur = SITE_GROUP
        tail = paths[cur]
        for node in reversed(chain):
            tail = (node, *tail)
            paths[node] = tail
    return Tree(nodes, parent, paths)


# --------------------------------------------------------------------------- rows


@dataclass(slots=True)
class _Rows:
    """Per-row slack (integer), and what each row stands for (for reasons, built on demand)."""

    slack: list[int]
    initial: list[int]
    node: list[GroupSpec | None]  # None: the surplus pool
    phase: list[int]  # 0-2 (the pool: 0)
    evse_cap_binds: list[bool]
    depth: list[int]  # distance of the row's node from the site (the pool: -1)
    index: dict[tuple[int, int], int]  # (group_id, phase index 0-2) → row
    pool: int | None  # the surplus pool row, if any
    pool_step_ma: int = 1  # surplus EVSEs the pool binds are rounded down to this step
    reasons: dict[int, Reason] = field(default_factory=dict)
    max_reasons: dict[tuple[int, str], Reason] = field(default_factory=dict)

    def reason(self, r: int) -> Reason:
        """The (shared) reason an EVSE bound by row `r` is given."""
        out = self.reasons.get(r)
        if out is None:
            node = self.node[r]
            if node is None:
                out = Reason("surplus_limit", "PV surplus used up")
            else:
                code, text = _row_label(node, self.phase[r], self.evse_cap_binds[r])
                out = Reason(code, text, node.group_id, self.phase[r] + 1)
            self.reasons[r] = out
        return out


def _node_rows(tree: Tree, surplus_mva: int | None) -> _Rows:
    rows = _Rows([], [], [], [], [], [], {}, None)
    for gid, node in tree.nodes.items():
        bounded = (
            node.own_meter_stale
            or max(node.limit_ma) < UNLIMITED_MA
            or max(node.evse_limit_ma) < UNLIMITED_MA
        )
        if not bounded:
            # An unlimited node never binds (even with a child's unknown load in it: there is
            # nothing to protect here); skipping it also keeps big sites fast.
            continue
        depth = len(tree.path(gid)) - 1
        for p in range(3):
            room = node.limit_ma[p] - node.non_evse_load_ma[p]
            cap = node.evse_limit_ma[p]
            slack = room if room <= cap else cap
            rows.index[(gid, p)] = len(rows.slack)
            rows.slack.append(slack)
            rows.initial.append(slack)
            rows.node.append(node)
            rows.phase.append(p)
            rows.evse_cap_binds.append(cap < room)
            rows.depth.append(depth)
    if surplus_mva is not None:
        rows.pool = len(rows.slack)
        rows.slack.append(surplus_mva)
        rows.initial.append(surplus_mva)
        rows.node.append(None)
        rows.phase.append(0)
        rows.evse_cap_binds.append(False)
        rows.depth.append(-1)
    return rows


def _row_label(node: GroupSpec, p: int, evse_cap_binds: bool) -> tuple[str, str]:
    ph = _PHASE_NAMES[p]
    if node.stale:
        where = "site" if node.group_id == SITE_GROUP else f"group {node.group_id}"
        return "stale_meter", f"meter of {where} stale: worst case assumed on {ph}"
    if node.group_id != SITE_GROUP:
        return "group_limit", f"group {node.group_id} limit on {ph}"
    if evse_cap_binds:
        return "evse_limit", f"max total EVSE current on {ph}"
    if node.penalty_ma > 0:
        return "overdraft", f"site limit on {ph}, cut by {node.penalty_ma} mA after an overdraft"
    return "site_limit", f"site limit on {ph}"


# --------------------------------------------------------------------------- entry point


@dataclass(slots=True)
class _Ev:
    """Working record of one wanting EVSE."""

    d: EvseDemand
    rows: tuple[tuple[int, int], ...]  # (row, coefficient)
    min_ma: int
    max_ma: int
    tier: tuple[int, int]
    order_key: tuple
    was_running: bool
    in_min_run: bool
    timers: EvseTimers
    cap_reason: Reason | None = None  # set when an imbalance cut lowered max_ma
    current: int = 0
    reason: Reason | None = None
    pause_reason: str = ""
    # PV surplus hysteresis (surplus EVSEs only; see _admit_surplus)
    stop_delay_s: float = 0.0
    cover_since_s: float | None = None
    low_since_s: float | None = None
    confirmed: bool = False
    held: bool = False  # kept at its minimum through a surplus dip (not covered by the pool)
    surplus_stop: bool = False  # stopped because the surplus stayed below its minimum
    idle: bool = False  # offered its minimum, draws nothing: outside the pool (surplus_idle)


def allocate(snap: Snapshot) -> Allocation:
    """Divide the available current among the snapshot's EVSEs (pure, deterministic).

    The result does not depend on the order of `snap.evses` or `snap.groups`.
    """
    tree = build_tree(snap.groups)
    params = snap.params
    now = snap.now_s
    demands = sorted(snap.evses, key=lambda d: d.dev_id)
    volt = max(params.system_voltage_v, 1)
    any_surplus = any(d.surplus and d.wants_charge for d in demands)
    pool_mva = max(0, round(params.surplus_w * 1000)) if any_surplus else None
    rows = _node_rows(tree, pool_mva)
    rows.pool_step_ma = max(1, params.surplus_step_ma)

    setpoints: dict[str, Setpoint] = {}
    timers: dict[str, EvseTimers] = {}
    wanting: list[_Ev] = []
    row_cache: dict[tuple[int, int, bool], tuple[tuple[int, int], ...]] = {}
    phase_rows: dict[int, tuple[tuple[tuple[int, int], ...], ...]] = {}
    get_timers = snap.timers.get
    for d in demands:
        t = get_timers(d.dev_id) or _NO_TIMERS
        if ((t.paused_since_s or 0.0) > now or (t.running_since_s or 0.0) > now
                or (t.last_cut_s or 0.0) > now):
            t = _clamp_timers(t, now)  # a clock that jumped back must not stretch a pause
        min_ma = max(d.min_ma, MIN_CURRENT_FLOOR_MA)
        if not d.wants_charge or d.phases_mask & 0b111 == 0 or d.max_ma < min_ma:
            reason = d.not_charging_reason or _no_charge_reason(d, min_ma)
            setpoints[d.dev_id] = _setpoint(d, 0, False, reason)
            timers[d.dev_id] = _surplus_rule_stop(d, t, now, params)
            continue
        if (t.pause_held and t.paused_since_s is not None
                and now - t.paused_since_s < params.min_pause_time_s):
            left = params.min_pause_time_s - (now - t.paused_since_s)
            reason = Reason("min_pause", f"minimum pause: {left:.0f} s left")
            setpoints[d.dev_id] = _setpoint(d, 0, True, reason, "min_pause")
            timers[d.dev_id] = EvseTimers(t.paused_since_s, None, 0, pause_held=True,
                                          last_cut_s=t.last_cut_s)
            continue
        mask = d.phases_mask & 0b111
        key = (d.group_id, mask, d.surplus, d.surplus_phases)
        ev_rows = row_cache.get(key)
        if ev_rows is None:
            per_phase = phase_rows.get(d.group_id)
            if per_phase is None:
                path = tree.path(d.group_id)
                per_phase = phase_rows[d.group_id] = tuple(
                    tuple((rows.index[(g, p)], 1) for g in path if (g, p) in rows.index)
                    for p in range(3))
            ev_rows = ((per_phase[0] if mask & 1 else ()) + (per_phase[1] if mask & 2 else ())
                       + (per_phase[2] if mask & 4 else ()))
            if d.surplus and rows.pool is not None:
                ev_rows += ((rows.pool, (d.surplus_phases or mask.bit_count()) * volt),)
            row_cache[key] = ev_rows
        running = t.last_current_ma > 0 and t.running_since_s is not None
        in_min_run = (running and t.running_since_s is not None
                      and now - t.running_since_s < params.min_run_time_s)
        ev = _Ev(d, ev_rows, min_ma, d.max_ma, (0 if d.surplus else 1, -d.priority),
                 _order_key(d, t, running, in_min_run, now, params.fcfs), running, in_min_run,
                 t)
        if d.surplus:
            ev.stop_delay_s = (d.surplus_stop_delay_s if d.surplus_stop_delay_s > 0
                               else params.surplus_stop_delay_s)
        wanting.append(ev)

    # Imbalance cuts are found after a round and then imposed as caps (or pauses) on the next
    # round, so the room they free is shared out again under the same strict rules. Caps only
    # fall and pauses only grow, so this ends; a round without cuts is the answer.
    caps: dict[str, tuple[int, Reason]] = {}
    banned: dict[str, Reason] = {}
    base = tree.nodes[SITE_GROUP].non_evse_load_ma if params.imbalance_add else (0, 0, 0)
    initial_slack = list(rows.slack)
    for round_no in range(2 * len(wanting) + 2):
        if round_no:
            rows.slack = list(initial_slack)
            for ev in wanting:
                cap = caps.get(ev.d.dev_id)
                ev.current, ev.reason, ev.pause_reason = 0, None, ""
                ev.max_ma = min(ev.d.max_ma, cap[0]) if cap else ev.d.max_ma
                ev.cap_reason = cap[1] if cap else None
                if ev.d.dev_id in banned:
                    ev.reason, ev.pause_reason = banned[ev.d.dev_id], "imbalance"
        admitted_all = _run_tiers([ev for ev in wanting if ev.d.dev_id not in banned], rows,
                                  now, params)
        if params.max_imbalance_ma <= 0:
            break
        before = [ev.current for ev in admitted_all]
        _enforce_imbalance(admitted_all, base, params.max_imbalance_ma)
        changed = [ev for ev, b in zip(admitted_all, before, strict=True) if ev.current != b]
        if not changed:
            break
        for ev in changed:
            assert ev.reason is not None
            if ev.current == 0:
                banned[ev.d.dev_id] = ev.reason
            else:
                caps[ev.d.dev_id] = (ev.current, ev.reason)

    for ev in wanting:
        d, t = ev.d, ev.timers
        if ev.held and ev.current > 0:
            left = max(ev.stop_delay_s - (now - (ev.low_since_s or now)), 0.0)
            ev.reason = Reason("surplus_hold", "PV surplus below the minimum: held at "
                               f"{ev.current} mA, stops in {left:.0f} s unless it returns")
        elif ev.idle and ev.current > 0:
            ev.reason = Reason("surplus_idle", f"offered {ev.current} mA but not drawing: "
                               "does not use the PV surplus (booked on the limits)")
        if ev.current > 0:
            since = t.running_since_s if ev.was_running else now
            timers[d.dev_id] = EvseTimers(None, since, ev.current, last_cut_s=t.last_cut_s,
                                          surplus_low_since_s=ev.low_since_s,
                                          surplus_confirmed=ev.confirmed)
            assert ev.reason is not None
            mask = d.evse_phases_mask if d.evse_phases_mask is not None else d.phases_mask
            setpoints[d.dev_id] = Setpoint(d.dev_id, ev.current, mask, False, ev.reason)
        else:
            paused = _paused_timers(ev, t, now, params.min_pause_time_s)
            if ev.cover_since_s is not None:
                paused = paused._replace(surplus_cover_since_s=ev.cover_since_s)
            timers[d.dev_id] = paused
            reason = ev.reason or Reason("site_limit", "no room")
            setpoints[d.dev_id] = _setpoint(d, 0, True, reason, ev.pause_reason or reason.code)
    return Allocation(setpoints, timers)


def _surplus_rule_stop(d: EvseDemand, t: EvseTimers, now: float,
                       params: AllocParams) -> EvseTimers:
    """The timers of an EVSE that does not want current now.

    Normally none (a new start is free). But a surplus EVSE that its PV rule stops (the
    rule's undercut time ran out: "not_allowed", still plugged in) leaves a *held* pause, as a
    surplus stop in the planner does, when surplus hysteresis is on: its next start waits for
    `min_pause_time_s`, so a cloudy day does not toggle the contactor through the rule."""
    reason = d.not_charging_reason
    hysteresis = params.surplus_stop_delay_s > 0 or params.surplus_start_delay_s > 0
    if not (d.surplus and hysteresis and reason is not None and reason.code == "not_allowed"):
        return _NO_TIMERS
    if t.last_current_ma > 0:
        return EvseTimers(now, None, 0, pause_held=True, last_cut_s=now)
    if t.pause_held and t.paused_since_s is not None:
        return EvseTimers(t.paused_since_s, None, 0, pause_held=True, last_cut_s=t.last_cut_s)
    return _NO_TIMERS


def _paused_timers(ev: _Ev, t: EvseTimers, now: float, min_pause_s: float) -> EvseTimers:
    """The timers of an EVSE that gets nothing this step, and whether its pause is *held*.

    A pause is held (it lasts at least `min_pause_s`, whatever room appears) only when it
    belongs to a lasting shortage: the EVSE was rotated out for a waiting one (round robin), or
    its run was cut a second time within `min_pause_s` of the previous cut. A first cut (an
    emergency reduction after a house-load jump, a transient) and a wait that never ran are
    not held: the EVSE is back in the next plan that has room for its minimum.
    """
    if t.paused_since_s is not None:  # the pause goes on: keep when it began and its hold
        return EvseTimers(t.paused_since_s, None, 0, pause_held=t.pause_held,
                          last_cut_s=t.last_cut_s)
    if not ev.was_running:
        return EvseTimers(now, None, 0, last_cut_s=t.last_cut_s)
    repeated = t.last_cut_s is not None and now - t.last_cut_s < min_pause_s
    # a surplus stop after its stop delay is held too: a cloudy day must not toggle contactors
    held = ev.pause_reason == "rotation" or repeated or ev.surplus_stop
    return EvseTimers(now, None, 0, pause_held=held, last_cut_s=now)


def _clamp_timers(t: EvseTimers, now: float) -> EvseTimers:
    paused = t.paused_since_s
    running = t.running_since_s
    cut = t.last_cut_s
    return t._replace(paused_since_s=None if paused is None else min(paused, now),
                      running_since_s=None if running is None else min(running, now),
                      last_cut_s=None if cut is None else min(cut, now))


def _run_tiers(evs: list[_Ev], rows: _Rows, now: float = 0.0,
               params: AllocParams | None = None) -> list[_Ev]:
    """Admit and water-fill tier by tier (strict priority); return the admitted EVSEs."""
    tiers: dict[tuple[int, int], list[_Ev]] = {}
    for ev in evs:
        tiers.setdefault(ev.tier, []).append(ev)
    admitted_all: list[_Ev] = []
    for tier_key in sorted(tiers):
        tier = sorted(tiers[tier_key], key=lambda e: e.order_key)
        at_tier_start = list(rows.slack)
        admitted = _admit(tier, rows, at_tier_start, now, params)
        _water_fill(admitted, rows)
        admitted_all.extend(admitted)
    return admitted_all


def _no_charge_reason(d: EvseDemand, min_ma: int) -> Reason:
    if d.wants_charge and d.phases_mask & 0b111 == 0:
        return Reason("not_allowed", "no phases to charge on")
    if d.wants_charge:
        return Reason("max_current", f"max current {d.max_ma} mA is below the minimum {min_ma} mA")
    return Reason("not_connected", "no car connected")


def _order_key(d: EvseDemand, t: EvseTimers, running: bool, in_min_run: bool, now: float,
               fcfs: bool) -> tuple:
    """Admission order inside a tier (smaller first); see the module docstring."""
    if fcfs:
        return (0 if in_min_run else 1, d.arrival_order, d.dev_id)
    if in_min_run:
        return (0, 0.0, d.session_energy_wh, d.dev_id)
    if not running:
        waiting_since = t.paused_since_s if t.paused_since_s is not None else now
        return (1, waiting_since, d.session_energy_wh, d.dev_id)
    assert t.running_since_s is not None
    return (2, -t.running_since_s, d.session_energy_wh, d.dev_id)


def _setpoint(d: EvseDemand, current: int, paused: bool, reason: Reason,
              pause_reason: str = "") -> Setpoint:
    mask = d.evse_phases_mask if d.evse_phases_mask is not None else d.phases_mask
    return Setpoint(d.dev_id, current, mask, paused, reason, pause_reason if paused else "")


# --------------------------------------------------------------------------- admission


def _admit(tier: list[_Ev], rows: _Rows, at_tier_start: list[int], now: float = 0.0,
           params: AllocParams | None = None) -> list[_Ev]:
    """Admit the tier's EVSEs at their minimum where it fits; give the others a pause reason."""
    slack = rows.slack
    admitted = []
    pool = rows.pool
    # Surplus EVSEs already running (or held) keep their minimum in the pool against a new
    # start, whatever the admission order: a start must be covered besides them.
    running = ([ev for ev in tier if ev.d.surplus and ev.was_running and not ev.d.surplus_idle]
               if pool is not None and params is not None else [])
    ahead = 0  # running[ahead:] are still to come
    for ev in tier:
        m = ev.min_ma
        if pool is not None and ev.d.surplus and params is not None:
            if ev.was_running:
                if ahead < len(running) and running[ahead] is ev:
                    ahead += 1
                claimed = 0
            else:
                claimed = _pool_claims(running[ahead:], rows) if ahead < len(running) else 0
            if _admit_surplus(ev, rows, at_tier_start, now, params, claimed):
                admitted.append(ev)
            continue
        for r, c in ev.rows:
            if slack[r] < c * m:
                ev.reason, ev.pause_reason = _blocked_reason(ev, rows, at_tier_start)
                break
        else:
            for r, c in ev.rows:
                slack[r] -= c * m
            ev.current = m
            admitted.append(ev)
    return admitted


def _pool_claims(running: list[_Ev], rows: _Rows) -> int:
    """The pool (mA·V) that the surplus EVSEs still to come in this tier and already running
    will take at least: each one's minimum, if its hard limits still have room for it."""
    pool = rows.pool
    slack = rows.slack
    total = 0
    for ev in running:
        m = ev.min_ma
        pc = 0
        for r, c in ev.rows:
            if r == pool:
                pc = c
            elif slack[r] < c * m:
                break
        else:
            total += pc * m
    return total


def _admit_surplus(ev: _Ev, rows: _Rows, at_tier_start: list[int], now: float,
                   params: AllocParams, claimed: int = 0) -> bool:
    """Admission of a surplus EVSE, with the start/stop hysteresis (True: admitted).

    Hard limits (nodes, phases, the EVSE cap) are checked exactly as for any EVSE; the
    hysteresis only ever concerns the surplus pool:

    - not running: the pool must cover its minimum for `surplus_start_delay_s` in a row; while
      it waits, its minimum is reserved in the pool (so the next surplus EVSE needs surplus of
      its own) and it is paused with "surplus_start";
    - running, pool covers the minimum: admitted (the run is *confirmed* when its phases are
      known, not merely predicted);
    - running, pool below the minimum: a confirmed run is held at its minimum (reason
      "surplus_hold": it draws the difference from the grid) until the surplus has been low
      for its stop delay and its `min_run_time_s` is over; then it stops, and that pause is
      held for `min_pause_time_s`. A run that was never confirmed (the phase prediction was
      wrong) and a stop delay of 0 stop at once;
    - running but idle (`surplus_idle`: offered current, drawing nothing, e.g. a full car):
      kept at its minimum on the hard limits, outside the pool ("surplus_idle");
    - a start (not running) must be covered besides `claimed`: the minimums of the running
      and held surplus EVSEs of the tier that come after it in the order.
    """
    slack = rows.slack
    m = ev.min_ma
    pool = rows.pool
    t = ev.timers
    ev.held = ev.surplus_stop = ev.confirmed = False
    ev.cover_since_s = ev.low_since_s = None
    ev.idle = False
    hard = [(r, c) for r, c in ev.rows if r != pool]
    pc = next(c for r, c in ev.rows if r == pool)
    if any(slack[r] < c * m for r, c in hard):
        ev.reason, ev.pause_reason = _blocked_reason(ev, rows, at_tier_start)
        return False
    assert pool is not None
    if ev.was_running and ev.d.surplus_idle:
        for r, c in hard:
            slack[r] -= c * m
        ev.current, ev.max_ma, ev.idle, ev.confirmed = m, m, True, t.surplus_confirmed
        return True
    covered = slack[pool] - claimed >= pc * m
    known = ev.d.surplus_phases == 0
    if ev.was_running:
        if covered:
            ev.low_since_s, ev.confirmed = None, t.surplus_confirmed or known
        else:
            low = t.surplus_low_since_s
            low = now if low is None or low > now else low
            run_for = now - (t.running_since_s if t.running_since_s is not None else now)
            hold = (ev.stop_delay_s > 0 and t.surplus_confirmed
                    and (now - low < ev.stop_delay_s or run_for < params.min_run_time_s))
            if not hold:
                ev.reason, ev.pause_reason = _blocked_reason(ev, rows, at_tier_start)
                ev.surplus_stop = ev.stop_delay_s > 0
                return False
            ev.low_since_s, ev.confirmed, ev.held = low, True, True
            ev.max_ma = m
        for r, c in hard:
            slack[r] -= c * m
        slack[pool] -= min(slack[pool], pc * m)
        ev.current = m
        return True
    if not covered:
        if slack[pool] >= pc * m:  # only the running surplus EVSEs' minimums are in the way
            limit = rows.reason(pool)
            ev.reason = limit._replace(text=limit.text + " (the running surplus EVSEs keep "
                                       "their minimum)")
            ev.pause_reason = "shortage"
        else:
            ev.reason, ev.pause_reason = _blocked_reason(ev, rows, at_tier_start)
        return False
    since = t.surplus_cover_since_s
    since = now if since is None or since > now else since
    ev.cover_since_s = since
    waited = now - since
    if waited < params.surplus_start_delay_s:
        slack[pool] -= pc * m  # reserved while it waits
        left = params.surplus_start_delay_s - waited
        ev.reason = Reason("surplus_start", f"PV surplus covers the minimum: starts in "
                           f"{left:.0f} s if it stays")
        ev.pause_reason = "surplus_start"
        return False
    for r, c in ev.rows:
        slack[r] -= c * m
    ev.current, ev.confirmed, ev.cover_since_s = m, known, None
    return True


def _blocked_reason(ev: _Ev, rows: _Rows, at_tier_start: list[int]) -> tuple[Reason, str]:
    """Why `ev` could not get its minimum: a limit, a higher tier, or its own tier's turn."""
    failing = [(r, c) for r, c in ev.rows if rows.slack[r] < c * ev.min_ma]
    for r, c in failing:
        if rows.initial[r] < c * ev.min_ma:
            limit = rows.reason(r)
            reason = limit._replace(text=limit.text + " (below the minimum current)")
            return reason, limit.code if limit.code == "stale_meter" else "shortage"
    for r, c in failing:
        if at_tier_start[r] < c * ev.min_ma:
            limit = rows.reason(r)
            text = f"higher-priority EVSEs use the room: {limit.text}"
            return limit._replace(code="priority", text=text), "priority"
    limit = rows.reason(failing[0][0])
    if ev.in_min_run:
        # Still inside its minimum run time, yet its own tier has no room: a plain shortage.
        return limit, "shortage"
    if ev.was_running:
        text = f"rotated out after its minimum run time: {limit.text}"
    else:
        text = f"waiting for its turn: {limit.text}"
    return limit._replace(code="rotation", text=text), "rotation"


# --------------------------------------------------------------------------- water-filling


def _water_fill(admitted: list[_Ev], rows: _Rows) -> None:
    """Raise the admitted EVSEs from their minimum, max-min fairly, until rows or maxima bind.

    Progressive filling with events: a common water level L rises; an EVSE follows it from its
    minimum up to its maximum; a row is full when the rising EVSEs on it used its slack. A row's
    use is linear in L between events, `slope·L − offset`, so an event only adjusts two numbers
    per row. Events: EVSEs starting (sorted by minimum), EVSEs reaching their maximum (sorted),
    rows filling (a heap). At one level starts come first, then maxima, then full rows; rows
    filling at the same level are taken deepest node first, so an EVSE is told about the limit
    closest to it. Work: about (EVSEs × rows per EVSE) plus the heap.
    """
    n = len(admitted)
    if not n:
        return
    count = len(rows.slack)
    slack = rows.slack  # exact integer slack at the start of the fill (only read here)
    slope = [0] * count
    offset = [0.0] * count
    version = [0] * count
    full = [False] * count
    depth = rows.depth
    members: dict[int, list[int]] = {}
    for i, ev in enumerate(admitted):
        for r, _c in ev.rows:
            lst = members.get(r)
            if lst is None:
                members[r] = [i]
            else:
                lst.append(i)
    level = [0.0] * n
    binding: list[int | None] = [None] * n  # the row that froze it; None = its max
    rising = [False] * n
    starts: list[tuple[int, int]] = []
    maxima: list[tuple[int, int]] = []
    for i, ev in enumerate(admitted):
        if ev.max_ma > ev.min_ma:
            starts.append((ev.min_ma, i))
            maxima.append((ev.max_ma, i))
    starts.sort()
    maxima.sort()
    n_starts, n_maxima = len(starts), len(maxima)
    si = mi = 0
    heap: list[tuple[float, int, int, int]] = []  # (level, −depth, row, version)
    dirty: set[int] = set()
    mark = dirty.add
    push, pop = heapq.heappush, heapq.heappop
    last = -_INF

    def freeze(i: int, at: float, row: int | None) -> None:
        rising[i] = False
        level[i] = at
        binding[i] = row
        for r, c in admitted[i].rows:
            slope[r] -= c
            offset[r] -= c * at
            mark(r)

    while True:
        at = starts[si][0] if si < n_starts else _INF
        if mi < n_maxima and maxima[mi][0] < at:
            at = maxima[mi][0]
        if heap and heap[0][0] < at:
            at = heap[0][0]
        if dirty and at > last:
            # Everything at level `last` is done: the changed rows get new fill levels.
            for r in dirty:
                version[r] += 1
                sr = slope[r]
                if sr > 0 and not full[r]:
                    push(heap, ((slack[r] + offset[r]) / sr, -depth[r], r, version[r]))
            dirty.clear()
            continue
        if at == _INF:
            break
        last = at
        while si < n_starts and starts[si][0] == at:
            i = starts[si][1]
            si += 1
            ev_rows = admitted[i].rows
            blocked = None
            for r, c in ev_rows:
                if full[r]:
                    blocked = r
                    break
                slope[r] += c
                offset[r] += c * at
                mark(r)
            if blocked is None:
                rising[i] = True
            else:  # rare: a row it needs is already full; undo and freeze it at its minimum
                for r, c in ev_rows:
                    if r == blocked:
                        break
                    slope[r] -= c
                    offset[r] -= c * at
                binding[i] = blocked
                level[i] = at
        while mi < n_maxima and maxima[mi][0] == at:
            i = maxima[mi][1]
            mi += 1
            if rising[i]:
                freeze(i, at, None)
        while heap and heap[0][0] == at:
            _lvl, _tie, r, ver = pop(heap)
            if ver != version[r] or full[r]:
                continue
            full[r] = True
            for i in members[r]:
                if rising[i]:
                    freeze(i, at, r)

    exact = rows.slack
    for i, ev in enumerate(admitted):
        row = binding[i]
        if row is None:
            value = ev.max_ma if ev.max_ma > ev.min_ma else ev.min_ma
        else:
            value = int(level[i])
            value = ev.min_ma if value < ev.min_ma else ev.max_ma if value > ev.max_ma else value
            if row == rows.pool and rows.pool_step_ma > 1 and value > ev.min_ma:
                value = max(ev.min_ma, value - value % rows.pool_step_ma)  # only lowers
        ev.current = value
        extra = value - ev.min_ma
        if extra:
            for r, c in ev.rows:
                exact[r] -= c * extra
        if row is not None:
            ev.reason = rows.reason(row)
        elif ev.cap_reason is not None:
            ev.reason = ev.cap_reason
        else:
            key = (ev.max_ma, ev.d.max_text)
            reason = rows.max_reasons.get(key)
            if reason is None:
                text = f"max current {ev.max_ma} mA" + (f" ({key[1]})" if key[1] else "")
                reason = rows.max_reasons[key] = Reason("max_current", text)
            ev.reason = reason
    _repair_rounding(admitted, rows, members)


def _repair_rounding(admitted: list[_Ev], rows: _Rows, members: dict[int, list[int]]) -> None:
    """Give back whole mA where float rounding of the water level overshot a row.

    The exact (integer) slack is authoritative: the level is floored, so an overshoot needs
    accumulated float error ≥ 1 mA, which we never expect; if it happens, the EVSEs on that
    row step down one mA at a time (largest first, never below their minimum).
    """
    for r, on_row in members.items():
        while rows.slack[r] < 0:
            above_min = [admitted[i] for i in on_row if admitted[i].current > admitted[i].min_ma]
            if not above_min:
                break
            ev = max(above_min, key=lambda e: (e.current, e.d.dev_id))
            ev.current -= 1
            for rr, c in ev.rows:
                rows.slack[rr] += c


# --------------------------------------------------------------------------- imbalance


def _phase_loads(evs: list[_Ev], base: Phases) -> list[int]:
    loads = list(base)
    for ev in evs:
        if ev.current > 0:
            for p in range(3):
                if ev.d.phases_mask >> p & 1:
                    loads[p] += ev.current
    return loads


def _enforce_imbalance(admitted: list[_Ev], base: Phases, max_imbalance_ma: int) -> None:
    """Reduce (then pause) the EVSEs that load the highest phase but not the lowest one.

    Lowest tier first; inside a tier the largest currents come down first (fair draining) and
    pausing starts with the EVSE admitted last. Only ever lowers currents, so no limit can
    be broken by it.
    """
    tier_rank = sorted({ev.tier for ev in admitted}, reverse=True)  # lowest tier first
    for _ in range(4 * len(admitted) + 3):
        loads = _phase_loads(admitted, base)
        hi = max(range(3), key=lambda p: (loads[p], -p))
        lo = min(range(3), key=lambda p: (loads[p], p))
        need = loads[hi] - loads[lo] - max_imbalance_ma
        if need <= 0:
            return
        candidates = [ev for ev in admitted if ev.current > 0
                      and ev.d.phases_mask >> hi & 1 and not ev.d.phases_mask >> lo & 1]
        if not candidates:
            return  # the imbalance comes from non-EVSE load: EVSEs cannot fix it
        reason = Reason("imbalance", f"phase imbalance limit ({max_imbalance_ma} mA) on "
                        f"{_PHASE_NAMES[hi]}", None, hi + 1)
        for tier in tier_rank:
            group = [ev for ev in candidates if ev.tier == tier]
            if group:
                need = _reduce_tier(group, need, reason)
                if need <= 0:
                    break


def _reduce_tier(group: list[_Ev], need: int, reason: Reason) -> int:
    """Take up to `need` mA off `group`; return what is still needed afterwards."""
    order = list(reversed(group))  # admitted last → paused first
    freed = 0  # by pausing the first n_paused of `order`
    spare = sum(ev.current - ev.min_ma for ev in order)  # by lowering the others to minimum
    n_paused = 0
    while freed + spare < need and n_paused < len(order):
        ev = order[n_paused]
        freed += ev.current
        spare -= ev.current - ev.min_ma
        n_paused += 1
    for ev in order[:n_paused]:
        ev.current = 0
        ev.reason, ev.pause_reason = reason, "imbalance"
    kept = order[n_paused:]
    rest = min(max(0, need - freed), spare)
    if rest and kept:
        _drain(kept, rest, reason)
    return need - freed - rest


def _drain(kept: list[_Ev], amount: int, reason: Reason) -> None:
    """Lower the largest currents first until `amount` mA are freed (never below minimum)."""
    lo, hi = 0, max(ev.current for ev in kept)

    def freed_at(cap: int) -> int:
        return sum(max(0, ev.current - max(cap, ev.min_ma)) for ev in kept)

    while lo < hi:  # the highest cap that still frees `amount`
        mid = (lo + hi + 1) // 2
        if freed_at(mid) >= amount:
            lo = mid
        else:
            hi = mid - 1
    for ev in kept:
        new = min(ev.current, max(lo, ev.min_ma))
        if new != ev.current:
            ev.current = new
            ev.reason = reason
