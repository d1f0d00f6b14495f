"""The transaction log: one row per charging transaction, durable from its first second.

A transaction runs from plug-in to unplug, or, with the parameter `ta_on_charging`, from charging
start to charging end. The control cycle calls `TransactionLog.observe()` for every EVSE on every
cycle; the log opens a row when a transaction starts and commits it at once, keeps the energy and
the charging time up to date in memory, writes them at most every `write_interval_s` seconds
(all running transactions and the budget consumption charged from them in one SQLite
transaction), and closes the row on unplug. A crash therefore loses at most the last few seconds
of energy, never a transaction.

Energy is counted from the differences of the EVSE's meter reading between observations, so a
meter that restarts from zero (or a process restart) never produces negative or doubled energy.

After a restart, rows left `running` are picked up by `recover()`: the first observation of that
EVSE continues the transaction if the car is still plugged in (same EVSE, transaction still
active), otherwise the row is closed as `interrupted` at its last written time. Rows whose EVSE is
not observed within `ORPHAN_GRACE_S` of the first observation are closed as interrupted too.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any

from chargebrain.store.db import Store
from chargebrain.users.budgets import BudgetLedger, BudgetSpec, write_rows

RUNNING = "running"
CLOSED = "closed"
INTERRUPTED = "interrupted"
ORPHAN_GRACE_S = 60.0
MAX_STEP_S = 300.0  # longer gaps between observations are not counted as charging time

_COLUMNS = ("id, dev_id, user_id, user_name, rfid, start_ts, end_ts, start_wh, end_wh, "
            "energy_wh, charging_s, status, updated_ts, note")

BudgetResolver = Callable[[str | None, str | None], tuple[str, BudgetSpec] | None]


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """One row of the log. Times are unix seconds; meter readings and energy in Wh."""

    id: int
    dev_id: str
    user_id: str | None
    user_name: str
    rfid: str | None
    start_ts: float
    end_ts: float | None
    start_wh: int
    end_wh: int
    energy_wh: int
    charging_s: float
    status: str
    updated_ts: float
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The API form (`get_transactions`)."""
        end = self.end_ts if self.end_ts is not None else self.updated_ts
        return {
            "id": self.id, "dev_id": self.dev_id, "user_id": self.user_id,
            "user_name": self.user_name, "rfid": self.rfid,
            "start": int(self.start_ts), "end": None if self.end_ts is None else int(self.end_ts),
            "duration_s": int(max(0.0, end - self.start_ts)),
            "charging_s": int(self.charging_s),
            "start_wh": self.start_wh, "end_wh": self.end_wh, "energy_wh": self.energy_wh,
            "status": self.status, "note": self.note,
        }


@dataclass(slots=True)
class _Last:
    """The previous observation of one EVSE (for energy and time differences)."""

    energy_wh: int | None
    now_s: float
    plugged: bool
    charging: bool
    rfid: str | None = None
    user_id: str | None = None


class TransactionLog:
    """The transaction table plus the running transactions of this process."""

    def __init__(self, store: Store, *, on_charging: Callable[[], bool] = lambda: False,
                 ledger: BudgetLedger | None = None, budget_for: BudgetResolver | None = None,
                 name_of: Callable[[str], str] | None = None,
                 write_interval_s: float = 5.0) -> None:
        self._store = store
        self._on_charging = on_charging
        self._ledger = ledger
        self._budget_for = budget_for
        self._name_of = name_of or (lambda _uid: "")
        self.write_interval_s = write_interval_s
        self._running: dict[str, TransactionRecord] = {}
        self._dirty: set[str] = set()
        self._last: dict[str, _Last] = {}
        self._orphans: dict[str, TransactionRecord] = {}
        self._first_observe_s: float | None = None
        self._last_write_s: float | None = None
        # told each finished transaction, after it is stored (the MQTT `ta_log`)
        self.on_finished: list[Callable[[TransactionRecord], None]] = []

    # -- start-up -----------------------------------------------------------------------------

    def recover(self) -> int:
        """Pick up rows a previous process left `running`; returns how many."""
        rows = self._store.conn.execute(
            f"SELECT {_COLUMNS} FROM transactions WHERE status=? ORDER BY id", (RUNNING,))
        for row in rows:
            record = _record(row)
            older = self._orphans.get(record.dev_id)
            if older is not None:  # only the newest can still be running
                self._close_now(older, INTERRUPTED, older.updated_ts)
            self._orphans[record.dev_id] = record
        return len(self._orphans)

    # -- the cycle's entry point --------------------------------------------------------------

    def observe(self, dev_id: str, plugged: bool, charging: bool, energy_wh: float | None,
                rfid: str | None, user_id: str | None, now: float) -> TransactionRecord | None:
        """Record one observation of an EVSE; returns its running transaction, if any.

        `energy_wh` is the EVSE's meter reading (None when it has none this cycle); `rfid` and
        `user_id` identify the session (None while unknown).
        """
        if self._first_observe_s is None:
            self._first_observe_s = now
        reading = None if energy_wh is None else int(energy_wh)
        last = self._last.get(dev_id)
        delta_wh, delta_s = _step(last, reading, now)
        self._last[dev_id] = _Last(reading if reading is not None else
                                   (last.energy_wh if last else None), now, plugged, charging,
                                   rfid, user_id)
        if (delta_wh or delta_s) and self._ledger is not None and self._budget_for is not None:
            # The interval belongs to the session seen at its start (at unplug the cycle may
            # already have forgotten who it was).
            ident = (rfid, user_id) if (rfid or user_id) or last is None else (last.rfid,
                                                                              last.user_id)
            owner = self._budget_for(*ident)
            if owner is not None:
                self._ledger.charge(owner[0], owner[1], delta_wh, delta_s, now)
        active = charging if self._on_charging() else plugged
        run = self._running.get(dev_id)
        if run is None and dev_id in self._orphans:
            run = self._adopt_or_close(dev_id, active, reading, now)
        if run is None:
            if active:
                self._open(dev_id, reading, rfid, user_id, now)
        elif not active:
            self._advance(run, delta_wh, delta_s, reading, now)
            self._close_running(dev_id, now)
        else:
            run = self._advance(run, delta_wh, delta_s, reading, now)
            new_user, new_rfid = user_id or run.user_id, rfid or run.rfid
            if (new_user, new_rfid) != (run.user_id, run.rfid):
                name = self._name_of(new_user) if new_user != run.user_id else run.user_name
                self._running[dev_id] = replace(run, user_id=new_user, rfid=new_rfid,
                                                user_name=name or "")
                self._commit(now)  # who charged is written at once
        if self._orphans and now - self._first_observe_s >= ORPHAN_GRACE_S:
            self.close_orphans()
        if self._last_write_s is None or now - self._last_write_s >= self.write_interval_s:
            self.flush(now)
        return self._running.get(dev_id)

    def _open(self, dev_id: str, reading: int | None, rfid: str | None, user_id: str | None,
              now: float) -> None:
        start_wh = reading if reading is not None else 0
        name = self._name_of(user_id) if user_id else ""
        with self._store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO transactions(dev_id, user_id, user_name, rfid, start_ts, end_ts,"
                " start_wh, end_wh, energy_wh, charging_s, status, updated_ts, note)"
                " VALUES (?, ?, ?, ?, ?, NULL, ?, ?, 0, 0, ?, ?, '')",
                (dev_id, user_id, name, rfid, now, start_wh, start_wh, RUNNING, now))
            row_id = int(cur.lastrowid or 0)
            self._write_dirty(conn, now)
        self._running[dev_id] = TransactionRecord(
            row_id, dev_id, user_id, name, rfid, now, None, start_wh, start_wh, 0, 0.0,
            RUNNING, now)

    def _advance(self, run: TransactionRecord, delta_wh: int, delta_s: float,
                 reading: int | None, now: float) -> TransactionRecord:
        run = replace(run, energy_wh=run.energy_wh + delta_wh,
                      charging_s=run.charging_s + delta_s,
                      end_wh=reading if reading is not None else run.end_wh, updated_ts=now)
        self._running[run.dev_id] = run
        self._dirty.add(run.dev_id)
        return run

    def _close_running(self, dev_id: str, now: float) -> None:
        run = self._running.pop(dev_id)
        self._dirty.discard(dev_id)
        self._close_now(run, CLOSED, now)

    def _close_now(self, run: TransactionRecord, status: str, end_ts: float) -> None:
        finished = replace(run, status=status, end_ts=end_ts, updated_ts=end_ts)
        with self._store.transaction() as conn:
            _update(conn, finished)
            self._write_dirty(conn, end_ts)
        for callback in list(self.on_finished):
            callback(finished)

    def _adopt_or_close(self, dev_id: str, active: bool, reading: int | None,
                        now: float) -> TransactionRecord | None:
        orphan = self._orphans.pop(dev_id)
        if not active:
            self._close_now(orphan, INTERRUPTED, orphan.updated_ts)
            return None
        # Continue: count energy from the meter reading the row last recorded.
        # What the car drew while nobody was counting; nothing if the meter restarted.
        gap_ok = reading is not None and reading >= orphan.end_wh
        delta = reading - orphan.end_wh if gap_ok and reading is not None else 0
        note = (orphan.note + "; " if orphan.note else "") + "resumed after restart"
        run = replace(orphan, energy_wh=orphan.energy_wh + delta,
                      end_wh=reading if reading is not None else orphan.end_wh,
                      updated_ts=now, note=note)
        self._running[dev_id] = run
        self._dirty.add(dev_id)
        self._commit(now)
        return run

    def device_removed(self, dev_id: str, now: float) -> None:
        """The EVSE was deleted: close its running transaction (nobody will observe it)."""
        run = self._running.get(dev_id)
        if run is not None:
            self._running[dev_id] = replace(run, note=(run.note + "; " if run.note else "")
                                            + "device removed")
            self._close_running(dev_id, now)
        self._last.pop(dev_id, None)

    def close_orphans(self) -> int:
        """Close every recovered row whose EVSE was not seen again, as interrupted."""
        count = 0
        for dev_id in list(self._orphans):
            orphan = self._orphans.pop(dev_id)
            self._close_now(orphan, INTERRUPTED, orphan.updated_ts)
            count += 1
        return count

    # -- writing ------------------------------------------------------------------------------

    def flush(self, now: float) -> None:
        """Write every running transaction's progress and the budget consumption now."""
        self._commit(now)

    def _commit(self, now: float) -> None:
        with self._store.transaction() as conn:
            self._write_dirty(conn, now)

    def _write_dirty(self, conn: Any, now: float) -> None:
        for dev_id in sorted(self._dirty):
            run = self._running.get(dev_id)
            if run is not None:
                _update(conn, run)
        self._dirty.clear()
        if self._ledger is not None:
            write_rows(conn, self._ledger.take_dirty())
        self._last_write_s = now

    # -- reading ------------------------------------------------------------------------------

    def running(self, dev_id: str) -> TransactionRecord | None:
        """The transaction currently running at `dev_id` (with its live energy)."""
        return self._running.get(dev_id)

    def query(self, *, user_id: str | None = None, dev_id: str | None = None,
              since: float | None = None, until: float | None = None) -> list[TransactionRecord]:
        """Transactions, oldest first, optionally filtered by user, EVSE and start time."""
        sql = f"SELECT {_COLUMNS} FROM transactions WHERE 1=1"
        args: list[Any] = []
        for column, op, value in (("user_id", "=", user_id), ("dev_id", "=", dev_id),
                                  ("start_ts", ">=", since), ("start_ts", "<", until)):
            if value is not None:
                sql += f" AND {column} {op} ?"
                args.append(value)
        records = [_record(row) for row in self._store.conn.execute(sql + " ORDER BY id", args)]
        live = {run.id: run for run in self._running.values()}
        return [live.get(r.id, r) for r in records]


def _step(last: _Last | None, reading: int | None, now: float) -> tuple[int, float]:
    """Energy and charging time since the previous observation, counted only when a car was
    plugged in at that observation (the interval belongs to its session)."""
    if last is None or not last.plugged:
        return 0, 0.0
    delta_wh = 0
    if reading is not None and last.energy_wh is not None and reading >= last.energy_wh:
        delta_wh = reading - last.energy_wh
    step_s = now - last.now_s
    delta_s = step_s if last.charging and 0 < step_s <= MAX_STEP_S else 0.0
    return delta_wh, delta_s


def _update(conn: Any, run: TransactionRecord) -> None:
    conn.execute(
        "UPDATE transactions SET user_id=?, user_name=?, rfid=?, end_ts=?, end_wh=?,"
        " energy_wh=?, charging_s=?, status=?, updated_ts=?, note=? WHERE id=?",
        (run.user_id, run.user_name, run.rfid, run.end_ts, run.end_wh, run.energy_wh,
         run.charging_s, run.status, run.updated_ts, run.note, run.id))


def _record(row: tuple[Any, ...]) -> TransactionRecord:
    (row_id, dev_id, user_id, user_name, rfid, start_ts, end_ts, start_wh, end_wh, energy_wh,
     charging_s, status, updated_ts, note) = row
    return TransactionRecord(
        int(row_id), dev_id, user_id, user_name or "", rfid, float(start_ts),
        None if end_ts is None else float(end_ts), int(start_wh),
        int(end_wh if end_wh is not None else start_wh), int(energy_wh), float(charging_s or 0),
        status, float(updated_ts if updated_ts is not None else start_ts), note or "")


CSV_COLUMNS = ("id", "dev_id", "start", "end", "duration_s", "charging_s", "start_wh", "end_wh",
               "energy_kwh", "user_id", "user_name", "rfid", "status", "note")


def to_csv(records: list[TransactionRecord], tz: tzinfo | None) -> str:
    """The log as CSV (comma-separated, one header row; local times as YYYY-MM-DD HH:MM:SS).

    Text cells that a spreadsheet would run as a formula are prefixed with `'`.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        data = record.to_json()
        writer.writerow([
            record.id, record.dev_id, _local(record.start_ts, tz),
            "" if record.end_ts is None else _local(record.end_ts, tz),
            data["duration_s"], data["charging_s"], record.start_wh, record.end_wh,
            f"{record.energy_wh / 1000:.3f}", _cell(record.user_id or ""),
            _cell(record.user_name), _cell(record.rfid or ""), record.status, _cell(record.note),
        ])
    return out.getvalue()


def _local(ts: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


__all__ = ["CLOSED", "INTERRUPTED", "RUNNING", "TransactionLog", "TransactionRecord", "to_csv"]
