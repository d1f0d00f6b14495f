"""Handing a plan out to wallboxes that learn it one at a time (pure).

A polled wallbox gets its setpoint written in the cycle that planned it. An HTTP-input
wallbox learns it only with the answer to its next push, so for a while the site runs on a
mix: some wallboxes already on the new plan, others still on what they were told before. A
plan that moves current from wallbox A to wallbox B is safe only once A has its cut: until
then B's raise would come on top of A's old current.

The rule ("cuts before raises"): a wallbox whose planned current is at or below what it was
last told gets it at once. One whose planned current is higher gets it only if every node it
loads has, on every phase it loads, room for the cuts that other wallboxes have not received
yet; otherwise it keeps what it was last told (0 A for a new one) until they have. Because the
plan keeps every node within its limit with everyone at the new setpoints, the site then stays
within its limits whatever order the wallboxes ask in.
"""

from __future__ import annotations

from collections.abc import Mapping

from chargebrain.core.model import SITE_GROUP
from chargebrain.core.site import Diagnostics


def released_ma(dev_id: str, planned_ma: Mapping[str, int], told_ma: Mapping[str, int],
                diagnostics: Diagnostics) -> int:
    """The current `dev_id` may be told now.

    `planned_ma`: the last plan's current per wallbox that learns it by answer (0: none);
    `told_ma`: what each of them was last told and may still draw (0: nothing, or no car);
    `diagnostics`: the plan's per-node headroom and each wallbox's node and phases.
    """
    planned = planned_ma.get(dev_id, 0)
    told = told_ma.get(dev_id, 0)
    if planned <= told:
        return planned
    where = diagnostics.evse_phases.get(dev_id)
    if where is None:
        return told
    nodes = diagnostics.nodes
    path = _path(where[0], nodes)
    mask = where[1]
    pending: dict[int, list[int]] = {node: [0, 0, 0] for node in path}
    for other, other_told in told_ma.items():
        cut = other_told - planned_ma.get(other, 0)
        if other == dev_id or cut <= 0:
            continue
        other_where = diagnostics.evse_phases.get(other)
        if other_where is None:  # not in the plan: it may still draw all it was told
            other_path, other_mask = _path(SITE_GROUP, nodes), 0b111
        else:
            other_path, other_mask = _path(other_where[0], nodes), other_where[1]
        for node in other_path:
            if node in pending:
                for i in range(3):
                    if other_mask >> i & 1:
                        pending[node][i] += cut
    for node in path:
        room = nodes[node].headroom_ma if node in nodes else (0, 0, 0)
        for i in range(3):
            if mask >> i & 1 and pending[node][i] > room[i]:
                return told
    return planned


def _path(group_id: int, nodes: Mapping) -> list[int]:
    """The node and all nodes above it up to the site (unknown nodes: the site)."""
    path: list[int] = []
    node: int | None = group_id if group_id in nodes else SITE_GROUP
    while node is not None and node not in path:
        path.append(node)
        node = nodes[node].parent_id if node in nodes else None
    return path
