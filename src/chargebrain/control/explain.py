"""`cmd=explain`: why an EVSE gets the current it gets, from the last cycle's record.

Pure: renders a `CycleRecord` (what the cycle planned, with its inputs) for one EVSE. The
answer (documented in docs/api.md, `## explain`):

    {"dev_id", "cycle", "time", "mode",
     "setpoint": {"current_ma", "phases", "charging_enabled", "paused", "pause_reason",
                  "last_set_charging_cur"},
     "reason": {"code", "text", "group", "phase"},
     "timers": {"paused_since", "pause_s", "pause_held", "min_pause_left_s", "running_since",
                "running_s", "min_run_left_s"},
     "demand": {"connected", "charging", "enabled", "authorised", "allowed", "reason",
                "min_current_ma", "max_current_ma", "max_reason", "priority", "phases",
                "phases_building", "phase_rotation", "group", "measured_ma", "com_error"},
     "nodes": [{"group", "name", "limit_ma", "non_evse_ma", "allocated_ma", "headroom_ma",
                "evse_limit_ma", "stale"} …],   # the EVSE's group first, the site last
     "notes": [...]}

Currents are mA per building phase [L1, L2, L3]; a node without a limit shows `null`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chargebrain.core.model import SITE_GROUP, UNLIMITED_MA
from chargebrain.core.site import EvseInput, PlanResult, SiteInput
from chargebrain.units import Phases, rotate_mask


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """One finished cycle: its inputs and its plan (kept for explain and the push check)."""

    number: int
    now_s: float
    site: SiteInput
    result: PlanResult
    notes: tuple[str, ...] = ()
    group_names: dict[int, str] = field(default_factory=dict)

    def evse(self, dev_id: str) -> EvseInput | None:
        return next((e for e in self.site.evses if e.dev_id == dev_id), None)


def _phases(values: Phases | None) -> list[int | None] | None:
    if values is None:
        return None
    return [None if v >= UNLIMITED_MA else int(v) for v in values]


def _age(now_s: float, since: float | None) -> int:
    return 0 if since is None else max(0, int(now_s - since))


def not_planned(dev_id: str, number: int) -> dict[str, Any]:
    """The answer before the first cycle has planned this EVSE."""
    text = ("no control cycle has run yet" if number == 0
            else "this EVSE was not part of the last cycle (added since?)")
    return {"dev_id": dev_id, "cycle": number, "setpoint": None,
            "reason": {"code": "no_cycle_yet", "text": text, "group": None, "phase": None},
            "timers": None, "demand": None, "nodes": [], "notes": []}


def explain(record: CycleRecord, dev_id: str, last_set_charging_cur: int) -> dict[str, Any]:
    """The explain answer for `dev_id` from `record` (see the module docstring)."""
    evse = record.evse(dev_id)
    setpoint = record.result.setpoints.get(dev_id)
    if evse is None or setpoint is None:
        return not_planned(dev_id, record.number)
    settings = record.site.settings
    now = record.now_s
    timers = record.result.memory.evses.get(dev_id)
    paused_since = timers.paused_since_s if timers is not None else None
    running_since = timers.running_since_s if timers is not None else None
    pause_s = _age(now, paused_since) if setpoint.paused else 0
    # only a held pause (a lasting shortage) waits for min_pause_time; see core.allocator
    held = bool(setpoint.paused and timers is not None and timers.pause_held)
    running_s = _age(now, running_since)
    nodes = record.result.diagnostics.nodes
    path: list[dict[str, Any]] = []
    current: int | None = evse.group_id if evse.group_id in nodes else SITE_GROUP
    seen: set[int] = set()
    while current is not None and current in nodes and current not in seen:
        seen.add(current)
        node = nodes[current]
        path.append({
            "group": current,
            "name": "site" if current == SITE_GROUP else record.group_names.get(current, ""),
            "limit_ma": _phases(node.limit_ma),
            "non_evse_ma": _phases(node.non_evse_ma),
            "allocated_ma": _phases(node.allocated_ma),
            "headroom_ma": _phases(node.headroom_ma),
            "evse_limit_ma": _phases(node.evse_limit_ma),
            "stale": node.stale,
        })
        current = node.parent_id
    rotation = evse.phase_rotation_deg
    building = rotate_mask(evse.phases_mask, rotation) if rotation in (0, 120, 240) else 7
    reason = setpoint.reason
    not_charging = ""
    if not evse.connected:
        not_charging = "no car connected"
    elif not evse.authorised:
        not_charging = "waiting for authorisation"
    elif not evse.allowed:
        not_charging = evse.not_allowed_reason or "charging not allowed now"
    return {
        "dev_id": dev_id,
        "cycle": record.number,
        "time": int(now),
        "mode": "load management" if record.result.write else "observation",
        "setpoint": {
            "current_ma": int(setpoint.current_ma),
            "phases": int(setpoint.phases_mask),
            "charging_enabled": setpoint.current_ma > 0,
            "paused": bool(setpoint.paused),
            "pause_reason": setpoint.pause_reason,
            "last_set_charging_cur": int(last_set_charging_cur),
        },
        "reason": {"code": reason.code, "text": reason.text, "group": reason.group_id,
                   "phase": reason.phase},
        "timers": {
            "paused_since": None if paused_since is None else int(paused_since),
            "pause_s": pause_s,
            "pause_held": held,
            "min_pause_left_s": (max(0, int(settings.min_pause_time_s) - pause_s)
                                 if held else 0),
            "running_since": None if running_since is None else int(running_since),
            "running_s": running_s,
            "min_run_left_s": (max(0, int(settings.min_run_time_s) - running_s)
                               if running_since is not None else 0),
        },
        "demand": {
            "connected": evse.connected,
            "charging": evse.charging,
            "enabled": evse.enabled,
            "authorised": evse.authorised,
            "allowed": evse.allowed,
            "reason": not_charging,
            "min_current_ma": evse.min_current_ma,
            "max_current_ma": evse.max_current_ma,
            "max_reason": evse.max_reason,
            "priority": evse.priority,
            "phases": evse.phases_mask,
            "phases_building": building,
            "phase_rotation": rotation,
            "group": evse.group_id,
            "measured_ma": None if evse.measured_ma is None else list(evse.measured_ma),
            "com_error": evse.com_error_since_s is not None,
        },
        "nodes": path,
        "notes": list(record.notes),
    }
