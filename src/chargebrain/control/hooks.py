"""The one place where users, sessions and overrides meet the control cycle.

Every cycle, for every wallbox whose reading is fresh, the cycle hands an `EvseObservation`
(plug state, charging, energy, the card the wallbox reports) to its `UsersHook` and gets back an
`EvseGate`: may it charge (authorised? allowed?), a current cap, a priority or phases that
replace the configured ones, and what get_dev_info shows about the session (needs_auth,
overrides, ov_cur, ta_en). `control.inputs.evse_input` turns the gate into `EvseInput` fields.

Two hooks exist:
- `FreeCharging` (no users domain): an EVSE without assigned users charges freely; one with
  assigned users waits for an authorisation that nobody can give (safe default).
- `UsersLink` (the app's `UserService` and `TransactionLog`): the users domain's one call per
  EVSE and cycle, `users.cycle.observe_evse` (session events, transaction log, budgets, gate).

A hook must not raise for one EVSE in a way that stops the others: the cycle catches exceptions
per EVSE and then falls back to `FreeCharging`'s answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from chargebrain.users.cycle import observe_evse
from chargebrain.users.service import UserService
from chargebrain.users.transactions import TransactionLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EvseObservation:
    """What the cycle knows about one wallbox this cycle (EVSE frame, mA/W/Wh)."""

    dev_id: str
    users: tuple[str, ...]  # user ids assigned in the EVSE's configuration
    fixed_rfid: str
    plugged: bool
    charging: bool
    energy_wh: float | None  # meter reading (own, attached or soft meter); None = unknown
    rfid: str  # last card/PIN the wallbox reports ("" = none)
    rfid_seq: int | None  # the wallbox's card-reading counter, None = it has none
    fresh: bool  # False while the EVSE is in COM error (reading is the last good one)


@dataclass(frozen=True, slots=True)
class EvseGate:
    """What users, overrides and budgets say about one EVSE this cycle."""

    authorised: bool = True
    allowed: bool = True
    reason: str = ""  # text when not authorised / not allowed
    max_current_ma: int | None = None  # cap (override `mamps`), None = none
    priority: int | None = None  # replaces the EVSE's `prio`, None = keep
    phases_mask: int | None = None  # EVSE-frame phases to assume (card), None = keep
    needs_auth: bool = False
    overrides: int = 0  # bit0 C, bit1 E, bit2 U
    ov_cur: int = 0  # override current (mA), 0 = none
    forced_phases: int = 0  # override 1 or 3 phases (a switchable box), 0 = automatic
    ta_en: int = 0  # Wh of the running transaction
    evse_rules: bool = True  # the EVSE's charging rules apply (override E switches them off)
    user_rules: bool = True  # the user's/card's rules apply (override U switches them off)
    rules: tuple[Any, ...] = ()  # the session's user/card charging rules (checked JSON)
    rules_owner: str = ""  # whose they are ("user 3"), for reasons


class UsersHook(Protocol):
    """Turns one observation into the EVSE's gate (and keeps sessions/transactions)."""

    def evse_gate(self, obs: EvseObservation, now_s: float) -> EvseGate:
        """The gate of `obs.dev_id` at `now_s`."""
        ...


class FreeCharging:
    """No users domain: EVSEs without assigned users charge, the others wait."""

    def evse_gate(self, obs: EvseObservation, now_s: float) -> EvseGate:
        if obs.users:
            return EvseGate(authorised=False, reason="waiting for authorisation (RFID/PIN)",
                            needs_auth=True)
        return EvseGate()


class UsersLink:
    """The users domain (`app.users`, `app.transactions`) behind the cycle's hook.

    A fresh observation goes through `users.cycle.observe_evse` (sessions, the transaction
    log, budgets, the gate); during a COM error only the gate is asked, so an unanswering
    wallbox neither ends its session nor its transaction.
    """

    def __init__(self, users: UserService, transactions: TransactionLog | None) -> None:
        self.users = users
        self.transactions = transactions

    def evse_gate(self, obs: EvseObservation, now_s: float) -> EvseGate:
        config = {"users": list(obs.users), "fixed_rfid": obs.fixed_rfid}
        ta_en = 0
        if obs.fresh and self.transactions is not None:
            energy = None if obs.energy_wh is None else int(obs.energy_wh)
            gate = observe_evse(self.users, self.transactions, dev_id=obs.dev_id,
                                config=config, plugged=obs.plugged, charging=obs.charging,
                                energy_wh=energy, rfid=obs.rfid or None,
                                rfid_seq=obs.rfid_seq, now=now_s)
            run = self.transactions.running(obs.dev_id)
            ta_en = int(run.energy_wh) if run is not None else 0
        else:
            gate = self.users.gate_for(obs.dev_id, config, now_s)
        authorised = gate.may_charge or gate.reason != "auth"
        return EvseGate(
            authorised=authorised,
            allowed=gate.may_charge or not authorised,
            reason="" if gate.may_charge else gate.reason_text,
            max_current_ma=gate.max_ma,
            priority=gate.priority,
            phases_mask=gate.phases_mask or None,
            needs_auth=bool(gate.needs_auth),
            overrides=int(gate.overrides),
            ov_cur=int(gate.ov_cur or 0),
            forced_phases=int(gate.forced_phases or 0),
            ta_en=ta_en,
            evse_rules=gate.evse_rules,
            user_rules=gate.user_rules,
            rules=gate.rules,
            rules_owner=gate.rules_owner,
        )


def safe_gate(hook: UsersHook, obs: EvseObservation, now_s: float) -> EvseGate:
    """`hook.evse_gate`, or FreeCharging's answer when the hook fails (logged)."""
    try:
        return hook.evse_gate(obs, now_s)
    except Exception:
        log.exception("users hook failed for %s", obs.dev_id)
        return FreeCharging().evse_gate(obs, now_s)
