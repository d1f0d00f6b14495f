"""From configuration and readings to the planner's input (`core.site.SiteInput`).

The functions here read the registry's devices (configuration, last good reading, COM status)
and the params, and build plain input records; they do no I/O. What they decide:

- **Formulas** (`max_total_current`, an EVSE's or a group's `max_charging_cur`) are evaluated
  every cycle by `ctx.formulas` (control/formula_env.py; docs/formulas.md). A formula that fails
  falls back to the safe side for its own value only: the site or group limit counts as 0 mA
  (no current for the EVSEs below), the EVSE is not allowed to charge. `notes` says why
  (cmd=explain shows it), the device's `last_error` too. Without `ctx.formulas` (tools that
  build inputs by hand) every formula fails that way.
- **Meter freshness.** A pushed (HTTP input) meter is fresh for its `com_timeout_ms`; a polled
  meter survives brief outages: it is fresh for 3 cycle periods, at least 12 s (the original's
  `com_err2`). A stale meter counts as the worst case (core.budget); a configured load meter
  that never delivered is stale, never zero.
- **Phases** (EVSE frame): a card's `used_phases`, else the configured `used_phases`, else the
  phases learned since plug-in (every phase seen drawing > 500 mA, kept until unplug), else all
  three. Assuming three phases until the car shows what it uses never under-books a phase;
  for PV surplus such an EVSE is predicted to use one phase (`phases_known` false).
- **Maximum current**: the configured one, capped by what the car/cable/wallbox reports
  (`cable_max_ma`) and by an override (`mamps`).
- Virtual meters are never inputs (they are computed from the plan); disabled meters are not
  used; disabled EVSEs are passed on (the planner books their `disable_policy` current).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chargebrain.control.formula_env import CycleFormulas
from chargebrain.control.hooks import EvseGate, EvseObservation
from chargebrain.core.site import (
    CommandSample,
    DrawSample,
    EvseInput,
    GroupInput,
    MeterInput,
    MeterRole,
    SiteSettings,
)
from chargebrain.devices import config as cfg
from chargebrain.devices.base import EvseReading, evse_capabilities
from chargebrain.devices.registry import Device, DeviceRegistry
from chargebrain.devices.types import Family
from chargebrain.units import ALL_PHASES_MASK, Phases, rotate_mask, rotate_phases

DRAW_THRESHOLD_MA = 500  # a phase carrying more than this is in use
POLLED_FRESH_MIN_S = 12.0
POLLED_FRESH_PERIODS = 3


@dataclass
class EvseSession:
    """What the cycle remembers about one plug-in (reset at unplug)."""

    plugged_since_s: float
    arrival: int  # plug-in order across all EVSEs (first come first served)
    start_energy_wh: float | None
    learned_mask: int = 0  # EVSE-frame phases seen drawing since plug-in
    charging_s: float = 0.0
    last_s: float = 0.0


class SessionTracker:
    """Plug-in sessions as the cycle sees them: arrival order, learned phases, energy, time."""

    def __init__(self) -> None:
        self._sessions: dict[str, EvseSession] = {}
        self._arrivals = 0

    def get(self, dev_id: str) -> EvseSession | None:
        return self._sessions.get(dev_id)

    def update(self, dev_id: str, reading: EvseReading | None, currents_ma: Phases,
               energy_wh: float | None, fresh: bool, now_s: float) -> EvseSession | None:
        """Follow one EVSE; a COM error (`fresh` False) keeps the session as it was."""
        session = self._sessions.get(dev_id)
        if not fresh:
            return session
        if reading is None or not reading.plugged:
            self._sessions.pop(dev_id, None)
            return None
        if session is None:
            self._arrivals += 1
            session = EvseSession(now_s, self._arrivals, energy_wh, last_s=now_s)
            self._sessions[dev_id] = session
        if reading.charging:
            session.learned_mask |= sum(1 << i for i, c in enumerate(currents_ma)
                                        if c > DRAW_THRESHOLD_MA)
            session.charging_s += max(0.0, min(now_s - session.last_s, 3600.0))
        session.last_s = now_s
        return session

    def forget_missing(self, dev_ids: set[str]) -> None:
        """Drop sessions of EVSEs that no longer exist."""
        for dev_id in list(self._sessions):
            if dev_id not in dev_ids:
                del self._sessions[dev_id]


@dataclass
class InputContext:
    """The inputs of one cycle plus what the shell needs besides the planner's input."""

    groups: list[GroupInput] = field(default_factory=list)
    meters: list[MeterInput] = field(default_factory=list)
    evses: list[EvseInput] = field(default_factory=list)
    gates: dict[str, EvseGate] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    formulas: CycleFormulas | None = None  # this cycle's formula evaluations


def int_or_zero(value: Any) -> tuple[int, bool]:
    """A configured current without formula evaluation: (value, False), or (0, True) for a
    formula."""
    if isinstance(value, bool):
        return 0, True
    if isinstance(value, int):
        return value, False
    return 0, True


def configured_ma(value: Any, key: str, notes: list[str], formulas: CycleFormulas | None,
                  device: Device | None = None) -> tuple[int, str | None]:
    """A configured current in mA: the number, or the formula's value this cycle; on a
    failure (0, why) — 0 mA is the safe side of every limit (module docstring)."""
    if formulas is not None:
        return formulas.current_ma(value, key, notes, device=device)
    ma, formula = int_or_zero(value)
    if not formula:
        return ma, None
    notes.append(f"{key} is a formula and no formula evaluation was given; 0 mA")
    return 0, "formulas are not evaluated here"


def site_settings(params: Any, notes: list[str], formulas: CycleFormulas | None = None
                  ) -> SiteSettings:
    """The planner's settings from the params (see the module docstring on formulas)."""
    max_total, _ = configured_ma(params["max_total_current"], "max_total_current", notes,
                                 formulas)
    if formulas is not None:
        formulas.names.site_limit_ma = max_total
    return SiteSettings(
        max_total_current_ma=max_total,
        max_total_cur_prc=int(params["max_total_cur_prc"]),
        reserve_current_ma=int(params["reserve_current"]),
        max_total_evse_current_ma=int(params["max_total_evse_current"]),
        system_voltage_v=int(params["system_voltage"]),
        max_imbalance_ma=int(params["max_imbalance"]),
        imbalance_add=bool(params["imbalance_add"]),
        min_pause_time_s=float(params["min_pause_time"]),
        min_run_time_s=float(params["min_run_time"]),
        fcfs=bool(params["fcfs"]),
        lb_enabled=bool(params["lb_enabled"]),
        disable_policy=int(params["disable_policy"]),
        phase_switch_delay_s=float(params["phase_switch_delay"]),
        surplus_start_delay_s=float(params["surplus_start_delay"]),
        surplus_stop_delay_s=float(params["surplus_stop_delay"]),
        surplus_step_ma=int(params["surplus_step"]),
        surplus_use_battery=bool(params["surplus_use_battery"]),
        max_phase_switches=int(params["max_phase_switches"]),
    )


def group_input(device: Device, notes: list[str], formulas: CycleFormulas | None = None
                ) -> GroupInput:
    """An `evse_group` as a node of the limit tree (a failing formula limit: 0 mA)."""
    config = device.config
    limit, _ = configured_ma(getattr(config, "max_charging_cur", 0),
                             f"{device.dev_id}.max_charging_cur", notes, formulas, device)
    if formulas is not None and not isinstance(getattr(config, "max_charging_cur", 0), int):
        formulas.names.max_currents_ma[device.dev_id] = limit
    return GroupInput(group_id=device.number, parent_id=device.parent_group,
                      max_current_ma=limit, name=config.name)


def meter_fresh_s(device: Device, period_s: float) -> float:
    """How long a meter's last good reading counts as fresh (module docstring)."""
    if device.family is Family.AJAX:
        return device.config.com_timeout_ms / 1000
    return max(POLLED_FRESH_MIN_S, POLLED_FRESH_PERIODS * period_s,
               device.config.com_timeout_ms / 1000)


def meter_input(device: Device, period_s: float, attached_to: str | None = None
                ) -> MeterInput | None:
    """A meter as planner input; None for meters that are not inputs (virtual, disabled)."""
    config = device.config
    if device.family is Family.VIRTUAL or not device.enabled:
        return None
    if not isinstance(config, cfg.MeterConfig):
        return None
    try:
        role = MeterRole(config.role)
    except ValueError:
        return None
    reading = device.status.meter_reading
    rotation = config.phase_rotation
    measured = config.phases & ALL_PHASES_MASK or ALL_PHASES_MASK
    currents: Phases | None = None
    power = 0
    if reading is not None:
        power = reading.power_w
        if reading.currents_ma is not None:
            own = tuple(c if measured >> i & 1 else 0
                        for i, c in enumerate(reading.currents_ma))
            currents = rotate_phases(own, rotation)  # type: ignore[arg-type]
    return MeterInput(
        dev_id=device.dev_id, role=role, group_id=int(config.group), currents_ma=currents,
        power_w=power, phases_mask=rotate_mask(measured, rotation), attached_to=attached_to,
        read_at_s=device.status.reading_s if reading is not None else None,
        timeout_s=meter_fresh_s(device, period_s),
    )


def observation(registry: DeviceRegistry, device: Device) -> EvseObservation:
    """The hook's view of one wallbox."""
    config = device.config
    reading = device.status.evse_reading
    measured = registry.evse_measurement(device) if reading is not None else None
    return EvseObservation(
        dev_id=device.dev_id,
        users=tuple(getattr(config, "users", ()) or ()),
        fixed_rfid=str(getattr(config, "fixed_rfid", "") or ""),
        plugged=bool(reading is not None and reading.plugged),
        charging=bool(reading is not None and reading.charging),
        energy_wh=float(measured.energy_wh) if measured is not None else None,
        rfid=reading.rfid if reading is not None else "",
        rfid_seq=reading.rfid_seq if reading is not None else None,
        fresh=reading is not None and not device.status.com_err,
    )


def evse_input(registry: DeviceRegistry, device: Device, gate: EvseGate,
               sessions: SessionTracker, now_s: float, ctx: InputContext, *,
               readings: tuple[DrawSample, ...] = (),
               commands: tuple[CommandSample, ...] = ()) -> EvseInput:
    """One wallbox as planner input (see the module docstring for phases and maxima).

    `readings` / `commands` are its recent time-stamped measurements and setpoints (the
    accounting in core.budget uses them to tell settling wallboxes from house load)."""
    config = device.config
    assert isinstance(config, cfg.EvseConfig)
    status = device.status
    reading = status.evse_reading
    fresh = reading is not None and not status.com_err
    measurement = registry.evse_measurement(device) if reading is not None else None
    currents = measurement.currents_ma if measurement is not None else (0, 0, 0)
    energy = float(measurement.energy_wh) if measurement is not None else None
    session = sessions.update(device.dev_id, reading, currents, energy, fresh, now_s)

    max_ma, max_error = configured_ma(config.max_charging_cur,
                                      f"{device.dev_id}.max_charging_cur", ctx.notes,
                                      ctx.formulas, device)
    max_reason = "" if isinstance(config.max_charging_cur, int) else "max current formula"
    allowed, not_allowed = gate.allowed, gate.reason if not gate.allowed else ""
    if max_error is not None:
        allowed, not_allowed = False, f"max current formula failed: {max_error}"
    elif ctx.formulas is not None and max_reason:
        ctx.formulas.names.max_currents_ma[device.dev_id] = max_ma
    if reading is not None and 0 < reading.cable_max_ma < max_ma:
        max_ma, max_reason = reading.cable_max_ma, "car/cable maximum"
    if gate.max_current_ma is not None and gate.max_current_ma < max_ma:
        max_ma, max_reason = gate.max_current_ma, "override"

    known = True
    if gate.phases_mask:
        mask = gate.phases_mask
    elif config.used_phases:
        mask = config.used_phases
    elif session is not None and session.learned_mask:
        mask = session.learned_mask
    else:
        mask, known = ALL_PHASES_MASK, False  # booked on all three; surplus predicts one
    com_since = status.com_err_since_s if status.com_err else None
    energy_now = energy if energy is not None else 0.0
    session_wh = 0
    if session is not None and session.start_energy_wh is not None:
        session_wh = max(0, int(energy_now - session.start_energy_wh))
    return EvseInput(
        dev_id=device.dev_id,
        group_id=int(config.group),
        enabled=device.enabled,
        connected=bool(reading is not None and reading.plugged),
        charging=bool(reading is not None and reading.charging),
        authorised=gate.authorised,
        allowed=allowed,
        not_allowed_reason=not_allowed,
        measured_ma=currents if measurement is not None else None,
        phases_mask=mask & ALL_PHASES_MASK,
        phase_rotation_deg=int(config.phase_rotation),
        # a device may need more than configured (a cascaded manager's cars' minimum)
        min_current_ma=max(int(config.min_charging_cur),
                           reading.min_current_ma if reading is not None and fresh else 0),
        max_current_ma=max(0, max_ma),
        max_reason=max_reason,
        priority=gate.priority if gate.priority is not None else int(config.prio),
        com_error_since_s=com_since,
        last_power_w=measurement.power_w if measurement is not None else 0,
        arrival_order=session.arrival if session is not None else 0,
        session_energy_wh=session_wh,
        # the box can switch at all (its driver says) and may right now (its reading says)
        phase_switching=bool(reading is not None and fresh and reading.phase_switching
                             and evse_capabilities(device.driver).phase_switching),
        readings=readings if fresh else (),
        commands=commands,
        phases_known=known,
    )


def attached_meters(registry: DeviceRegistry) -> dict[str, str]:
    """meter dev_id → the EVSE it is attached to."""
    out: dict[str, str] = {}
    for device in registry.evses():
        attach = getattr(device.config, "attach", "")
        if attach:
            out[attach] = device.dev_id
    return out
