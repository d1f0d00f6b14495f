"""Formulas in the running system, over the real HTTP API with a fake clock: site, EVSE and
group limits, CM variables, surplus_expr and expression meters; bad formulas refused with their
position (nothing changed); run-time failures fall back to the safe side for their own value
only, visible in explain and last_error, and the cycle goes on."""

from __future__ import annotations

import logging

import pytest

from tests.control.helpers import (
    add,
    device,
    plug_sim,
    push_meter,
    set_params,
)


async def cm_var(site, name: str, val: str) -> None:
    assert await site.client.get("set_cm_vars", name=name, val=val) == (200, "ok")


def setpoint(site, dev_id: str) -> int:
    return site.app.devices.get(dev_id).status.last_set_charging_cur_ma


async def charging_car(site, dev_id: str = "E2", **config) -> str:
    await add(site, dev_id=dev_id, dev_type="evse_sim", **config)
    plug_sim(site, dev_id, phases=3, max_current_ma=32000)
    return dev_id


async def test_a_site_limit_formula_limits_the_plan(site):
    e2 = await charging_car(site, max_charging_cur=32000)
    await cm_var(site, "limit", "10000")
    await set_params(site, max_total_current="CM.limit")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 10000
    await cm_var(site, "limit", "8000")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 8000
    _, params = await site.client.get("get_params")
    assert params["max_total_current"] == "CM.limit"
    # a meter's phase currents: `current` is evaluated per phase, the least value wins
    m5 = await add(site, dev_id="M5", dev_type="meter_ajax", role=0)
    await push_meter(site, m5, (7000, 9000, 8000))
    await set_params(site, max_total_current="M5.current + 1000")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 8000
    await set_params(site, max_total_current="M5.current_l2 + 2500")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 11500
    # the clock's names
    await set_params(site, max_total_current="date.year > 2000 && date.hour >= 0 ? 9000 : 0")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 9000
    _, predefined = await site.client.get("get_cm_vars")
    values = {p["name"]: p["value"] for p in predefined["predefined"]}
    assert values["_max_total_current"] == 9000 and values["_num_charging"] == 1


async def test_an_evse_max_formula_follows_set_cm_vars(site):
    e2 = await charging_car(site, max_charging_cur="min(CM.x, 16000)")
    await set_params(site, max_total_current=32000)
    await cm_var(site, "x", "12000")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 12000
    await cm_var(site, "x", "7000")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 7000
    _, body = await site.client.get("explain", dev_id=e2)
    assert body["demand"]["max_current_ma"] == 7000
    assert body["demand"]["max_reason"] == "max current formula"
    # below the minimum: no charging, and explain says why
    await cm_var(site, "x", "3000")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 0
    _, body = await site.client.get("explain", dev_id=e2)
    assert body["reason"]["code"] == "max_current"
    # a CM formula variable in between
    await cm_var(site, "y", "CM.x * 4")
    await add(site, dev_id=e2, dev_type="evse_sim", max_charging_cur="CM.y")
    plug_sim(site, e2, phases=3, max_current_ma=32000)
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 12000


async def test_a_group_limit_formula(site):
    await set_params(site, max_total_current=32000)
    await cm_var(site, "g", "9000")
    await add(site, dev_id="E5", dev_type="evse_group", max_charging_cur="CM.g")
    e2 = await charging_car(site, group=5)
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 9000
    _, body = await site.client.get("explain", dev_id=e2)
    assert body["nodes"][0]["limit_ma"] == [9000, 9000, 9000]
    # the group's failing formula: 0 mA below it, the note says why
    await cm_var(site, "g", "CM.g2 * 2")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 0
    _, body = await site.client.get("explain", dev_id=e2)
    assert any("E5.max_charging_cur" in n and "unknown name cm.g2" in n for n in body["notes"])
    assert (await device(site, "E5"))["last_error"].startswith("E5.max_charging_cur: formula:")


BAD = [
    ({"max_total_current": "min(1,,2)"}, "max_total_current: formula: unexpected ',' at 6"),
    ({"max_total_current": "M1.current_l1 <"},
     "max_total_current: formula: unexpected end of formula at 15"),
    ({"max_total_current": "sin(2)"}, "max_total_current: formula: unknown function sin at 0"),
    ({"surplus_expr": "GM.surplus.power_w * "},
     "surplus_expr: formula: unexpected end of formula at 21"),
    ({"surplus_expr": "x" * 257}, "surplus_expr is longer than 256 characters"),
    ({"title": "new", "max_total_current": "(1"},
     "max_total_current: formula: unexpected end of formula at 2"),
    ({"devices": [{"dev_id": "E1", "max_charging_cur": "CM.x +"}]},
     "max_charging_cur: formula: unexpected end of formula at 6"),
    ({"title": "new", "devices": [{"dev_type": "evse_group", "max_charging_cur": "1 = 2"}]},
     "max_charging_cur: formula: unexpected '=' at 2"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
async def test_a_bad_formula_is_refused_with_its_position_and_changes_nothing(site, body,
                                                                              message):
    _, params_before = await site.client.get("get_params")
    _, devices_before = await site.client.get("get_devices")
    status, answer = await site.client.post("set_params", body)
    assert (status, answer) == (400, message)
    _, params_after = await site.client.get("get_params")
    _, devices_after = await site.client.get("get_devices")
    assert params_after == params_before and devices_after == devices_before


async def test_set_device_refuses_a_bad_formula(site):
    _, before = await site.client.get("get_devices")
    status, answer = await site.client.post("set_device", {"devices": [
        {"dev_id": "E1", "max_charging_cur": "max(6000, CM.a"}]})
    assert (status, answer) == (400, "max_charging_cur: formula: unexpected end of formula "
                                     "at 14")
    status, answer = await site.client.post("set_device", {"devices": [
        {"dev_id": "M7", "dev_type": "meter_expression", "expr_power_w": "M1.power_w $ 2"}]})
    assert (status, answer) == (400, "expr_power_w: formula: unexpected '$' at 11")
    assert await site.client.get("get_devices") == (200, before)


async def test_a_failing_evse_formula_makes_only_that_evse_safe(site, caplog):
    await set_params(site, max_total_current=32000)
    e2 = await charging_car(site, max_charging_cur="M9.power_w / 2")  # there is no M9
    e3 = await charging_car(site, "E3", max_charging_cur=10000)
    with caplog.at_level(logging.WARNING, logger="chargebrain.control.formula_env"):
        for _ in range(3):
            site.clock.advance(3)
            await site.app.cycle.run_once()
    assert setpoint(site, e2) == 0
    assert setpoint(site, e3) == 10000  # the others go on
    _, body = await site.client.get("explain", dev_id=e2)
    assert body["reason"]["code"] == "not_allowed"
    assert body["demand"]["reason"] == ("max current formula failed: formula: unknown name "
                                        "m9.power_w at 0")
    assert any("E2.max_charging_cur" in n for n in body["notes"])
    info = await device(site, e2)
    assert info["last_error"] == "E2.max_charging_cur: formula: unknown name m9.power_w at 0"
    # logged once for three failing cycles
    warnings = [r for r in caplog.records if "E2.max_charging_cur" in r.getMessage()]
    assert len(warnings) == 1
    # fixed: it charges again and last_error is cleared
    await add(site, dev_id=e2, dev_type="evse_sim", max_charging_cur="E3.max_current - 2000")
    plug_sim(site, e2, phases=3, max_current_ma=32000)
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 8000
    assert (await device(site, e2))["last_error"] == ""


async def test_a_failing_site_limit_gives_every_evse_nothing_and_the_cycle_goes_on(site):
    e2 = await charging_car(site)
    await cm_var(site, "zero", "0")
    await set_params(site, max_total_current="16000 / CM.zero")
    record = await site.app.cycle.run_once()
    assert record.site.settings.max_total_current_ma == 0
    assert setpoint(site, e2) == 0
    _, body = await site.client.get("explain", dev_id=e2)
    assert any("max_total_current" in n and "division by zero at 6" in n
               for n in body["notes"])
    await cm_var(site, "zero", "2")
    site.clock.advance(3)
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 8000
    _, body = await site.client.get("explain", dev_id=e2)
    assert not any("max_total_current" in n for n in body["notes"])


async def test_surplus_expr_is_the_planners_surplus(site):
    await cm_var(site, "pv", "4000")
    await set_params(site, surplus_expr="CM.pv - 500")
    record = await site.app.cycle.run_once()
    assert record.site.surplus_w == 3500
    assert record.result.diagnostics.surplus_w == 3500
    # the next cycle's names see it
    await cm_var(site, "seen", "GM.surplus.power_w + CM._surplus")
    _, body = await site.client.get("get_cm_vars")
    assert {v["name"]: v["value"] for v in body["vars"]}["seen"] == 7000
    # a failing surplus formula: no surplus
    await set_params(site, surplus_expr="CM.nothing")
    record = await site.app.cycle.run_once()
    assert record.site.surplus_w == 0
    assert any("surplus_expr" in n for n in record.notes)
    await set_params(site, surplus_expr="")
    record = await site.app.cycle.run_once()
    assert record.site.surplus_w is None


async def test_an_expression_meter_integrates_and_smooths(site):
    m5 = await add(site, dev_id="M5", dev_type="meter_ajax", role=0, com_timeout_ms=600000)
    await push_meter(site, m5, (0, 0, 0), power_w=3600)
    await add(site, dev_id="M6", dev_type="meter_expression", role=0,
              expr_power_w="(power_w * (20 - dt) + M5.power_w * dt) / 20",
              expr_import_wh="import_wh + M5.power_w * dt / 3600",
              expr_current_l1="M5.current + 1000")
    await site.app.cycle.run_once()  # first: dt = 0
    first = await device(site, "M6")
    assert (first["power_w"], first["import"]) == (0, 0)
    assert first["current_l1"] == first["current_l2"] == first["current_l3"] == 1000
    site.clock.advance(10)
    await site.app.cycle.run_once()
    second = await device(site, "M6")
    assert second["power_w"] == 1800  # half way towards 3600 after 10 of 20 s
    assert second["import"] == 10  # 3600 W for 10 s
    site.clock.advance(10)
    await site.app.cycle.run_once()
    third = await device(site, "M6")
    assert third["power_w"] == 2700 and third["import"] == 20
    # other formulas read it, as computed in the same cycle: (2700 * 19 + 3600) / 20 = 2745
    await set_params(site, max_total_current="M6.power_w * 4")
    await charging_car(site)
    site.clock.advance(1)
    record = await site.app.cycle.run_once()
    assert record.site.settings.max_total_current_ma == 2745 * 4


async def test_a_failing_expression_meter_is_a_com_error(site):
    await add(site, dev_id="M6", dev_type="meter_expression", role=0,
              expr_power_w="M9.power_w")
    await site.app.cycle.run_once()
    info = await device(site, "M6")
    assert info["com_err"] is True
    assert info["last_error"] == ("expression meter: formula: power_w: unknown name m9.power_w "
                                  "at 0")


async def test_the_writable_predefined_percentage_limits_the_plan(site):
    e2 = await charging_car(site, max_charging_cur=32000)
    await set_params(site, max_total_current=20000)
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 20000
    await cm_var(site, "_max_total_current_prc", "50")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 10000
    # and formulas read it
    await add(site, dev_id=e2, dev_type="evse_sim",
              max_charging_cur="CM._max_total_current_prc * 150")
    plug_sim(site, e2, phases=3, max_current_ma=32000)
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 7500


async def test_charging_rule_formulas_read_cm_variables(site):
    """The cycle hands its formula names to the charging rules: a legacy mode-0 rule whose
    `expr` reads a CM variable follows set_cm_vars."""
    rule = {"days": 127, "mode": 0, "current": 0, "enabled": True, "udur": 0, "time": 0,
            "dur": 1440, "expr": "CM.rule_ma", "input": "", "price_level": 0, "solar": 0}
    e2 = await charging_car(site, max_charging_cur=32000, charging_rules=[rule])
    await set_params(site, max_total_current=32000)
    await cm_var(site, "rule_ma", "9000")
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 9000
    await cm_var(site, "rule_ma", "13000")
    site.clock.advance(3)
    await site.app.cycle.run_once()
    assert setpoint(site, e2) == 13000
