"""Property tests: budget accounting and the transaction log over random observation series."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from chargebrain.store.db import Store
from chargebrain.users.budgets import BudgetSpec, BudgetUse, charge, period_start, used_amount
from chargebrain.users.transactions import TransactionLog

T0 = datetime(2024, 2, 27, 12, tzinfo=UTC).timestamp()

steps = st.lists(st.tuples(st.integers(1, 40_000),  # seconds since the previous step
                           st.integers(0, 5_000)),  # Wh consumed in it
                 min_size=1, max_size=60)


@given(steps, st.sampled_from(["daily", "weekly", "monthly", "yearly", "once"]))
def test_budget_use_is_the_sum_since_the_period_began(series, reset):
    spec = BudgetSpec(reset=reset, day=60, amount=10)
    use, now, history = BudgetUse(), T0, []
    for dt, wh in series:
        now += dt
        use = charge(spec, use, wh, dt, now, UTC)
        history.append((now, wh))
    start = period_start(spec, now, UTC)
    expected = sum(wh for t, wh in history if t >= start)
    assert use.used_wh == expected
    assert used_amount(spec, use) == expected / 1000


observations = st.lists(st.tuples(st.booleans(),  # plugged
                                  st.booleans(),  # charging (when plugged)
                                  st.integers(0, 300)),  # Wh since the previous observation
                        min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(observations)
def test_transactions_follow_plug_ins_and_sum_the_meter(series):
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp))
        log = TransactionLog(store, write_interval_s=5.0)
        meter, now, plugged_before, plug_ins, drawn = 1000, T0, False, 0, 0
        for plugged, charging, wh in series:
            now += 3
            if plugged_before:  # only a plugged-in car draws
                meter += wh
                drawn += wh
            if plugged and not plugged_before:
                plug_ins += 1
            log.observe("E1", plugged, plugged and charging, meter, None, None, now)
            plugged_before = plugged
        log.flush(now)
        records = log.query()
        assert len(records) == plug_ins
        assert sum(r.energy_wh for r in records) == drawn
        for earlier, later in pairwise(records):
            assert earlier.end_ts is not None and earlier.end_ts <= later.start_ts
        for record in records:
            assert record.energy_wh == record.end_wh - record.start_wh >= 0
            assert record.status == ("running" if record.end_ts is None else "closed")
        stored = store.conn.execute("SELECT SUM(energy_wh) FROM transactions").fetchone()[0]
        assert (stored or 0) == drawn  # what the store holds after a flush is everything
        store.close()
