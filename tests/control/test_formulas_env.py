"""The live names of formulas (control/formula_env.py): date.* with a fake clock and a fixed
time zone, device members, GM.*, CM variables and the predefined CM._* values, per-phase
`current`, and the once-per-change logging of failing formulas."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from chargebrain.control.formula_env import (
    LiveEnv,
    OverlayEnv,
    PhaseEnv,
    date_values,
    per_phase_min,
)
from chargebrain.core.formula import DictEnv, FormulaError, compile_formula, evaluate
from tests.control.helpers import add, plug_sim, push_evse, push_meter

BERLIN = ZoneInfo("Europe/Berlin")


def ts(*args: int, tz: ZoneInfo = BERLIN) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def test_date_names_in_summer():
    d = date_values(ts(2026, 7, 5, 14, 30, 15), BERLIN)  # a Sunday, summer time
    assert d == {
        "date.year": 2026, "date.month": 6, "date.day": 5, "date.weekday": 0,
        "date.yearday": 185, "date.hour": 14, "date.minute": 30, "date.second": 15,
        "date.daysecond": 14 * 3600 + 30 * 60 + 15, "date.dayminute": 14 * 60 + 30,
        "date.dst": 1, "date.timestamp": ts(2026, 7, 5, 14, 30, 15)}


def test_date_names_in_winter_and_at_the_edges():
    d = date_values(ts(2027, 1, 1, 0, 0, 0), BERLIN)  # a Friday
    assert (d["date.month"], d["date.day"], d["date.weekday"], d["date.yearday"]) == (0, 1, 5, 0)
    assert (d["date.dst"], d["date.daysecond"], d["date.dayminute"]) == (0, 0, 0)
    d = date_values(ts(2026, 12, 31, 23, 59, 59), BERLIN)  # Thursday, last second of the year
    assert (d["date.month"], d["date.yearday"], d["date.weekday"]) == (11, 364, 4)
    assert (d["date.daysecond"], d["date.dayminute"]) == (86399, 1439)
    assert date_values(ts(2026, 3, 7, 12, 0, 0), BERLIN)["date.weekday"] == 6  # Saturday
    # the same instant in another zone
    utc = date_values(ts(2026, 7, 5, 14, 30, 15), ZoneInfo("UTC"))
    assert (utc["date.hour"], utc["date.dst"]) == (12, 0)


def test_date_names_in_the_system_zone_follow_localtime():
    import time
    now = 1_780_000_000.5
    local = time.localtime(now)
    d = date_values(now, None)
    assert (d["date.hour"], d["date.minute"], d["date.month"]) == (
        local.tm_hour, local.tm_min, local.tm_mon - 1)
    assert d["date.timestamp"] == 1_780_000_000


def test_reference_examples_with_the_clock():
    eight = date_values(ts(2026, 7, 4, 8, 0, 0), BERLIN)  # Saturday 08:00
    assert evaluate("date.dayminute >= 480 ? 8000 : 0", DictEnv(eight)) == 8000
    assert evaluate("date.weekday == 6 || date.weekday == 0 ? 16000 : 0", DictEnv(eight)) \
        == 16000
    seven = date_values(ts(2026, 7, 6, 7, 59, 0), BERLIN)  # Monday 07:59
    assert evaluate("date.dayminute >= 480 ? 8000 : 0", DictEnv(seven)) == 0


def test_phase_and_overlay_environments():
    base = DictEnv({"m1.current_l1": 1000, "m1.current_l2": 5000, "m1.current_l3": 3000,
                    "current_l2": 7})
    assert evaluate("M1.current", PhaseEnv(base, 2)) == 5000
    assert evaluate("current", PhaseEnv(base, 2)) == 7
    assert per_phase_min(compile_formula("16000 - M1.current"), base) == 11000
    assert per_phase_min(compile_formula("M1.current_l3 * 2"), base) == 6000
    own = OverlayEnv(base, {"power_w": 12, "m1.current_l1": 1})
    assert evaluate("power_w + M1.current_l1 + M1.current_l2", own) == 5013


def test_cm_formula_variables_are_lazy_and_refuse_loops():
    env = LiveEnv({"cm.a": 2.0}, {"cm.b": "CM.a * 3", "cm.c": "CM.b + CM.b", "cm.l1": "CM.l2",
                                  "cm.l2": "CM.l1 + 1"})
    assert evaluate("CM.c", env) == 12
    with pytest.raises(FormulaError, match="refers to itself"):
        evaluate("CM.l1", env)
    assert env.lookup("cm.nothing") is None


async def test_device_members(site):
    m5 = await add(site, dev_id="M5", dev_type="meter_ajax", role=0, com_timeout_ms=600000)
    await push_meter(site, m5, (1000, 2000, 3000), power_w=1380, import_wh=50, soc=80)
    e2 = await add(site, dev_id="E2", dev_type="evse_ajax", min_charging_cur=7000,
                   max_charging_cur=20000)
    await push_evse(site, e2, 3, (9000, 9000, 0), power_w=4140)
    m7 = await add(site, dev_id="M7", dev_type="meter_ajax")  # never pushed
    env = site.app.cycle.formulas.env()
    assert [env.lookup(f"m5.current_l{i}") for i in (1, 2, 3)] == [1000, 2000, 3000]
    assert (env.lookup("m5.power_w"), env.lookup("m5.import_wh"), env.lookup("m5.soc")) == (
        1380, 50, 80)
    assert env.lookup("m5.com_err") == 0
    assert (env.lookup("e2.state"), env.lookup("e2.cphases")) == (3, 2)
    assert (env.lookup("e2.current_l1"), env.lookup("e2.power_w")) == (9000, 4140)
    assert (env.lookup("e2.min_current"), env.lookup("e2.max_current")) == (7000, 20000)
    assert env.lookup(f"{m7.lower()}.power_w") is None  # no reading: unknown, not zero
    assert env.lookup(f"{m7.lower()}.com_err") == 0
    assert evaluate("exists(M7.power_w) ? 1 : 2", env) == 2
    assert evaluate("E2.current + 1", PhaseEnv(env, 3)) == 1


async def test_global_meters_and_predefined_values_follow_the_plan(site):
    site.app.params.apply({"max_total_current": 25000, "max_total_evse_current": 0})
    e2 = await add(site, dev_id="E2", dev_type="evse_sim")
    plug_sim(site, e2, phases=3, max_current_ma=16000)
    formulas = site.app.cycle.formulas
    assert formulas.env().lookup("gm.grid_demand.power_w") is None  # no plan yet
    await site.app.cycle.run_once()
    site.clock.advance(3)
    await site.app.cycle.run_once()  # the car draws now
    env = formulas.env()
    d = site.app.cycle.last.result.diagnostics
    assert env.lookup("gm.consumed_evse.power_w") == d.cons_evse_power_w > 0
    assert env.lookup("gm.available_evse.power_w") == d.avail_evse_power_w
    assert env.lookup("gm.surplus.power_w") == d.surplus_w
    assert env.lookup("gm.consumed_evse.current_l1") == 16000
    assert env.lookup("gm.storage_home.power_w") == 0
    assert env.lookup("cm._num_charging") == 1 and env.lookup("cm._num_charging1") == 1
    assert env.lookup("cm._max_total_current") == 25000
    assert env.lookup("cm._max_total_evse_current") == 25000
    assert env.lookup("cm._max_total_current_prc") == 100
    assert env.lookup("cm._dt") == 3


async def test_a_failing_formula_is_logged_once_per_change(site, caplog):
    await add(site, dev_id="E2", dev_type="evse_sim", max_charging_cur="CM.a")
    with caplog.at_level(logging.INFO, logger="chargebrain.control.formula_env"):
        for _ in range(3):
            await site.app.cycle.run_once()
        assert site.app.cycle.formulas.errors() == {
            "E2.max_charging_cur": "formula: unknown name cm.a at 0"}
        assert await site.client.get("set_cm_vars", name="a", val="0") == (200, "ok")
        await add(site, dev_id="E2", dev_type="evse_sim", max_charging_cur="16000 / CM.a")
        for _ in range(3):
            await site.app.cycle.run_once()
        assert await site.client.get("set_cm_vars", name="a", val="2") == (200, "ok")
        for _ in range(3):
            await site.app.cycle.run_once()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["E2.max_charging_cur: formula: unknown name cm.a at 0",
                        "E2.max_charging_cur: formula: division by zero at 6",
                        "E2.max_charging_cur: formula works again"]
    assert site.app.cycle.formulas.errors() == {}
