"""Budget accounting with explicit times: periods, resets, units, RFID budget precedence."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chargebrain.users.budgets import (
    BudgetLedger,
    BudgetSpec,
    BudgetUse,
    budget_owner,
    charge,
    exhausted,
    period_start,
    remaining,
    roll,
    used_amount,
)
from chargebrain.users.model import Rfid, User

BERLIN = ZoneInfo("Europe/Berlin")


def ts(*args: int, tz=UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


@pytest.mark.parametrize(("reset", "day", "now", "start"), [
    ("daily", 1, ts(2024, 3, 13, 17, 5), ts(2024, 3, 13)),
    ("daily", 1, ts(2024, 3, 13, 0, 0), ts(2024, 3, 13)),
    ("weekly", 1, ts(2024, 3, 13, 17, 5), ts(2024, 3, 11)),  # Wednesday -> Monday
    ("weekly", 1, ts(2024, 3, 11, 0, 0, 1), ts(2024, 3, 11)),
    ("weekly", 1, ts(2024, 3, 10, 23, 59), ts(2024, 3, 4)),  # Sunday belongs to last week
    ("monthly", 1, ts(2024, 3, 31, 23), ts(2024, 3, 1)),
    ("monthly", 1, ts(2024, 1, 1, 0, 0), ts(2024, 1, 1)),
    ("yearly", 1, ts(2024, 7, 1), ts(2024, 1, 1)),
    ("yearly", 100, ts(2024, 7, 1), ts(2024, 4, 9)),  # leap year: day 100 = 9 April
    ("yearly", 100, ts(2024, 2, 1), ts(2023, 4, 10)),  # before this year's day: last year's
    ("yearly", 366, ts(2023, 12, 31, 12), ts(2023, 12, 31)),  # 366 in a common year = 31 Dec
    ("yearly", 366, ts(2024, 6, 1), ts(2023, 12, 31)),
    ("once", 1, ts(2024, 6, 1), 0.0),
])
def test_period_start(reset, day, now, start):
    assert period_start(BudgetSpec(reset=reset, day=day, amount=1), now, UTC) == start


def test_daily_reset_follows_local_midnight_across_daylight_saving():
    spec = BudgetSpec(reset="daily", amount=10)
    # 31 March 2024: clocks go forward in Berlin; the day still starts at local 00:00 (+01:00)
    assert period_start(spec, ts(2024, 3, 31, 12, tz=BERLIN), BERLIN) == ts(2024, 3, 31,
                                                                          tz=BERLIN)
    assert period_start(spec, ts(2024, 4, 1, 0, 30, tz=BERLIN), BERLIN) == ts(2024, 4, 1,
                                                                            tz=BERLIN)
    # 23:30 UTC on 31 March is already 1 April in Berlin
    assert period_start(spec, ts(2024, 3, 31, 23, 30), BERLIN) == ts(2024, 4, 1, tz=BERLIN)


def test_kwh_budget_is_used_up_and_resets_next_day():
    spec = BudgetSpec(reset="daily", amount=20, time_budget=False)
    use = BudgetUse()
    use = charge(spec, use, 12_000, 3600, ts(2024, 5, 2, 10), UTC)
    assert used_amount(spec, use) == 12.0
    assert remaining(spec, use, ts(2024, 5, 2, 11), UTC) == 8.0
    use = charge(spec, use, 8_000, 1800, ts(2024, 5, 2, 12), UTC)
    assert exhausted(spec, use, ts(2024, 5, 2, 12), UTC)
    assert exhausted(spec, use, ts(2024, 5, 2, 23, 59, 59), UTC)
    # a new day: the budget is full again without anything being written
    assert not exhausted(spec, use, ts(2024, 5, 3, 0, 0, 1), UTC)
    assert remaining(spec, use, ts(2024, 5, 3, 8), UTC) == 20.0
    # consumption after midnight belongs to the new day only
    use = charge(spec, use, 1_500, 600, ts(2024, 5, 3, 9), UTC)
    assert use.period_start_s == ts(2024, 5, 3)
    assert used_amount(spec, use) == 1.5


def test_minute_budget_counts_charging_time():
    spec = BudgetSpec(reset="weekly", amount=120, time_budget=True)
    use = charge(spec, BudgetUse(), 5_000, 90 * 60, ts(2024, 5, 6, 10), UTC)  # Monday
    assert used_amount(spec, use) == 90.0
    assert remaining(spec, use, ts(2024, 5, 8), UTC) == 30.0
    use = charge(spec, use, 1_000, 30 * 60, ts(2024, 5, 9), UTC)
    assert exhausted(spec, use, ts(2024, 5, 12, 23), UTC)  # still Sunday of that week
    assert not exhausted(spec, use, ts(2024, 5, 13, 0, 0, 1), UTC)


def test_one_off_budget_never_resets():
    spec = BudgetSpec(reset="once", amount=15)
    use = charge(spec, BudgetUse(), 15_000, 0, ts(2024, 1, 1), UTC)
    assert exhausted(spec, use, ts(2030, 1, 1), UTC)


def test_monthly_and_yearly_resets():
    monthly = BudgetSpec(reset="monthly", amount=100)
    use = charge(monthly, BudgetUse(), 100_000, 0, ts(2024, 2, 29, 22), UTC)
    assert exhausted(monthly, use, ts(2024, 2, 29, 23, 59), UTC)
    assert not exhausted(monthly, use, ts(2024, 3, 1, 0, 1), UTC)
    yearly = BudgetSpec(reset="yearly", day=32, amount=1000)  # resets on 1 February
    use = charge(yearly, BudgetUse(), 1_000_000, 0, ts(2024, 1, 15), UTC)
    assert exhausted(yearly, use, ts(2024, 1, 31, 23), UTC)
    assert not exhausted(yearly, use, ts(2024, 2, 1, 1), UTC)


def test_a_clock_stepping_back_does_not_reset():
    spec = BudgetSpec(reset="daily", amount=1)
    use = charge(spec, BudgetUse(), 1_000, 0, ts(2024, 5, 3, 0, 5), UTC)
    # NTP steps the clock back to the previous day: the consumption is kept
    assert roll(spec, use, ts(2024, 5, 2, 23, 59), UTC) == use
    assert exhausted(spec, use, ts(2024, 5, 2, 23, 59), UTC)


def test_negative_consumption_is_ignored():
    spec = BudgetSpec(reset="once", amount=1)
    use = charge(spec, BudgetUse(), -500, -10, ts(2024, 1, 1), UTC)
    assert (use.used_wh, use.used_s) == (0.0, 0.0)


def test_rfid_budget_replaces_the_users_while_the_card_is_active():
    user_budget = BudgetSpec(reset="daily", amount=20)
    card_budget = BudgetSpec(reset="once", amount=15)
    card = Rfid(id="AA11", budget=card_budget)
    plain = Rfid(id="BB22")
    user = User(id="1", budget=user_budget, rfids=(card, plain))
    assert budget_owner(user, card) == ("rfid:AA11", card_budget)
    assert budget_owner(user, plain) == ("user:1", user_budget)
    assert budget_owner(user, None) == ("user:1", user_budget)
    assert budget_owner(User(id="2"), None) is None
    assert budget_owner(None, None) is None


def test_ledger_tracks_dirty_owners_and_rolls_per_owner():
    ledger = BudgetLedger(UTC)
    spec = BudgetSpec(reset="daily", amount=10)
    ledger.charge("user:1", spec, 4_000, 60, ts(2024, 5, 2, 10))
    ledger.charge("rfid:X", spec, 0, 0, ts(2024, 5, 2, 10))  # nothing consumed: not dirty
    rows = ledger.take_dirty()
    assert [owner for owner, _ in rows] == ["user:1"]
    assert ledger.take_dirty() == []
    assert ledger.current("user:1", spec, ts(2024, 5, 2, 11)).used_wh == 4_000
    assert ledger.current("user:1", spec, ts(2024, 5, 3, 1)).used_wh == 0
    ledger.clear("user:1")
    assert ledger.take_dirty() == [("user:1", None)]
    assert ledger.view().get("user:1") is None
