"""The authorisation gate: may this EVSE charge now, as far as users, overrides and budgets go?

`gate()` is pure. The control cycle calls it once per EVSE and cycle with the EVSE's
configuration, its current session and a snapshot of users and budget consumption, and feeds the
result into the allocator's demand (`wants_charge`, the cap, the priority, the phases).

Rules (spec section 6, feature inventory B.5):
- An EVSE with at least one assigned user (`users` in its configuration) charges only while its
  session was identified by one of those users (user id, PIN/RFID with `ac_auth`, a card the
  wallbox reported, or the EVSE's `fixed_rfid`). An EVSE without assigned users charges freely;
  a credential presented there still names the session (log, priority, phases, budget).
- Override C stops charging until `c` or unplug; `mamps` caps the current.
- A budget (the card's while it has one, else the user's) that is used up stops charging.
- The card's priority replaces the user's, which replaces the EVSE's; a card's `used_phases`
  replaces the phases the EVSE would assume.
- Charging rules: the card's `charging_rules` when it has any, else the user's, are handed on
  (`rules`, `rules_owner`); the control cycle evaluates them beside the EVSE's own and the lower
  result wins (control.rules_stage). Override U (`user_rules` False) switches them off, E
  (`evse_rules` False) the EVSE's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from chargebrain.users.budgets import BudgetUse, budget_owner, remaining
from chargebrain.users.model import Rfid, User
from chargebrain.users.sessions import Session

REASON_AUTH = "auth"
REASON_OVERRIDE = "override"
REASON_BUDGET = "budget"

_TEXTS = {
    REASON_AUTH: "waiting for authorisation (RFID/PIN)",
    REASON_OVERRIDE: "charging disabled by override",
    REASON_BUDGET: "budget used up",
}


@dataclass(frozen=True, slots=True)
class EvseAuth:
    """The parts of an EVSE's configuration the gate reads."""

    dev_id: str
    users: tuple[str, ...] = ()  # assigned user ids; empty = free charging
    fixed_rfid: str = ""  # used as the session's card when none was presented at plug-in

    @classmethod
    def from_config(cls, dev_id: str, config: Mapping[str, Any] | Any) -> EvseAuth:
        """Read `users` and `fixed_rfid` from a device configuration (a JSON object, or the
        registry's configuration model)."""
        if isinstance(config, Mapping):
            users, fixed = config.get("users"), config.get("fixed_rfid")
        else:
            users, fixed = getattr(config, "users", None), getattr(config, "fixed_rfid", None)
        users = users or ()
        fixed = fixed or ""
        return cls(dev_id, tuple(str(u) for u in users if str(u)),
                   fixed if isinstance(fixed, str) else str(fixed))

    @property
    def needs_auth(self) -> bool:
        """Charging here needs an assigned user's credential."""
        return bool(self.users)


@dataclass(frozen=True, slots=True)
class Gate:
    """What users, overrides and budgets say about one EVSE this cycle."""

    may_charge: bool
    reason: str = ""  # stable code when not: "auth", "override", "budget"
    max_ma: int | None = None  # cap from override `mamps`; None = no cap
    priority: int | None = None  # replaces the EVSE priority; None = keep
    phases_mask: int | None = None  # phases to assume (card `used_phases`); None = keep
    needs_auth: bool = False  # a car is plugged in and waits for a credential
    user_id: str | None = None
    rfid: str | None = None
    overrides: int = 0  # bit0 C, bit1 E, bit2 U
    ov_cur: int = 0  # override current in mA, 0 = none
    forced_phases: int = 0  # override 1 or 3 phases (switchable box), 0 = automatic
    evse_rules: bool = True  # False while override E is active
    user_rules: bool = True  # False while override U is active
    label: str = ""  # name to show on the EVSE tile ("" = none)
    budget_left: float | None = None  # kWh or minutes left; None = no budget
    rules: tuple[Any, ...] = ()  # the card's (else the user's) charging rules, checked JSON
    rules_owner: str = ""  # whose rules they are, for reasons ("user 3", "RFID card Blue")

    @property
    def reason_text(self) -> str:
        """The reason for people (pause_reason / lreason)."""
        return _TEXTS.get(self.reason, "")


def gate(evse: EvseAuth, session: Session | None, users: Mapping[str, User],
         budget_uses: Mapping[str, BudgetUse], now_s: float, tz: tzinfo | None) -> Gate:
    """Decide whether `evse` may charge now (see the module docstring for the rules)."""
    if session is None:
        # Nothing plugged in: say what the next session would need (nobody waits yet).
        return Gate(False, REASON_AUTH) if evse.needs_auth else Gate(True)
    user = users.get(session.user_id) if session.user_id else None
    card = user.rfid(session.rfid) if user is not None and session.rfid else None
    common = {
        "overrides": session.overrides,
        "ov_cur": session.mamps or 0,
        "max_ma": session.mamps,
        "forced_phases": session.phases or 0,
        "evse_rules": not session.evse_rules_off,
        "user_rules": not session.user_rules_off,
        "rfid": session.rfid,
    }
    if evse.needs_auth and (user is None or user.id not in evse.users):
        return Gate(False, REASON_AUTH, needs_auth=True, **common)
    identity = {
        "user_id": user.id if user else None,
        "priority": _priority(user, card),
        "phases_mask": card.used_phases if card is not None and card.used_phases else None,
        "label": _label(user, card),
        **_rules(user, card),
    }
    budget_left = None
    owner = budget_owner(user, card)
    if owner is not None:
        key, spec = owner
        budget_left = remaining(spec, budget_uses.get(key, BudgetUse()), now_s, tz)
    if session.charging_disabled:
        return Gate(False, REASON_OVERRIDE, budget_left=budget_left, **identity, **common)
    if budget_left is not None and budget_left <= 0:
        return Gate(False, REASON_BUDGET, budget_left=budget_left, **identity, **common)
    return Gate(True, budget_left=budget_left, **identity, **common)


def _priority(user: User | None, card: Rfid | None) -> int | None:
    if card is not None and card.prio is not None:
        return card.prio
    return user.prio if user is not None else None


def _rules(user: User | None, card: Rfid | None) -> dict[str, Any]:
    if card is not None and card.charging_rules:
        return {"rules": card.charging_rules, "rules_owner": f"RFID card {card.name or '?'}"}
    if user is not None and user.charging_rules:
        return {"rules": user.charging_rules, "rules_owner": f"user {user.name or user.id}"}
    return {}


def _label(user: User | None, card: Rfid | None) -> str:
    if card is not None and card.name:
        return card.name
    if user is not None and user.display:
        return user.name
    return ""


def waiting_evses(evses: Sequence[EvseAuth], sessions: Mapping[str, Session],
                  user_id: str) -> list[str]:
    """EVSEs with a car plugged in that wait for authorisation and that `user_id` may use."""
    return [e.dev_id for e in evses
            if e.needs_auth and user_id in e.users
            and (s := sessions.get(e.dev_id)) is not None
            and (s.user_id is None or s.user_id not in e.users)]
