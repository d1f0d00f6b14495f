"""Users, their RFIDs/PINs and budgets: the data, its JSON form, and validation.

A user object on the wire is the seed's (`id`, `name`, `display`, `dev_ids`, `rfids` with `id`,
`name`, `ac_auth`, `ac_ovch`, `used_phases`, `charging_rules`) plus the settings the original only
shows in its UI, under names we chose: `show_tile`, `prio`, `budget`, and per RFID `prio`,
`valid_until`, `max_uses`, `uses`, `budget`. Everything here is pure: parsing never touches the
store, so a request with one bad field changes nothing.

`dev_ids` is not stored on the user: the EVSEs' `users` lists are the one source of truth, and
`dev_ids` is derived from them when a user is shown (see `users.service`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from chargebrain.core.rules import RuleError, rules_to_json, validate_rules
from chargebrain.users.budgets import RESETS, BudgetSpec

ID_RE = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")
MAX_NAME_LEN = 128
MAX_RFIDS = 100
MAX_RULES_JSON = 64 * 1024
MAX_PRIO = 100

USER_KEYS = {"id", "name", "display", "show_tile", "dev_ids", "prio", "budget", "rfids",
             "charging_rules"}
RFID_KEYS = {"id", "name", "ac_auth", "ac_ovch", "used_phases", "prio", "valid_until",
             "max_uses", "uses", "budget", "charging_rules"}
BUDGET_KEYS = {"reset", "day", "amount", "time_budget", "used", "clear_used"}


class UserError(ValueError):
    """A user object was refused; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Rfid:
    """One RFID card or PIN of a user. `id` is the secret the card or keypad sends."""

    id: str
    name: str = ""
    ac_auth: bool = True  # presenting it authorises charging
    ac_ovch: bool = False  # presenting it during a session toggles "charging disabled"
    used_phases: int = 0  # phase mask to assume while this card is active; 0 = keep
    prio: int | None = None  # replaces the EVSE priority while active; None = keep
    valid_until: int = 0  # unix s after which it no longer authorises; 0 = unlimited
    max_uses: int = 0  # authorisations allowed in total; 0 = unlimited
    uses: int = 0  # authorisations so far (maintained by the system)
    budget: BudgetSpec | None = None  # replaces the user's budget while this card is active
    charging_rules: tuple[Any, ...] = ()

    def usable(self, now_s: float) -> str:
        """Why this card cannot authorise now ("" if it can)."""
        if self.valid_until and now_s > self.valid_until:
            return "card expired"
        if self.max_uses and self.uses >= self.max_uses:
            return "card has no uses left"
        return ""


@dataclass(frozen=True, slots=True)
class User:
    """A user: their settings, cards/PINs and budget (`dev_ids` lives on the EVSEs)."""

    id: str
    name: str = ""
    display: bool = True  # the name may be shown on the EVSE tile while plugged in
    show_tile: bool = True  # the user's EVSE tile is visible to others
    prio: int | None = None  # replaces the EVSE priority while this user charges; None = keep
    budget: BudgetSpec | None = None
    rfids: tuple[Rfid, ...] = ()
    charging_rules: tuple[Any, ...] = ()

    def rfid(self, rfid_id: str) -> Rfid | None:
        """The card with exactly this id, or None."""
        for card in self.rfids:
            if card.id == rfid_id:
                return card
        return None

    def secrets(self) -> list[str]:
        """Every credential string of this user: the user id and each RFID/PIN."""
        return [self.id, *(card.id for card in self.rfids)]


# -- admin-only parts -------------------------------------------------------------------------

def admin_view(user: User) -> dict[str, Any]:
    """The settings only the admin may change (the user may change the rest of their object)."""
    return {
        "prio": user.prio,
        "budget": user.budget,
        "rfids": {c.id: (c.prio, c.valid_until, c.max_uses, c.budget) for c in user.rfids},
    }


def admin_changes(old: User | None, new: User) -> list[str]:
    """Names of admin-only settings that differ between `old` and `new`."""
    changed = []
    if old is None:
        old = User(id=new.id)
    if old.prio != new.prio:
        changed.append("prio")
    if old.budget != new.budget:
        changed.append("budget")
    old_cards = {c.id: c for c in old.rfids}
    for card in new.rfids:
        before = old_cards.get(card.id, Rfid(id=card.id))
        for name in ("prio", "valid_until", "max_uses", "budget"):
            if getattr(before, name) != getattr(card, name):
                changed.append(f"rfids.{name}")
    return sorted(set(changed))


# -- JSON -> model ----------------------------------------------------------------------------

def parse_user(obj: Any, existing: User | None) -> tuple[User, list[str] | None, dict[str, bool]]:
    """Validate a `set_user` body.

    Fields left out keep their stored value (`existing`), or their default for a new user.
    `rfids`, when given, replaces the list; a card that already exists keeps the fields left
    out. Returns the user, the requested `dev_ids` (None = unchanged) and the consumption
    resets asked for (`{"user": bool, "<rfid id>": bool}` from `budget.clear_used`).
    Raises UserError.
    """
    if not isinstance(obj, dict):
        raise UserError("user must be a JSON object")
    _no_unknown(obj, USER_KEYS, "user")
    uid = _id(obj.get("id"), "id")
    base = existing or User(id=uid)
    clears: dict[str, bool] = {}
    name = _text(obj, "name", base.name)
    display = _bool(obj, "display", base.display)
    show_tile = _bool(obj, "show_tile", base.show_tile)
    prio = _prio(obj, "prio", base.prio)
    budget = base.budget
    if "budget" in obj:
        budget, clears["user"] = parse_budget(obj["budget"], "budget")
    dev_ids = None
    if "dev_ids" in obj:
        dev_ids = _dev_ids(obj["dev_ids"])
    rules = _rules(obj, "charging_rules", base.charging_rules)
    rfids = base.rfids
    if "rfids" in obj:
        raw = obj["rfids"]
        if not isinstance(raw, list):
            raise UserError("rfids must be a list")
        if len(raw) > MAX_RFIDS:
            raise UserError(f"at most {MAX_RFIDS} rfids per user")
        cards = []
        seen: set[str] = set()
        for index, item in enumerate(raw):
            card, clear = _parse_rfid(item, base, index)
            key = card.id.lower()  # credentials compare case-insensitively
            if key in seen:
                raise UserError(f"rfid {card.id} appears twice")
            if key == uid.lower():
                raise UserError("an rfid must differ from the user id")
            seen.add(key)
            cards.append(card)
            clears[card.id] = clear
        rfids = tuple(cards)
    user = User(id=uid, name=name, display=display, show_tile=show_tile, prio=prio,
                budget=budget, rfids=rfids, charging_rules=rules)
    return user, dev_ids, clears


def _parse_rfid(item: Any, base: User, index: int) -> tuple[Rfid, bool]:
    where = f"rfids[{index}]"
    if not isinstance(item, dict):
        raise UserError(f"{where} must be a JSON object")
    _no_unknown(item, RFID_KEYS, where)
    rid = _id(item.get("id"), f"{where}.id")
    old = base.rfid(rid) or Rfid(id=rid)
    used_phases = _int(item, "used_phases", old.used_phases, 0, 7, where)
    budget, clear = old.budget, False
    if "budget" in item:
        budget, clear = parse_budget(item["budget"], f"{where}.budget")
    card = replace(
        old,
        name=_text(item, "name", old.name, where),
        ac_auth=_bool(item, "ac_auth", old.ac_auth, where),
        ac_ovch=_bool(item, "ac_ovch", old.ac_ovch, where),
        used_phases=used_phases,
        prio=_prio(item, "prio", old.prio, where),
        valid_until=_int(item, "valid_until", old.valid_until, 0, 2**40, where),
        max_uses=_int(item, "max_uses", old.max_uses, 0, 10**9, where),
        budget=budget,
        charging_rules=_rules(item, "charging_rules", old.charging_rules, where),
    )
    return card, clear  # `uses` is maintained by the system: a sent value is ignored


def parse_budget(raw: Any, where: str) -> tuple[BudgetSpec | None, bool]:
    """`null` (no budget) or `{"reset", "day", "amount", "time_budget"}`; `used` is read-only
    and ignored, `clear_used: true` asks to reset the consumption to 0."""
    if raw is None:
        return None, False
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be null or a JSON object")
    _no_unknown(raw, BUDGET_KEYS, where)
    reset = raw.get("reset", "once")
    if reset not in RESETS:
        raise UserError(f"{where}.reset must be one of {', '.join(RESETS)}")
    day = _int(raw, "day", 1, 1, 366, where)
    amount = raw.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) \
            or not math.isfinite(amount) or amount < 0 or amount > 10**7:
        raise UserError(f"{where}.amount must be a number from 0 to 10000000 (kWh or minutes)")
    time_budget = _bool(raw, "time_budget", False, where)
    clear = _bool(raw, "clear_used", False, where)
    return BudgetSpec(reset=reset, day=day, amount=float(amount), time_budget=time_budget), clear


def _no_unknown(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise UserError(f"unknown field {where}.{unknown[0]}")


def _id(raw: Any, where: str) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        raw = str(raw)
    if not isinstance(raw, str) or not ID_RE.match(raw):
        raise UserError(f"{where} must be 1-64 letters, digits or _.:- characters")
    return raw


def _text(obj: Mapping[str, Any], key: str, default: str, where: str = "user") -> str:
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, str):
        raise UserError(f"{where}.{key} must be a string")
    if len(value) > MAX_NAME_LEN or any(ord(ch) < 32 for ch in value):
        raise UserError(f"{where}.{key} must be at most {MAX_NAME_LEN} printable characters")
    return value


def _bool(obj: Mapping[str, Any], key: str, default: bool, where: str = "user") -> bool:
    if key not in obj:
        return default
    value = obj[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise UserError(f"{where}.{key} must be true or false")


def _int(obj: Mapping[str, Any], key: str, default: int, lo: int, hi: int,
         where: str = "user") -> int:
    if key not in obj:
        return default
    value = obj[key]
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value != int(value) or not lo <= value <= hi:
        raise UserError(f"{where}.{key} must be a whole number from {lo} to {hi}")
    return int(value)


def _prio(obj: Mapping[str, Any], key: str, default: int | None,
          where: str = "user") -> int | None:
    if key not in obj:
        return default
    if obj[key] is None:
        return None
    return _int(obj, key, 0, 0, MAX_PRIO, where)


def _dev_ids(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
        raise UserError("dev_ids must be a list of device ids")
    if len(raw) > 10000:
        raise UserError("dev_ids is too long")
    return sorted(set(raw), key=raw.index)


def _rules(obj: Mapping[str, Any], key: str, default: tuple[Any, ...],
           where: str = "user") -> tuple[Any, ...]:
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise UserError(f"{where}.{key} must be a list of rule objects")
    if len(json.dumps(value)) > MAX_RULES_JSON:
        raise UserError(f"{where}.{key} is too large")
    try:
        rules = validate_rules(value)
    except RuleError as exc:
        raise UserError(f"{where}.{exc}") from None
    return tuple(rules_to_json(rules))  # the checked form, every field filled in


# -- model -> JSON (stored form and API form) -------------------------------------------------

def budget_to_json(spec: BudgetSpec | None) -> dict[str, Any] | None:
    """The JSON form of a budget's settings (None for no budget)."""
    if spec is None:
        return None
    return {"reset": spec.reset, "day": spec.day, "amount": spec.amount,
            "time_budget": spec.time_budget}


def rfid_to_json(card: Rfid) -> dict[str, Any]:
    """The JSON form of a card (stored and API form alike)."""
    return {
        "id": card.id, "name": card.name, "ac_auth": card.ac_auth, "ac_ovch": card.ac_ovch,
        "used_phases": card.used_phases, "prio": card.prio, "valid_until": card.valid_until,
        "max_uses": card.max_uses, "uses": card.uses, "budget": budget_to_json(card.budget),
        "charging_rules": list(card.charging_rules),
    }


def user_to_json(user: User) -> dict[str, Any]:
    """The stored form (no `dev_ids`, no budget consumption: those live elsewhere)."""
    return {
        "id": user.id, "name": user.name, "display": user.display, "show_tile": user.show_tile,
        "prio": user.prio, "budget": budget_to_json(user.budget),
        "rfids": [rfid_to_json(card) for card in user.rfids],
        "charging_rules": list(user.charging_rules),
    }


def user_from_stored(data: Mapping[str, Any]) -> User:
    """Rebuild a user from its stored JSON (written by `user_to_json`)."""
    cards = tuple(
        Rfid(id=c["id"], name=c.get("name", ""), ac_auth=c.get("ac_auth", True),
             ac_ovch=c.get("ac_ovch", False), used_phases=c.get("used_phases", 0),
             prio=c.get("prio"), valid_until=c.get("valid_until", 0),
             max_uses=c.get("max_uses", 0), uses=c.get("uses", 0),
             budget=_budget_from_stored(c.get("budget")),
             charging_rules=tuple(c.get("charging_rules", ())))
        for c in data.get("rfids", ())
    )
    return User(id=data["id"], name=data.get("name", ""), display=data.get("display", True),
                show_tile=data.get("show_tile", True), prio=data.get("prio"),
                budget=_budget_from_stored(data.get("budget")), rfids=cards,
                charging_rules=tuple(data.get("charging_rules", ())))


def _budget_from_stored(raw: Mapping[str, Any] | None) -> BudgetSpec | None:
    if not raw:
        return None
    return BudgetSpec(reset=raw["reset"], day=raw.get("day", 1), amount=float(raw["amount"]),
                      time_budget=bool(raw.get("time_budget", False)))


@dataclass(frozen=True, slots=True)
class Credential:
    """A resolved user credential: the user, and the card when it was an RFID/PIN."""

    user: User
    rfid: Rfid | None = None

    @property
    def rfid_id(self) -> str | None:
        """The card's id, None when the credential was the user id."""
        return self.rfid.id if self.rfid else None

    @property
    def authorises(self) -> bool:
        """A user id always authorises; a card only with `ac_auth`."""
        return self.rfid is None or self.rfid.ac_auth
