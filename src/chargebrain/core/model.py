"""The allocator's input and output: a snapshot of the limit tree, and setpoints with reasons.

Everything here is plain immutable data. The records made once per EVSE per cycle are
NamedTuples (immutable, and several times cheaper to build than frozen dataclasses, which
matters at a thousand EVSEs every cycle); read them by attribute name.

`core.plan` turns a `SiteInput` (configuration and readings, see `core.site`) into a
`Snapshot`: the limit tree with every node's per-phase limit and measured non-EVSE load already
worked out, plus one `EvseDemand` per controllable EVSE. The pure allocator
(`core.allocator.allocate`) turns the snapshot into an `Allocation`. All per-phase values are in
the *building* frame (an EVSE's own phases are already rotated by its `phase_rotation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from chargebrain.units import ZERO, Phases

SITE_GROUP = 0
UNLIMITED_MA = 10**9
UNLIMITED: Phases = (UNLIMITED_MA, UNLIMITED_MA, UNLIMITED_MA)
MIN_CURRENT_FLOOR_MA = 6000  # IEC 61851: no EVSE may be offered less than 6 A (except 0)


class GroupSpec(NamedTuple):
    """A node of the limit tree: the site (id 0) or an `evse_group` (E<n> → id n).

    `limit_ma` is the per-phase limit for everything below the node (EVSE draw plus the
    non-EVSE load measured at this node). `evse_limit_ma` additionally caps the EVSE share alone
    (the site's `max_total_evse_current`). `non_evse_load_ma` is the load below the node that the
    allocator does not control (house load, a stale meter's fail-safe worst case, booked load of
    an EVSE in COM error or of a disabled EVSE…), already per building phase; it may be negative
    where production below the node outweighs consumption. `stale` says a stale meter's worst
    case is part of that load; `penalty_ma` is an active overdraft penalty already taken off
    `limit_ma` (both only shape the reason an EVSE is given). `own_meter_stale` says a load meter
    of this very node is stale: then every EVSE below it gets 0, even when the node has no limit.
    """

    group_id: int
    parent_id: int | None
    name: str = ""
    limit_ma: Phases = UNLIMITED
    evse_limit_ma: Phases = UNLIMITED
    non_evse_load_ma: Phases = ZERO
    stale: bool = False
    penalty_ma: int = 0
    own_meter_stale: bool = False  # a load meter of this node itself is stale: all below stop


class EvseTimers(NamedTuple):
    """Per-EVSE state carried from one cycle to the next (the allocator's only memory)."""

    paused_since_s: float | None = None  # when the current pause began (None: not paused)
    running_since_s: float | None = None  # when the current run (≥ min current) began
    last_current_ma: int = 0  # the current offered in the last cycle (0 = none)
    one_phase: bool = False  # a switchable EVSE runs on its L1 only (see core.plan)
    three_phase_fits_since_s: float | None = None  # 1p: since when 3p (+ margin) fits
    three_phase_car: bool = False  # the plugged car was seen as 3p (learned 1p = our switch)
    pause_held: bool = False  # the current pause lasts at least min_pause_time (see allocator)
    last_cut_s: float | None = None  # when a run of this EVSE was last cut to a pause
    # PV surplus hysteresis (core.allocator, docs/load-management.md "PV surplus"):
    surplus_cover_since_s: float | None = None  # not running: since when surplus covers min
    surplus_low_since_s: float | None = None  # running: since when surplus is below its min
    surplus_confirmed: bool = False  # this run was covered by surplus on known phases
    phase_switches: int = 0  # automatic 1p/3p switches since plug-in (core.plan)
    # surplus EVSE offered current: since when it draws < SURPLUS_IDLE_MA on every phase
    surplus_idle_since_s: float | None = None


class Reason(NamedTuple):
    """Why an EVSE got what it got: the binding limit, rule or timer.

    `code` is a stable machine word (see docs/load-management.md for the list: "max_current",
    "group_limit", "site_limit", "evse_limit", "overdraft", "surplus_limit", "stale_meter",
    "priority", "rotation", "min_pause", "imbalance", "not_connected", "not_authorised",
    "not_allowed", "disabled", "com_error", "observation"); `text` is for people; `group_id` /
    `phase` name the binding node and building phase (1-3) where one applies.
    """

    code: str
    text: str
    group_id: int | None = None
    phase: int | None = None


class EvseDemand(NamedTuple):
    """What one controllable EVSE wants this cycle, after rules, overrides, budgets and auth.

    `phases_mask` is in the building frame. When `wants_charge` is false, `not_charging_reason`
    says why and the EVSE gets 0 without being "paused".
    """

    dev_id: str
    group_id: int = SITE_GROUP
    priority: int = 1
    min_ma: int = MIN_CURRENT_FLOOR_MA
    max_ma: int = 16000
    phases_mask: int = 0b111
    wants_charge: bool = True
    not_charging_reason: Reason | None = None
    surplus: bool = False  # a surplus EVSE: served first, from the surplus pool only
    arrival_order: int = 0  # plug-in order, for first-come-first-served
    session_energy_wh: int = 0  # fairness key: who charged least goes first
    max_text: str = ""  # what set max_ma (e.g. "rule 2", "override"), for the reason text
    evse_phases_mask: int | None = None  # the same phases in the EVSE's frame (None: unrotated)
    surplus_stop_delay_s: float = 0.0  # surplus EVSE: its rule's undercut time (0: the param)
    surplus_phases: int = 0  # surplus EVSE: predicted phases for the pool (0: phases_mask's)
    # surplus EVSE offered current that has not drawn for SURPLUS_IDLE_S (a full car): it keeps
    # its minimum booked on the hard limits but does not use the surplus pool (core.plan)
    surplus_idle: bool = False


@dataclass(frozen=True, slots=True)
class AllocParams:
    """Global knobs of the allocation that are not limits of a node."""

    min_pause_time_s: float = 300.0
    min_run_time_s: float = 300.0  # before a running EVSE may be rotated out for a paused one
    max_imbalance_ma: int = 20000  # 0 disables the imbalance limit
    imbalance_add: bool = False  # include the site's non-EVSE load when judging imbalance
    fcfs: bool = False  # first come first served inside a priority tier
    surplus_w: float = 0.0  # power pool that surplus EVSEs may use (W, all phases together)
    system_voltage_v: int = 230
    # PV surplus hysteresis (0 = off: a surplus EVSE follows the pool cycle by cycle)
    surplus_start_delay_s: float = 0.0  # the pool must cover the minimum this long to start
    surplus_stop_delay_s: float = 0.0  # below the minimum: hold it this long (EVSE's own wins)
    surplus_step_ma: int = 1  # a surplus EVSE bound by the pool is rounded down to this step


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One allocation problem: the limit tree, the demands, the knobs, the previous timers."""

    now_s: float
    groups: tuple[GroupSpec, ...]
    evses: tuple[EvseDemand, ...]
    params: AllocParams = field(default_factory=AllocParams)
    timers: Mapping[str, EvseTimers] = field(default_factory=dict)


class Setpoint(NamedTuple):
    """What to write to one EVSE, and why.

    `current_ma` is 0 (not charging) or between the EVSE's min and max; `phases_mask` is in the
    EVSE's own frame. `paused` means it wants to charge but may not now (shortage, rotation,
    imbalance, minimum pause) and `pause_reason` is then that cause's code. `unlimited` is set
    only for a disabled EVSE under disable_policy −1 ("remove all limits"). `one_phase` is
    set only for an EVSE that can switch phases now (`EvseInput.phase_switching`).
    """

    dev_id: str
    current_ma: int
    phases_mask: int
    paused: bool
    reason: Reason
    pause_reason: str = ""
    unlimited: bool = False
    one_phase: bool | None = None  # switchable EVSE: True 1p, False 3p; None = leave as is


@dataclass(frozen=True, slots=True)
class Allocation:
    """The allocator's answer: one setpoint per demand and the timers for the next cycle."""

    setpoints: dict[str, Setpoint]
    timers: dict[str, EvseTimers]
