"""Does freshly pushed meter data show a limit exceeded? (decides an immediate extra cycle)

Pure and cheap (a walk up the limit tree, three phases each). The last plan's accounting per
node (limit, non-EVSE load, allocated EVSE current) is kept as an `OverloadBasis`, together with
what every meter contributed to its node's load in that plan. A push is turned into the load
increase `delta` the plan did not expect:

- a grid meter measures everything below its node, EVSEs included, and the plan expected at
  most `non_evse + allocated` there; `delta = reading − (non_evse + allocated)`. (A car that
  starts drawing what it was given is expected; a house-load jump is not.)
- any other meter: `delta = new contribution − contribution in the plan`.

The meter's node and every node above it are then judged `non_evse + delta + allocated >
limit` on each phase (for the grid meter's own node that is simply "measured import above the
limit"). Only phases where EVSEs were given current count: an overload no EVSE can relieve
(house load alone above the limit, every car already at 0) would otherwise trigger a cycle on
every push.

The judgement errs on the side of an extra cycle (a change below a node that has its own grid
meter is also applied to that node). An extra cycle is harmless; a missed one waits for the
next periodic cycle. A node with several grid meters judges each by its own change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chargebrain.core.budget import meter_currents_ma, meter_load_ma
from chargebrain.core.model import SITE_GROUP, UNLIMITED_MA
from chargebrain.core.site import Diagnostics, MeterInput, MeterRole
from chargebrain.units import ZERO, Phases, add, sub


@dataclass(frozen=True, slots=True)
class NodeBasis:
    """One node's accounting in the last plan."""

    parent_id: int | None
    limit_ma: Phases
    non_evse_ma: Phases
    allocated_ma: Phases
    stale: bool


@dataclass(frozen=True, slots=True)
class OverloadBasis:
    """What a push is judged against: the last plan's nodes and meter contributions."""

    nodes: Mapping[int, NodeBasis]
    meter_load_ma: Mapping[str, tuple[int, Phases]]  # dev_id → (node, contribution)
    voltage_v: int
    grid_meters: Mapping[int, int]  # node → number of grid meters measuring it


def contribution_ma(meter: MeterInput, voltage_v: int, now_s: float) -> Phases:
    """What a meter adds to its node's load (grid meters: their whole reading)."""
    if meter.is_stale(now_s) or meter.role in (MeterRole.DISPLAY, MeterRole.EV):
        return ZERO
    if meter.role == MeterRole.GRID:
        return meter_currents_ma(meter, voltage_v)
    return meter_load_ma(meter, voltage_v)


def basis(diagnostics: Diagnostics, meters: Iterable[MeterInput], voltage_v: int,
          now_s: float) -> OverloadBasis:
    """The basis for judging pushes until the next plan."""
    nodes = {gid: NodeBasis(n.parent_id, n.limit_ma, n.non_evse_ma, n.allocated_ma, n.stale)
             for gid, n in diagnostics.nodes.items()}
    contributions: dict[str, tuple[int, Phases]] = {}
    grids: dict[int, int] = {}
    for m in meters:
        node = m.group_id if m.group_id in nodes else SITE_GROUP
        contributions[m.dev_id] = (node, contribution_ma(m, voltage_v, now_s))
        if m.role == MeterRole.GRID:
            grids[node] = grids.get(node, 0) + 1
    return OverloadBasis(nodes, contributions, voltage_v, grids)


def exceeded(base: OverloadBasis, meter: MeterInput, now_s: float) -> bool:
    """True when `meter`'s new reading puts a node above its limit on a phase with EVSE
    current (see the module docstring)."""
    node_id, before = base.meter_load_ma.get(meter.dev_id, (
        meter.group_id if meter.group_id in base.nodes else SITE_GROUP, ZERO))
    now_ma = contribution_ma(meter, base.voltage_v, now_s)
    own = base.nodes.get(node_id)
    if meter.role == MeterRole.GRID and own is not None and base.grid_meters.get(node_id) == 1:
        expected = add(own.non_evse_ma, own.allocated_ma)
        delta = sub(now_ma, expected)
    else:
        delta = sub(now_ma, before)
    if not any(d > 0 for d in delta):
        return False
    seen: set[int] = set()
    current: int | None = node_id
    while current is not None and current in base.nodes and current not in seen:
        seen.add(current)
        node = base.nodes[current]
        if not node.stale:
            for p in range(3):
                limit = node.limit_ma[p]
                if limit >= UNLIMITED_MA or node.allocated_ma[p] <= 0:
                    continue
                if node.non_evse_ma[p] + delta[p] + node.allocated_ma[p] > limit:
                    return True
        current = node.parent_id
    return False
