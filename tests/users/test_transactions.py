"""The transaction log against a real SQLite file, driven with explicit times."""

from __future__ import annotations

import csv
import io
from datetime import UTC

from chargebrain.store.db import Store
from chargebrain.users.budgets import BudgetLedger, BudgetSpec
from chargebrain.users.transactions import TransactionLog, to_csv

T0 = 1_715_000_000.0


def open_log(path, *, on_charging=False, ledger=None, budget_for=None, names=None):
    store = Store.open(path)
    log = TransactionLog(store, on_charging=lambda: on_charging, ledger=ledger,
                         budget_for=budget_for, name_of=(names or {}).get,
                         write_interval_s=5.0)
    return store, log


def rows(store):
    return store.conn.execute(
        "SELECT dev_id, user_id, user_name, rfid, start_ts, end_ts, start_wh, end_wh, energy_wh,"
        " status FROM transactions ORDER BY id").fetchall()


def test_plug_in_to_unplug(tmp_path):
    store, log = open_log(tmp_path, names={"u1": "Anna"})
    assert log.observe("E1", False, False, 1000, None, None, T0) is None
    run = log.observe("E1", True, False, 1000, None, None, T0 + 3)
    assert run is not None and run.status == "running"
    # written at once, before any energy flowed
    assert rows(store) == [("E1", None, "", None, T0 + 3, None, 1000, 1000, 0, "running")]
    log.observe("E1", True, True, 1000, "AA11", "u1", T0 + 6)
    assert rows(store)[0][1:4] == ("u1", "Anna", "AA11")  # identity written at once
    for step in range(1, 11):
        log.observe("E1", True, True, 1000 + 110 * step, "AA11", "u1", T0 + 6 + 3 * step)
    log.observe("E1", False, False, 2100, None, None, T0 + 40)
    assert rows(store) == [("E1", "u1", "Anna", "AA11", T0 + 3, T0 + 40, 1000, 2100, 1100,
                            "closed")]
    (record,) = log.query()
    assert record.charging_s == 34.0  # charging from T0+6 until the unplug at T0+40
    assert record.to_json()["duration_s"] == 37


def test_progress_is_written_at_most_every_write_interval(tmp_path):
    store, log = open_log(tmp_path)
    log.observe("E1", True, True, 0, None, None, T0)
    log.observe("E1", True, True, 10, None, None, T0 + 1)
    log.observe("E1", True, True, 20, None, None, T0 + 2)
    assert rows(store)[0][8] == 0  # not yet written…
    assert log.query()[0].energy_wh == 20  # …but the API shows the live value
    log.observe("E1", True, True, 30, None, None, T0 + 5)
    assert rows(store)[0][8] == 30
    log.observe("E1", True, True, 40, None, None, T0 + 6)
    log.flush(T0 + 6)
    assert rows(store)[0][8] == 40


def test_ta_on_charging_runs_from_charging_start_to_end(tmp_path):
    store, log = open_log(tmp_path, on_charging=True)
    log.observe("E1", True, False, 500, None, None, T0)
    assert rows(store) == []
    log.observe("E1", True, True, 500, None, None, T0 + 3)
    log.observe("E1", True, True, 700, None, None, T0 + 6)
    log.observe("E1", True, False, 800, None, None, T0 + 9)  # charging ended, still plugged
    log.observe("E1", True, True, 800, None, None, T0 + 12)  # a second charge
    log.observe("E1", False, False, 900, None, None, T0 + 15)
    assert [(r[4], r[5], r[8], r[9]) for r in rows(store)] == [
        (T0 + 3, T0 + 9, 300, "closed"), (T0 + 12, T0 + 15, 100, "closed")]


def test_meter_going_backwards_is_not_negative_energy(tmp_path):
    _, log = open_log(tmp_path)
    log.observe("E1", True, True, 5000, None, None, T0)
    log.observe("E1", True, True, 5100, None, None, T0 + 3)
    log.observe("E1", True, True, 20, None, None, T0 + 6)  # meter replaced / reset
    log.observe("E1", True, True, 70, None, None, T0 + 9)
    assert log.running("E1").energy_wh == 150


def test_evses_are_independent(tmp_path):
    store, log = open_log(tmp_path)
    log.observe("E1", True, True, 0, None, "a", T0)
    log.observe("E2", True, True, 100, None, "b", T0)
    log.observe("E1", True, True, 50, None, "a", T0 + 3)
    log.observe("E2", False, False, 130, None, "b", T0 + 3)
    log.flush(T0 + 3)
    assert [(r[0], r[8], r[9]) for r in rows(store)] == [("E1", 50, "running"),
                                                         ("E2", 30, "closed")]
    assert [r.dev_id for r in log.query(user_id="b")] == ["E2"]
    assert [r.dev_id for r in log.query(dev_id="E1")] == ["E1"]
    assert log.query(since=T0 + 1) == []


def test_restart_continues_a_transaction_of_a_car_still_plugged_in(tmp_path):
    store, log = open_log(tmp_path)
    log.observe("E1", True, True, 1000, "AA", "u1", T0)
    log.observe("E1", True, True, 1200, "AA", "u1", T0 + 6)  # written (interval reached)
    log.observe("E1", True, True, 1230, "AA", "u1", T0 + 7)  # lost with the crash
    store.conn.close()  # the process dies without flushing

    store, log = open_log(tmp_path)
    assert log.recover() == 1
    log.observe("E1", True, True, 1500, "AA", "u1", T0 + 30)  # energy during the downtime
    log.observe("E1", True, True, 1600, "AA", "u1", T0 + 33)
    log.observe("E1", False, False, 1600, None, None, T0 + 36)
    ((dev_id, user, _, rfid, start, end, start_wh, end_wh, energy, status),) = rows(store)
    assert (dev_id, user, rfid, start, end, status) == ("E1", "u1", "AA", T0, T0 + 36, "closed")
    assert (start_wh, end_wh, energy) == (1000, 1600, 600)
    assert "resumed after restart" in log.query()[0].note


def test_restart_closes_as_interrupted_when_the_car_left(tmp_path):
    store, log = open_log(tmp_path)
    log.observe("E1", True, True, 1000, None, None, T0)
    log.observe("E1", True, True, 1300, None, None, T0 + 6)
    store.conn.close()

    store, log = open_log(tmp_path)
    log.recover()
    log.observe("E1", False, False, 1400, None, None, T0 + 100)
    assert rows(store) == [("E1", None, "", None, T0, T0 + 6, 1000, 1300, 300, "interrupted")]
    # a new plug-in is a new transaction
    log.observe("E1", True, False, 1400, None, None, T0 + 103)
    assert [r[9] for r in rows(store)] == ["interrupted", "running"]


def test_rows_of_evses_never_seen_again_are_closed_after_a_grace_time(tmp_path):
    store, log = open_log(tmp_path)
    log.observe("E9", True, True, 0, None, None, T0)
    store.conn.close()
    store, log = open_log(tmp_path)
    log.recover()
    log.observe("E1", False, False, 0, None, None, T0 + 100)
    assert rows(store)[0][9] == "running"  # E9 might still show up
    log.observe("E1", False, False, 0, None, None, T0 + 161)
    assert rows(store)[0][9] == "interrupted"


def test_meter_reset_during_downtime_adds_nothing_for_the_gap(tmp_path):
    store, log = open_log(tmp_path)
    log.observe("E1", True, True, 5000, None, None, T0)
    log.observe("E1", True, True, 5200, None, None, T0 + 6)
    store.conn.close()
    store, log = open_log(tmp_path)
    log.recover()
    log.observe("E1", True, True, 10, None, None, T0 + 20)
    log.observe("E1", True, True, 60, None, None, T0 + 23)
    assert log.running("E1").energy_wh == 250


def test_budgets_are_charged_from_the_observed_energy_and_persisted_with_it(tmp_path):
    spec = BudgetSpec(reset="once", amount=1.0)  # 1 kWh
    ledger = BudgetLedger(UTC)
    owners = {("AA", "u1"): ("rfid:AA", spec)}
    store, log = open_log(tmp_path, ledger=ledger,
                          budget_for=lambda rfid, user: owners.get((rfid, user)))
    log.observe("E1", True, True, 0, "AA", "u1", T0)
    log.observe("E1", True, True, 400, "AA", "u1", T0 + 60)
    log.observe("E1", True, False, 600, "AA", "u1", T0 + 120)
    log.observe("E1", True, False, 600, "AA", "u1", T0 + 180)  # not charging: no minutes
    use = ledger.use("rfid:AA")
    assert (use.used_wh, use.used_s) == (600, 120.0)
    log.flush(T0 + 180)
    assert store.kv_get("budget", "rfid:AA")["used_wh"] == 600
    # the unknown session (no card) is charged to nobody
    log.observe("E2", True, True, 0, None, None, T0)
    log.observe("E2", True, True, 500, None, None, T0 + 60)
    assert ledger.use("rfid:AA").used_wh == 600


def test_csv_export(tmp_path):
    _, log = open_log(tmp_path, names={"u1": "=cmd|' /C calc'!A0"})
    log.observe("E1", True, True, 1000, "AA", "u1", T0)
    log.observe("E1", True, True, 1500, "AA", "u1", T0 + 3)
    log.observe("E1", False, False, 2234, None, None, T0 + 60)
    text = to_csv(log.query(), UTC)
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][:4] == ["id", "dev_id", "start", "end"]
    row = dict(zip(table[0], table[1], strict=True))
    assert row["start"] == "2024-05-06 12:53:20" and row["end"] == "2024-05-06 12:54:20"
    assert (row["energy_kwh"], row["start_wh"], row["end_wh"]) == ("1.234", "1000", "2234")
    assert row["user_name"].startswith("'=")  # no formula injection into spreadsheets
    assert row["status"] == "closed"
