"""Random physical sites for the property tests: ground truth plus meter readings that agree.

A `World` knows what really flows: the house load and PV production at every node, what every
wallbox draws now, and what every wallbox the planner cannot control may draw next. The meters
report that truth (fresh), or an old value (stale). The invariant checks compare the plan with
the truth, not with the planner's own diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

from chargebrain.core.model import EvseTimers
from chargebrain.core.site import (
    EvseInput,
    GroupInput,
    MeterInput,
    MeterRole,
    PlanMemory,
    SiteInput,
    SiteSettings,
)
from chargebrain.units import ZERO, Phases, add, mask_to_phases, rotate_mask, rotate_phases, sub

VOLT = 230
NOW = 10_000.0
GRACE_S = 180.0
UNLIMITED_LOAD = 10**9


@dataclass
class World:
    site: SiteInput
    memory: PlanMemory
    parent: dict[int, int | None]
    limit: dict[int, int | None]  # group limits; the site's is computed from settings
    house: dict[int, Phases]  # true consumption − production at each node itself
    hidden_prod: dict[int, Phases]  # production behind a stale PV meter (the planner sees 0)
    grid_nodes: set[int] = field(default_factory=set)  # fresh grid meter
    stale_nodes: set[int] = field(default_factory=set)  # a stale load meter (grid/consumption)
    uncontrolled: dict[str, tuple[int, Phases]] = field(default_factory=dict)  # id → (node, load)
    evse_group: dict[str, int] = field(default_factory=dict)
    evse_mask: dict[str, int] = field(default_factory=dict)  # building frame

    def subtree(self, g: int) -> list[int]:
        """g and every node below it."""
        out = [g]
        for n, p in self.parent.items():
            if p is not None and n != g and g in self.path(n):
                out.append(n)
        return out

    def path(self, g: int) -> list[int]:
        out = []
        cur: int | None = g
        while cur is not None:
            out.append(cur)
            cur = self.parent[cur]
        return out

    def true_non_evse(self, g: int) -> Phases:
        """What really loads node g besides the controlled wallboxes (from now on)."""
        total = ZERO
        for n in self.subtree(g):
            total = add(total, self.house[n])
        for node, load in self.uncontrolled.values():
            if node in self.subtree(g):
                total = add(total, load)
        return total

    def assumed_non_evse(self, g: int, site_limit: int) -> Phases:
        """The load the spec's fail-safe rules allow the planner to assume at node g.

        Equal to the truth when no meter is stale; a stale load meter stands for its node's
        whole limit (unbounded when the node has none); a stale PV meter for no production.
        """
        if g in self.grid_nodes:
            return self.true_non_evse(g)
        if g in self.stale_nodes:
            limit = site_limit if g == 0 else self.limit[g]
            value = UNLIMITED_LOAD if limit is None else limit
            return (value, value, value)
        own = add(self.house[g], self.hidden_prod.get(g, ZERO))  # unseen PV counts as none
        for node, load in self.uncontrolled.values():
            if node == g:
                own = add(own, load)
        for child, p in self.parent.items():
            if p == g and child != g:
                own = add(own, self.assumed_non_evse(child, site_limit))
        return own


def _phases(lo: int, hi: int) -> st.SearchStrategy[Phases]:
    return st.tuples(st.integers(lo, hi), st.integers(lo, hi), st.integers(lo, hi))


@st.composite
def worlds(draw: st.DrawFn, max_evses: int = 30, max_groups: int = 8) -> World:
    """A random site: a group tree up to 4 levels, meters that tell the truth, wallboxes."""
    parent: dict[int, int | None] = {0: None}
    depth = {0: 0}
    limits: dict[int, int | None] = {0: None}
    groups = []
    for gid in range(1, draw(st.integers(0, max_groups)) + 1):
        p = draw(st.sampled_from(sorted(g for g in depth if depth[g] < 4)))
        parent[gid], depth[gid] = p, depth[p] + 1
        limits[gid] = draw(st.none() | st.integers(16_000, 80_000) | st.integers(16_000, 80_000)
                           | st.integers(0, 16_000))
    nodes = sorted(depth)
    settings = SiteSettings(
        max_total_current_ma=draw(st.integers(32_000, 200_000) | st.integers(32_000, 200_000)
                                  | st.integers(0, 32_000)),
        max_total_cur_prc=draw(st.sampled_from([100] * 6 + [75, 50, 0])),
        reserve_current_ma=draw(st.integers(0, 3000)),
        max_total_evse_current_ma=draw(st.sampled_from([0, 0, 0, 20_000, 50_000, 100_000])),
        system_voltage_v=VOLT,
        max_imbalance_ma=draw(st.sampled_from([0, 20_000, 20_000, 10_000])),
        imbalance_add=draw(st.booleans()),
        fcfs=draw(st.booleans()),
        disable_policy=draw(st.sampled_from([-1, 0, 1])),
        com_error_grace_s=GRACE_S,
        # PV surplus hysteresis and rounding (0/1 = off, as in the bare planner)
        surplus_start_delay_s=draw(st.sampled_from([0.0, 0.0, 60.0, 600.0])),
        surplus_stop_delay_s=draw(st.sampled_from([0.0, 0.0, 300.0])),
        surplus_step_ma=draw(st.sampled_from([1, 1, 100, 1000])),
        max_phase_switches=draw(st.sampled_from([0, 0, 4, 1])),
    )

    evses: list[EvseInput] = []
    timers: dict[str, EvseTimers] = {}
    now_draw: dict[str, tuple[int, Phases]] = {}
    uncontrolled: dict[str, tuple[int, Phases]] = {}
    evse_group: dict[str, int] = {}
    evse_mask: dict[str, int] = {}
    for i in range(draw(st.integers(0, max_evses) | st.integers(max_evses // 2, max_evses))):
        dev = f"E{100 + i}"
        group = draw(st.sampled_from(nodes))
        emask = draw(st.sampled_from([1, 2, 4, 3, 5, 6, 7, 7, 7, 7]))
        rot = draw(st.sampled_from([0, 120, 240]))
        bmask = rotate_mask(emask, rot)
        min_ma = draw(st.integers(0, 10_000))
        max_ma = draw(st.integers(0, 32_000) | st.integers(min_ma, 32_000)
                      | st.integers(max(min_ma, 6000), 32_000))
        connected = draw(st.integers(0, 9)) > 0
        charging = connected and draw(st.booleans())
        metered = draw(st.booleans())
        enabled = draw(st.integers(0, 19)) > 0
        silent_s = draw(st.sampled_from([None] * 18 + [60.0, 500.0]))
        state = draw(st.sampled_from(["new", "running", "paused"]))
        since = st.none() | st.integers(0, 1000).map(lambda ago: NOW - ago)
        if state == "running":
            last = draw(st.integers(6000, 16_000) | st.integers(6000, 32_000))
            t = EvseTimers(None, NOW - draw(st.integers(0, 1000)), last,
                           surplus_low_since_s=draw(since),
                           surplus_confirmed=draw(st.booleans()),
                           surplus_idle_since_s=draw(since),
                           phase_switches=draw(st.integers(0, 5)))
        elif state == "paused":
            t = EvseTimers(NOW - draw(st.integers(0, 1000)), None, 0,
                           pause_held=draw(st.booleans()), surplus_cover_since_s=draw(since))
        else:
            t = EvseTimers(surplus_cover_since_s=draw(since))
        timers[dev] = t
        measured: Phases | None = None
        if metered:
            # a car draws at most what it was offered (a little less, often)
            raw = draw(_phases(0, t.last_current_ma)) if charging else ZERO
            measured = tuple(v if emask >> p & 1 else 0 for p, v in enumerate(raw))  # type: ignore[assignment]
            drawn = rotate_phases(measured, rot)  # type: ignore[arg-type]
        elif charging:
            drawn = mask_to_phases(bmask, t.last_current_ma)
        else:
            drawn = ZERO
        last_power_w = draw(st.integers(0, 22_000))
        # some three-phase boxes can switch to one phase (the planner decides)
        switchable = emask == 7 and draw(st.integers(0, 3)) == 0
        evse = EvseInput(
            dev_id=dev, group_id=group, enabled=enabled, connected=connected, charging=charging,
            authorised=draw(st.integers(0, 19)) > 0, allowed=draw(st.integers(0, 19)) > 0,
            measured_ma=measured, phases_mask=emask, phase_rotation_deg=rot,
            min_current_ma=min_ma, max_current_ma=max_ma, priority=draw(st.integers(1, 3)),
            surplus=draw(st.integers(0, 5)) == 0,
            com_error_since_s=None if silent_s is None else NOW - silent_s,
            last_power_w=last_power_w, arrival_order=draw(st.integers(0, 50)),
            session_energy_wh=draw(st.integers(0, 5000)), phase_switching=switchable,
            surplus_stop_delay_s=draw(st.sampled_from([0.0, 0.0, 120.0, 600.0])),
            phases_known=draw(st.integers(0, 3)) > 0,
            forced_phases=draw(st.sampled_from([0, 0, 0, 0, 1, 3])),
        )
        evses.append(evse)
        now_draw[dev] = (group, drawn)
        evse_group[dev], evse_mask[dev] = group, bmask
        if silent_s is not None and silent_s < GRACE_S:
            uncontrolled[dev] = (group, drawn)
        elif silent_s is not None:
            per_phase = round(last_power_w * 1000 / (VOLT * bmask.bit_count()))
            uncontrolled[dev] = (group, mask_to_phases(bmask, per_phase))
        elif not enabled:
            held = 0
            if connected and settings.disable_policy == 1:
                held = max(min_ma, 6000)
            elif connected and settings.disable_policy == -1:
                held = max_ma
            future = mask_to_phases(bmask, held)
            uncontrolled[dev] = (group, tuple(max(a, b) for a, b in zip(drawn, future,
                                                                         strict=True)))  # type: ignore[misc]

    house: dict[int, Phases] = {}
    stale_prod: dict[int, Phases] = {}
    kinds: dict[int, str] = {}
    meters: list[MeterInput] = []
    stale_nodes: set[int] = set()
    grid_nodes: set[int] = set()
    for g in nodes:
        load = draw(_phases(0, 8_000) | _phases(0, 20_000)) if draw(st.booleans()) else ZERO
        prod = draw(_phases(0, 10_000)) if draw(st.integers(0, 3)) == 0 else ZERO
        house[g] = sub(load, prod)
        kind = draw(st.sampled_from(["grid", "consumption", "none"]))
        if kind == "none" and load != ZERO:
            kind = "consumption"
        kinds[g] = kind
        if kind == "consumption":
            stale = draw(st.integers(0, 19)) == 0
            meters.append(_meter(f"MC{g}", MeterRole.CONSUMPTION, g, load, stale))
            if stale:
                stale_nodes.add(g)
        if prod != ZERO:
            stale = draw(st.integers(0, 5)) == 0
            meters.append(_meter(f"MP{g}", MeterRole.PRODUCTION, g, prod, stale))
            if stale:
                stale_prod[g] = prod

    # Most sites are consistent now (what flows fits the limits, as it would after a good
    # previous cycle); some are not (overdraft, a limit just lowered by a formula).
    totals = {g: ZERO for g in nodes}
    for g in nodes:
        chain = [g]
        while parent[chain[-1]] is not None:
            chain.append(parent[chain[-1]])  # type: ignore[arg-type]
        flows = [house[g]] + [vec for node, vec in now_draw.values() if node == g]
        for vec in flows:
            for n in chain:
                totals[n] = add(totals[n], vec)
    for gid in nodes[1:]:
        if limits[gid] is not None and draw(st.integers(0, 3)) > 0:
            limits[gid] = max(limits[gid], max(totals[gid]) + draw(st.integers(0, 20_000)))
        groups.append(GroupInput(gid, parent[gid] or 0, limits[gid], f"g{gid}"))
    if draw(st.integers(0, 3)) > 0 and settings.max_total_cur_prc > 0:
        need = max(totals[0]) + settings.reserve_current_ma + draw(st.integers(0, 20_000))
        settings = replace(settings, max_total_current_ma=max(
            settings.max_total_current_ma, -(-need * 100 // settings.max_total_cur_prc)))

    world = World(
        site=SiteInput(), memory=PlanMemory(), parent=parent, limit=limits, house=house,
        hidden_prod=stale_prod, uncontrolled=uncontrolled, evse_group=evse_group,
        evse_mask=evse_mask,
    )
    for g in nodes:
        if kinds[g] != "grid":
            continue
        below = world.subtree(g)
        reading = ZERO
        for n in below:
            reading = add(reading, house[n])
        for node, vec in now_draw.values():
            if node in below:
                reading = add(reading, vec)
        stale = draw(st.integers(0, 19)) == 0
        meters.append(_meter(f"MG{g}", MeterRole.GRID, g, reading, stale))
        (stale_nodes if stale else grid_nodes).add(g)

    penalty = draw(st.sampled_from([0] * 6 + [2000, 5000]))
    memory = PlanMemory(timers, penalty, NOW + draw(st.integers(-100, 200)) if penalty else None)
    surplus_w = draw(st.none() | st.integers(0, 30_000))
    world.site = SiteInput(settings, tuple(groups), tuple(meters), tuple(evses), surplus_w)
    world.memory = memory
    world.grid_nodes, world.stale_nodes = grid_nodes, stale_nodes
    return world


def _meter(dev_id: str, role: MeterRole, group: int, currents: Phases, stale: bool) -> MeterInput:
    power = round(sum(currents) * VOLT / 1000)
    read_at = None if stale else NOW - 5
    return MeterInput(dev_id, role, group, currents, power, read_at_s=read_at, timeout_s=30.0)
