"""Charging budgets: kWh or minutes per user or per RFID, one-off or reset periodically.

The accounting is pure (`period_start`, `roll`, `charge`, `remaining`): a budget's consumption
(`BudgetUse`) belongs to the period it was used in, and a new period starts from zero. Time is
always passed in (`now_s`, unix seconds) together with the time zone the resets follow, so tests
drive it with explicit dates.

`BudgetLedger` keeps the consumption of every budget owner in memory and knows which entries
changed since they were last written; the transaction log persists them together with the
transaction rows they were charged from (one SQLite transaction), so the two never disagree
after a crash.

Owners are named `user:<user id>` or `rfid:<rfid id>`. While a card that has its own budget is
the session's credential, that budget replaces the user's (see `budget_owner`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, tzinfo
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chargebrain.store.db import Store
    from chargebrain.users.model import Rfid, User

RESETS = ("once", "daily", "weekly", "monthly", "yearly")
BUDGET_NS = "budget"


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """What an owner may use per period: `amount` kWh, or minutes when `time_budget`.

    `reset` is one of RESETS; `day` is the day of the year (1-366) of the yearly reset.
    """

    reset: str = "once"
    day: int = 1
    amount: float = 0.0
    time_budget: bool = False


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """Consumption within the period that began at `period_start_s` (0 for one-off budgets).

    Energy and charging time are both counted, so switching a budget between kWh and minutes
    keeps a meaningful `used`.
    """

    period_start_s: float = 0.0
    used_wh: float = 0.0
    used_s: float = 0.0


def period_start(spec: BudgetSpec, now_s: float, tz: tzinfo | None) -> float:
    """Unix time at which the budget's current period began (0 for a one-off budget).

    Resets happen at local midnight (in `tz`; None = the system's local time, daylight saving
    included): daily every day, weekly on Mondays, monthly on the 1st, yearly on day `spec.day`
    of the year (day 366 means 31 December in other years).
    """
    if spec.reset == "once":
        return 0.0
    today = datetime.fromtimestamp(now_s, tz).date()
    if spec.reset == "daily":
        start = today
    elif spec.reset == "weekly":
        start = today - timedelta(days=today.weekday())
    elif spec.reset == "monthly":
        start = today.replace(day=1)
    elif spec.reset == "yearly":
        start = _day_of_year(today.year, spec.day)
        if start > today:
            start = _day_of_year(today.year - 1, spec.day)
    else:
        raise ValueError(f"unknown budget reset {spec.reset!r}")
    return datetime.combine(start, time(0), tzinfo=tz).timestamp()


def _day_of_year(year: int, day: int) -> date:
    last = date(year, 12, 31)
    return min(date(year, 1, 1) + timedelta(days=day - 1), last)


def roll(spec: BudgetSpec, use: BudgetUse, now_s: float, tz: tzinfo | None) -> BudgetUse:
    """`use` moved into the current period: a new period starts with nothing used.

    A clock that steps backwards never resets a budget (only a later period start does).
    """
    start = period_start(spec, now_s, tz)
    if start > use.period_start_s:
        return BudgetUse(period_start_s=start)
    return use


def charge(spec: BudgetSpec, use: BudgetUse, energy_wh: float, charging_s: float,
           now_s: float, tz: tzinfo | None) -> BudgetUse:
    """`use` after `energy_wh` and `charging_s` more were consumed at `now_s`."""
    current = roll(spec, use, now_s, tz)
    return replace(current, used_wh=current.used_wh + max(0.0, energy_wh),
                   used_s=current.used_s + max(0.0, charging_s))


def used_amount(spec: BudgetSpec, use: BudgetUse) -> float:
    """Consumption in the budget's own unit: kWh, or minutes for a time budget."""
    return use.used_s / 60.0 if spec.time_budget else use.used_wh / 1000.0


def remaining(spec: BudgetSpec, use: BudgetUse, now_s: float, tz: tzinfo | None) -> float:
    """What is left in this period, in kWh or minutes (never negative)."""
    return max(0.0, spec.amount - used_amount(spec, roll(spec, use, now_s, tz)))


def exhausted(spec: BudgetSpec, use: BudgetUse, now_s: float, tz: tzinfo | None) -> bool:
    """True when the budget is used up for the current period."""
    return remaining(spec, use, now_s, tz) <= 0.0


def budget_owner(user: User | None, card: Rfid | None) -> tuple[str, BudgetSpec] | None:
    """Whose budget a session uses: the card's while it has one, else the user's, else none."""
    if card is not None and card.budget is not None:
        return f"rfid:{card.id}", card.budget
    if user is not None and user.budget is not None:
        return f"user:{user.id}", user.budget
    return None


class BudgetLedger:
    """The consumption of every budget owner, with the set of entries not yet written."""

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz
        self._uses: dict[str, BudgetUse] = {}
        self._dirty: set[str] = set()

    def load(self, store: Store) -> None:
        """Read every owner's consumption from the store."""
        for owner, raw in store.kv_all(BUDGET_NS).items():
            self._uses[owner] = BudgetUse(float(raw.get("period_start_s", 0.0)),
                                          float(raw.get("used_wh", 0.0)),
                                          float(raw.get("used_s", 0.0)))

    def use(self, owner: str) -> BudgetUse:
        """The owner's stored consumption (not rolled into the current period)."""
        return self._uses.get(owner, BudgetUse())

    def view(self) -> Mapping[str, BudgetUse]:
        """Every owner's consumption as a read-only mapping (what the pure gate takes)."""
        return MappingProxyType(self._uses)

    def current(self, owner: str, spec: BudgetSpec, now_s: float) -> BudgetUse:
        """The owner's consumption in the current period (not stored by this call)."""
        return roll(spec, self.use(owner), now_s, self.tz)

    def charge(self, owner: str, spec: BudgetSpec, energy_wh: float, charging_s: float,
               now_s: float) -> None:
        """Book consumption; written with the next transaction-log flush."""
        if energy_wh <= 0 and charging_s <= 0:
            return
        self._uses[owner] = charge(spec, self.use(owner), energy_wh, charging_s, now_s, self.tz)
        self._dirty.add(owner)

    def clear(self, owner: str) -> None:
        """Forget an owner's consumption (used reset to 0, or the owner was deleted)."""
        self._uses.pop(owner, None)
        self._dirty.add(owner)

    def take_dirty(self) -> list[tuple[str, str | None]]:
        """(owner, JSON or None to delete) for every entry changed since the last call."""
        rows: list[tuple[str, str | None]] = []
        for owner in sorted(self._dirty):
            use = self._uses.get(owner)
            rows.append((owner, None if use is None else json.dumps(
                {"period_start_s": use.period_start_s, "used_wh": use.used_wh,
                 "used_s": use.used_s})))
        self._dirty.clear()
        return rows

    def restore_dirty(self, rows: list[tuple[str, str | None]]) -> None:
        """Mark entries dirty again after a failed write."""
        self._dirty.update(owner for owner, _ in rows)


def write_rows(conn: sqlite3.Connection, rows: list[tuple[str, str | None]]) -> None:
    """Write `take_dirty()` rows inside a transaction already open on `conn`."""
    for owner, value in rows:
        if value is None:
            conn.execute("DELETE FROM kv WHERE ns=? AND key=?", (BUDGET_NS, owner))
        else:
            conn.execute(
                "INSERT INTO kv(ns, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT(ns, key) DO UPDATE SET value=excluded.value",
                (BUDGET_NS, owner, value))
