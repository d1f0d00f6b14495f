"""The pure input and output of one planning step (`core.plan.plan`).

The control cycle fills a `SiteInput` from the configuration (params, devices) and the latest
device readings, passes the `PlanMemory` the previous step returned, and the current time:

    result = plan(site, memory, now_s)

`result.setpoints` says what to write to every EVSE (unless `result.write` is false:
observation mode), `result.memory` is kept for the next step, `result.diagnostics` carries the
numbers the API shows (`cons_evse_power`, `avail_evse_power`, `overdraft_cur` …).

Conventions: currents are integer mA per phase, powers integer W, times float seconds on the
caller's clock (the same clock for `now_s`, `read_at_s`, `com_error_since_s` and the memory's
timestamps). Values that may be formulas (max total current, EVSE max current, group limits)
arrive already evaluated. Rules, overrides, RFID/user budgets and authorisation are decided
elsewhere: they reach the planner as an EVSE's `max_current_ma` cap or as `allowed=False` with a
text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

from chargebrain.core.model import SITE_GROUP, EvseTimers, Setpoint
from chargebrain.units import ZERO, Phases


class MeterRole(IntEnum):
    """A meter's role (`role` in get_dev_info): what its reading means for load management."""

    DISPLAY = 0  # shown only, no effect on control
    CONSUMPTION = 1  # a consumer below its group: load
    PRODUCTION = 2  # a generator below its group: negative load, and surplus
    GRID = 3  # the bidirectional meter at the group's (or site's) connection: everything below
    EV = 4  # an EVSE's meter (attached to the EVSE), or a meter summing EV consumption
    STORAGE_HOME = 5  # battery that serves the home only (+ charging, − discharging)
    STORAGE_ALL = 6  # battery whose discharge may also feed cars


class DisablePolicy(IntEnum):
    """What a disabled EVSE is left with (param `disable_policy`)."""

    UNLIMITED = -1
    OFF = 0
    MIN_CURRENT = 1


@dataclass(frozen=True, slots=True)
class SiteSettings:
    """The global parameters that shape the plan (params of the same names, units in names)."""

    max_total_current_ma: int = 32000  # per phase, formula already evaluated
    max_total_cur_prc: int = 100  # share of max_total_current usable now (%)
    reserve_current_ma: int = 0
    max_total_evse_current_ma: int = 0  # cap on all EVSEs together, per phase; 0 = none
    system_voltage_v: int = 230
    max_imbalance_ma: int = 20000  # 0 = no imbalance limit
    imbalance_add: bool = False  # judge imbalance including the non-EVSE load
    min_pause_time_s: float = 300.0
    min_run_time_s: float = 300.0
    fcfs: bool = False  # first come first served inside a priority tier
    lb_enabled: bool = True  # False: observation mode, compute but never write
    disable_policy: int = DisablePolicy.MIN_CURRENT
    overdraft_hold_s: float = 300.0  # how long an overdraft cuts the budget
    com_error_grace_s: float = 180.0  # after this, a silent EVSE's last power is booked as load
    phase_switch_delay_s: float = 300.0  # 3p must fit this long before a 1p EVSE goes back
    settle_s: float = 5.0  # how long a car may take to follow a new setpoint (accounting)
    response_s: float = 0.1  # how soon, at the earliest, a new setpoint shows in a reading
    silent_s: float = 0.5  # a car unseen this long before a grid reading may have stopped since
    # PV surplus (docs/load-management.md "PV surplus"); the params' defaults differ (60/300/
    # 100/4): these defaults keep the bare planner free of hysteresis
    surplus_start_delay_s: float = 0.0
    surplus_stop_delay_s: float = 0.0  # used when an EVSE has no own (rule) stop delay
    surplus_step_ma: int = 1
    surplus_use_battery: bool = False  # True: home-battery (role 5) discharge counts too
    max_phase_switches: int = 0  # automatic 1p/3p switches per session; 0 = no cap


@dataclass(frozen=True, slots=True)
class GroupInput:
    """An `evse_group` device E<n>: group n, nested under `parent_id` (0 = the site)."""

    group_id: int
    parent_id: int = SITE_GROUP
    max_current_ma: int | None = None  # per phase (`max_charging_cur`); None = no own limit
    name: str = ""


@dataclass(frozen=True, slots=True)
class MeterInput:
    """One meter's latest good reading and what it measures.

    `currents_ma` are signed per-phase currents in the building frame (the meter's own phase
    rotation already applied); positive = import/consumption, except for PRODUCTION meters where
    positive = generation. A meter that only reports power gives `currents_ma=None`: its power is
    then spread evenly over `phases_mask`. `read_at_s` is when the last good reading arrived
    (None = never); older than `timeout_s` means stale, and a stale meter counts as the worst
    case (docs/load-management.md). An EV meter attached to an EVSE (`attached_to`) is that
    EVSE's measurement: the cycle copies it into `EvseInput.measured_ma`.
    """

    dev_id: str
    role: MeterRole
    group_id: int = SITE_GROUP
    currents_ma: Phases | None = None
    power_w: int = 0
    phases_mask: int = 0b111
    attached_to: str | None = None
    read_at_s: float | None = None
    timeout_s: float = 30.0

    def is_stale(self, now_s: float) -> bool:
        """True when no good reading arrived within `timeout_s` before `now_s`."""
        return self.read_at_s is None or now_s - self.read_at_s > self.timeout_s


class DrawSample(NamedTuple):
    """One time-stamped measurement of what an EVSE draws (EVSE frame, mA per phase)."""

    at_s: float
    currents_ma: Phases
    plugged: bool = True  # a car was connected (one that is not draws nothing, whatever it is told)


class CommandSample(NamedTuple):
    """One setpoint handed to an EVSE, and when (0 mA = charging off)."""

    at_s: float
    current_ma: int


@dataclass(frozen=True, slots=True)
class EvseInput:
    """One EVSE (wallbox, OCPP connector, slave charging manager) as the cycle sees it.

    Phases are in the EVSE's own frame: `phases_mask` (bit0 = its L1) are the phases the car
    draws on, `phase_rotation_deg` (0/120/240) says where the box's L1 is wired in the building.
    `measured_ma` are the EVSE's own (or attached meter's) per-phase currents, same frame; None
    when it has no fresh measurement: it then counts as drawing what it was offered last cycle
    while `charging`. `min_current_ma` / `max_current_ma` are already evaluated (formulas, rules,
    overrides, budgets); `allowed=False` with `not_allowed_reason` blocks charging (rule says 0,
    budget used up, override "charging disabled"). `com_error_since_s` is when the EVSE stopped
    answering (None = it answers); `last_power_w` is its last known charging power.
    `phase_switching` says the box can switch the car to its L1 alone now; `phases_mask` is
    then the car's 3-phase mask and the planner decides the phases (core.plan).
    """

    dev_id: str
    group_id: int = SITE_GROUP
    enabled: bool = True
    connected: bool = False
    charging: bool = False
    authorised: bool = True
    allowed: bool = True
    not_allowed_reason: str = ""
    measured_ma: Phases | None = None
    phases_mask: int = 0b111
    phase_rotation_deg: int = 0
    min_current_ma: int = 6000
    max_current_ma: int = 16000
    max_reason: str = ""  # what capped max_current_ma (e.g. "rule", "override"), for reasons
    priority: int = 1
    surplus: bool = False
    com_error_since_s: float | None = None
    last_power_w: int = 0
    arrival_order: int = 0
    session_energy_wh: int = 0
    phase_switching: bool = False  # the wallbox can switch between 1 and 3 phases now
    # surplus: its rule's undercut time (s; 0 = param surplus_stop_delay); `phases_known`
    # false = `phases_mask` is only the safe assumption (all three, nothing learned yet):
    # the surplus is then predicted for one phase (docs "PV surplus")
    surplus_stop_delay_s: float = 0.0
    phases_known: bool = True
    forced_phases: int = 0  # switchable box: 1 or 3 forced (override, switch_phases); 0 auto
    # Recent history for the accounting (core.budget.draw_bounds_ma), oldest first: the last
    # measurements (the newest is `measured_ma`) and the last setpoints handed to the EVSE.
    readings: tuple[DrawSample, ...] = ()
    commands: tuple[CommandSample, ...] = ()


@dataclass(frozen=True, slots=True)
class SiteInput:
    """Everything one planning step needs to know about the site right now.

    `surplus_w` is the PV surplus when a surplus formula provides it; None = the planner derives
    it from the meters (−grid + EV power, storage per its role).
    """

    settings: SiteSettings = field(default_factory=SiteSettings)
    groups: tuple[GroupInput, ...] = ()
    meters: tuple[MeterInput, ...] = ()
    evses: tuple[EvseInput, ...] = ()
    surplus_w: int | None = None


@dataclass(frozen=True, slots=True)
class PlanMemory:
    """What one planning step hands to the next (persist it if pauses must survive restarts).

    `evses` holds per-EVSE timers (pause start, run start, last offered current);
    `overdraft_penalty_ma` is cut from the site budget on every phase until
    `overdraft_until_s`; `non_evse_ma` is the non-EVSE load each grid-metered node was last
    booked with, kept while new readings do not tell it apart from wallboxes still settling
    (core.budget.node_loads).
    """

    evses: Mapping[str, EvseTimers] = field(default_factory=dict)
    overdraft_penalty_ma: int = 0
    overdraft_until_s: float | None = None
    # per node with a grid meter: the measured non-EVSE load the last step settled on
    non_evse_ma: Mapping[int, Phases] = field(default_factory=dict)


class NodeDiagnostics(NamedTuple):
    """Per-phase accounting of one node of the limit tree after planning."""

    group_id: int
    parent_id: int | None
    limit_ma: Phases  # the node's limit (site: the budget); UNLIMITED_MA when it has none
    non_evse_ma: Phases  # uncontrolled load below the node (worst case if `stale`)
    allocated_ma: Phases  # sum of the new setpoints of controlled EVSEs below the node
    headroom_ma: Phases  # room left for EVSEs (negative: overloaded by non-EVSE load)
    stale: bool = False
    evse_limit_ma: Phases | None = None  # site only: max_total_evse_current when set


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """The numbers the API publishes about the last planning step."""

    site_budget_ma: Phases = ZERO  # max_total × prc − reserve − penalty, per phase
    evse_budget_ma: Phases = ZERO  # what EVSEs may use at the site before allocation
    non_evse_ma: Phases = ZERO  # site non-EVSE load per phase
    overdraft_ma: int = 0  # overdraft seen this step (record max into overdraft_cur)
    overdraft_penalty_ma: int = 0  # penalty active during this step
    cons_evse_power_w: int = 0  # what the EVSEs draw now
    avail_evse_power_w: int = 0  # what the EVSEs could draw at the site (all phases)
    grid_power_w: int | None = None  # site grid meter (None: no fresh grid meter)
    consumption_power_w: int = 0  # consumption without EVSEs
    production_power_w: int = 0
    surplus_w: int = 0
    error_power_w: int = 0  # booked load of EVSEs in COM error
    imbalance_ma: int = 0  # max − min phase load as judged by the imbalance rule
    nodes: Mapping[int, NodeDiagnostics] = field(default_factory=dict)
    # controlled EVSEs: (their node, the building phases a setpoint of theirs loads)
    evse_phases: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlanResult:
    """The answer of one planning step.

    `write` is False in observation mode: setpoints are informational and must not be written.
    """

    setpoints: Mapping[str, Setpoint]
    memory: PlanMemory
    diagnostics: Diagnostics
    write: bool = True
