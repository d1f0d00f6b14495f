"""The closed-loop scenario runner (tests/core/physics.py) catches a broken accounting: with
the grid meter read before the wallboxes, booking each wallbox at its newest reading instead
of at the meter's time under-books the house and overloads the site."""

from __future__ import annotations

import pytest

import chargebrain.core.plan as planner
from tests.core.physics import play
from tests.core.scenario_files import load


@pytest.mark.parametrize("name", ["lag_plug_in_mid_run.yaml",
                                  "lag_two_cycles_house_drops.yaml"])
def test_booking_wallboxes_at_their_newest_reading_is_caught(name, monkeypatch):
    play(load(name))  # the real accounting passes

    def newest(readings, commands, mask, at_s, *settings):
        return readings[-1].currents_ma, readings[-1].currents_ma

    monkeypatch.setattr(planner, "draw_bounds_ma", newest)
    with pytest.raises(AssertionError, match="the plan gives"):
        play(load(name))
