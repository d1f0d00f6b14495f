"""The allocator's input and output: a snapshot of the site, and setpoints with reasons.

Everything here is plain immutable data. The control cycle (the imperative shell) builds a
`Snapshot` from device readings, configuration and the previous cycle's `EvseTimers`; the pure
allocator turns it into an `Allocation`. All per-phase values are in the *building* frame
(an EVSE's own phases are already rotated by its `phase_rotation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chargebrain.units import ZERO, Phases

SITE_GROUP = 0
UNLIMITED_MA = 10**9


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A node of the limit tree: the site (id 0) or an `evse_group` (E<n> → id n).

    `limit_ma` is the per-phase limit for everything below the node (EVSE draw plus the
    non-EVSE load measured at this node). `evse_limit_ma` additionally caps the EVSE share alone
    (the site's `max_total_evse_current`). `non_evse_load_ma` is the measured load at this node
    that is not an EVSE of this tree (house load, a stale meter's fail-safe worst case, booked
    load of an EVSE in COM error, active overdraft penalty…), already per building phase.
    """

    group_id: int
    parent_id: int | None
    name: str = ""
    limit_ma: Phases = (UNLIMITED_MA, UNLIMITED_MA, UNLIMITED_MA)
    evse_limit_ma: Phases = (UNLIMITED_MA, UNLIMITED_MA, UNLIMITED_MA)
    non_evse_load_ma: Phases = ZERO


@dataclass(frozen=True, slots=True)
class EvseTimers:
    """Per-EVSE state carried from one cycle to the next (the allocator's only memory)."""

    paused_since_s: float | None = None  # when the current pause began
    running_since_s: float | None = None  # when the current run (≥ min current) began
    last_current_ma: int = 0


@dataclass(frozen=True, slots=True)
class EvseDemand:
    """What one EVSE wants this cycle, after rules, overrides, budgets and authorisation."""

    dev_id: str
    group_id: int = SITE_GROUP
    priority: int = 1
    min_ma: int = 6000
    max_ma: int = 16000
    phases_mask: int = 0b111  # phases the car draws on, building frame
    wants_charge: bool = True  # connected, enabled, authorised, rules/budget allow
    not_charging_reason: str = ""  # why wants_charge is False (shown as pause_reason/lreason)
    surplus: bool = False  # a surplus EVSE: served first, from the surplus only
    arrival_order: int = 0  # plug-in order, for first-come-first-served tie breaks
    session_energy_wh: int = 0  # fairness key for rotation: who charged least goes first


@dataclass(frozen=True, slots=True)
class SiteParams:
    """Global knobs of the allocation that are not limits of a node."""

    min_pause_time_s: float = 300.0
    min_run_time_s: float = 300.0  # before a running EVSE may be rotated out for a paused one
    max_imbalance_ma: int = 20000  # 0 disables the imbalance limit
    imbalance_add: bool = False  # include the non-EVSE load when judging imbalance
    fcfs: bool = False  # first come first served inside a priority tier
    surplus_ma: Phases = ZERO  # per-phase surplus available to surplus EVSEs


@dataclass(frozen=True, slots=True)
class Snapshot:
    now_s: float
    groups: tuple[GroupSpec, ...]
    evses: tuple[EvseDemand, ...]
    params: SiteParams = field(default_factory=SiteParams)
    timers: dict[str, EvseTimers] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an EVSE got what it got: the binding limit.

    `code` is a stable machine word (e.g. "max_current", "group_limit", "min_pause",
    "not_connected", "priority", "rotation", "imbalance", "no_headroom"); `text` is for people;
    `group_id` / `phase` name the binding node and building phase (1-3) where one applies.
    """

    code: str
    text: str
    group_id: int | None = None
    phase: int | None = None


@dataclass(frozen=True, slots=True)
class Setpoint:
    dev_id: str
    current_ma: int  # 0 = not charging; otherwise min_ma <= current_ma <= max_ma
    phases_mask: int
    paused: bool
    reason: Reason


@dataclass(frozen=True, slots=True)
class Allocation:
    setpoints: dict[str, Setpoint]
    timers: dict[str, EvseTimers]
