"""Odd configurations reach the planner as they are; it must answer sensibly, never raise."""

from __future__ import annotations

from chargebrain.core.allocator import build_tree
from chargebrain.core.model import GroupSpec
from chargebrain.core.plan import plan
from chargebrain.core.site import (
    EvseInput,
    GroupInput,
    MeterInput,
    MeterRole,
    PlanMemory,
    SiteInput,
    SiteSettings,
)


def test_cyclic_and_dangling_parents_are_hung_under_the_site() -> None:
    tree = build_tree([GroupSpec(1, 2), GroupSpec(2, 1), GroupSpec(3, 99), GroupSpec(4, 3)])
    for gid in (1, 2, 3, 4):
        assert tree.path(gid)[-1] == 0
        assert len(set(tree.path(gid))) == len(tree.path(gid))  # no loops
    assert tree.path(4) == (4, 3, 0)
    assert tree.path(77) == (0,)  # an unknown group counts at the site


def test_a_group_cycle_still_limits_its_wallboxes() -> None:
    site = SiteInput(
        SiteSettings(max_total_current_ma=63000),
        groups=(GroupInput(1, 2, 10000), GroupInput(2, 1, 32000)),
        evses=(EvseInput("E1", group_id=1, connected=True), EvseInput("E2", group_id=2,
                                                                      connected=True)),
    )
    result = plan(site, PlanMemory(), 0.0)
    assert result.setpoints["E1"].current_ma <= 10000
    assert sum(sp.current_ma for sp in result.setpoints.values()) <= 32000


def test_an_evse_in_an_unknown_group_is_limited_by_the_site() -> None:
    site = SiteInput(SiteSettings(max_total_current_ma=10000),
                     evses=(EvseInput("E1", group_id=42, connected=True),))
    sp = plan(site, PlanMemory(), 0.0).setpoints["E1"]
    assert (sp.current_ma, sp.reason.code) == (10000, "site_limit")


def test_nonsense_numbers_give_no_current_and_no_exception() -> None:
    site = SiteInput(
        SiteSettings(max_total_current_ma=-5, max_total_cur_prc=250, reserve_current_ma=-3,
                     system_voltage_v=0, max_imbalance_ma=-1, min_pause_time_s=-10),
        groups=(GroupInput(1, 0, -100),),
        meters=(MeterInput("M1", MeterRole.CONSUMPTION, 0, None, 99999, phases_mask=0,
                           read_at_s=0.0),
                MeterInput("M2", MeterRole.CONSUMPTION, 1, (-5, -5, -5), read_at_s=0.0)),
        evses=(
            EvseInput("E1", connected=True, min_current_ma=-1, max_current_ma=-1),
            EvseInput("E2", group_id=1, connected=True, phases_mask=0),
            EvseInput("E3", connected=True, phase_rotation_deg=45, measured_ma=(-1, 0, 99)),
            EvseInput("E4", connected=True, com_error_since_s=-1e9, last_power_w=-500),
        ),
        surplus_w=-100,
    )
    result = plan(site, PlanMemory(), 0.0)
    assert set(result.setpoints) == {"E1", "E2", "E3", "E4"}
    for sp in result.setpoints.values():
        assert sp.current_ma == 0


def test_an_empty_site_plans_nothing() -> None:
    result = plan(SiteInput(), PlanMemory(), 0.0)
    assert result.setpoints == {}
    assert result.diagnostics.site_budget_ma == (32000, 32000, 32000)
    assert result.write is True


def test_a_zero_system_voltage_falls_back_to_230_v() -> None:
    meter = MeterInput("M1", MeterRole.CONSUMPTION, 0, None, 6900, read_at_s=0.0)
    site = SiteInput(SiteSettings(system_voltage_v=0), meters=(meter,),
                     evses=(EvseInput("E1", connected=True, max_current_ma=32000),))
    result = plan(site, PlanMemory(), 0.0)
    assert result.diagnostics.non_evse_ma == (10000, 10000, 10000)  # 6900 W / (3 × 230 V)
    assert result.setpoints["E1"].current_ma == 22000
