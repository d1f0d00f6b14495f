"""The property checks catch a broken planner: each test breaks it one way and expects the
named check (`tests/core/invariants.py`) to fail on a fixed set of generated sites.

The sites are the property tests' `worlds()`, drawn by hypothesis derandomized (the same sites
on every run, no example database), without shrinking. The unbroken planner passes on the
same sites (`test_unbroken_planner_passes`), so a failure can only come from the fault. If a
check is weakened so that it no longer sees its fault, the matching test here fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, given, settings

import chargebrain.core.allocator as allocator_mod
import chargebrain.core.budget as budget_mod
import chargebrain.core.plan as plan_mod
from chargebrain.core.model import Allocation, Reason, Snapshot
from chargebrain.core.plan import plan
from tests.core.invariants import check_all
from tests.core.world import NOW, World, worlds

SITES = 150  # the fixed set; every fault below is caught well inside it

_FIXED = settings(max_examples=SITES, derandomize=True, database=None, deadline=None,
                  phases=[Phase.generate], report_multiple_bugs=False,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _run_checks() -> None:
    """The property checks over the fixed sites (raises the first failure)."""

    @_FIXED
    @given(worlds())
    def checks(world: World) -> None:
        check_all(world, plan(world.site, world.memory, NOW))

    checks()


def _caught_by(check: str) -> None:
    with pytest.raises(AssertionError, match=rf"^{check}: "):
        _run_checks()


def test_unbroken_planner_passes() -> None:
    _run_checks()


def test_every_car_zero_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every wallbox paused (consistently flagged): safe, but nothing is used."""
    real = plan_mod.allocate

    def nothing(snap: Snapshot) -> Allocation:
        alloc = real(snap)
        cut = Reason("site_limit", "no room (mutant)")
        setpoints = {k: sp if sp.current_ma == 0 else sp._replace(
            current_ma=0, paused=True, reason=cut, pause_reason="shortage")
            for k, sp in alloc.setpoints.items()}
        return Allocation(setpoints, alloc.timers)

    monkeypatch.setattr(plan_mod, "allocate", nothing)
    _caught_by("liveness")


def _patch_gross(monkeypatch: pytest.MonkeyPatch, gross: Callable[..., int]) -> None:
    # plan.py holds its own reference; budget.py's net_limit_ma looks it up in its module
    monkeypatch.setattr(budget_mod, "gross_limit_ma", gross)
    monkeypatch.setattr(plan_mod, "gross_limit_ma", gross)


def test_ignoring_the_reserve_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_mod, "net_limit_ma", budget_mod.gross_limit_ma)
    _caught_by("budget")


def test_ignoring_max_total_cur_prc_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_gross(monkeypatch, lambda s: s.max_total_current_ma)
    _caught_by("budget")


def test_reserve_as_a_fraction_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A subtler misreading: the share applied after the reserve is taken off."""
    def wrong_net(s) -> int:  # type: ignore[no-untyped-def]
        share = max(0, min(100, s.max_total_cur_prc))
        return (s.max_total_current_ma - max(0, s.reserve_current_ma)) * share // 100

    monkeypatch.setattr(budget_mod, "net_limit_ma", wrong_net)
    _caught_by("budget")


def test_non_switchable_box_dropping_to_one_phase_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner decides 1p/3p for every three-phase box, switchable or not."""
    real = plan_mod._allocate_with_phases

    def all_switchable(snap, controlled, memory, now_s, delay_s, *args):  # type: ignore[no-untyped-def]
        views = [v._replace(evse=dataclasses.replace(v.evse, phase_switching=True))
                 for v in controlled]
        return real(snap, views, memory, now_s, delay_s, *args)

    monkeypatch.setattr(plan_mod, "_allocate_with_phases", all_switchable)
    _caught_by("phases")


def test_unfair_split_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Greedy filling: in admission order each wallbox takes all it can. Safe, every limit
    used, but not max-min fair."""

    def greedy(admitted, rows) -> None:  # type: ignore[no-untyped-def]
        for ev in admitted:
            room = min((rows.slack[r] // c for r, c in ev.rows), default=ev.max_ma)
            extra = max(0, min(ev.max_ma - ev.current, room))
            ev.current += extra
            for r, c in ev.rows:
                rows.slack[r] -= c * extra
            if ev.current >= ev.max_ma and ev.cap_reason is not None:
                ev.reason = ev.cap_reason  # an imbalance cap keeps its reason
            else:
                code = "max_current" if ev.current >= ev.max_ma else "site_limit"
                ev.reason = Reason(code, "greedy (mutant)")

    monkeypatch.setattr(allocator_mod, "_water_fill", greedy)
    _caught_by("fairness")


def test_tiers_sharing_the_fill_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Admission by strict tiers, but one water-filling for all tiers together: a lower tier
    rises next to a higher one that is held below its maximum."""
    admit, fill = allocator_mod._admit, allocator_mod._water_fill

    def shared_fill(evs, rows, now=0.0, params=None):  # type: ignore[no-untyped-def]
        tiers: dict = {}
        for ev in evs:
            tiers.setdefault(ev.tier, []).append(ev)
        admitted = []
        for key in sorted(tiers):
            admitted += admit(sorted(tiers[key], key=lambda e: e.order_key), rows,
                              list(rows.slack), now, params)
        fill(admitted, rows)
        return admitted

    monkeypatch.setattr(allocator_mod, "_run_tiers", shared_fill)
    _caught_by("fairness")


def test_no_water_filling_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everyone admitted stays at its minimum: fair, safe, and leaves current unused."""

    def minimum_only(admitted, rows) -> None:  # type: ignore[no-untyped-def]
        for ev in admitted:
            ev.reason = Reason("site_limit", "minimum only (mutant)")

    monkeypatch.setattr(allocator_mod, "_water_fill", minimum_only)
    _caught_by("liveness")
