"""Run every YAML scenario in tests/core/scenarios/ through `plan`, cycle by cycle."""

from __future__ import annotations

from typing import Any

import pytest

from chargebrain.core.plan import plan
from tests.core.physics import play
from tests.core.scenario_files import load, scenario_names


def _check_setpoint(where: str, dev_id: str, got: Any, want: Any) -> list[str]:
    if isinstance(want, list):
        want = {"current": want[0], "reason": want[1]}
    elif isinstance(want, int):
        want = {"current": want}
    actual = {
        "current": got.current_ma,
        "reason": got.reason.code,
        "paused": got.paused,
        "pause_reason": got.pause_reason,
        "group": got.reason.group_id,
        "phase": got.reason.phase,
        "unlimited": got.unlimited,
        "phases": got.phases_mask,
        "one_phase": got.one_phase,
    }
    return [
        f"{where} {dev_id}.{key}: expected {value!r}, got {actual[key]!r} ({got.reason.text})"
        for key, value in want.items()
        if actual[key] != value
    ]


@pytest.mark.parametrize("name", scenario_names())
def test_scenario(name: str) -> None:
    scenario = load(name)
    memory = scenario.memory
    problems: list[str] = []
    played = iter(play(scenario)) if scenario.physics is not None else None
    for cycle in scenario.cycles:
        # closed loop (physics): the cars' draws come from earlier setpoints
        result = next(played)[1] if played is not None else plan(cycle.site, memory, cycle.at)
        where = f"t={cycle.at:g}"
        for dev_id, want in cycle.expect.items():
            if dev_id not in result.setpoints:
                problems.append(f"{where} {dev_id}: no setpoint")
                continue
            problems += _check_setpoint(where, dev_id, result.setpoints[dev_id], want)
        for key, want in cycle.diag.items():
            got = getattr(result.diagnostics, key)
            if isinstance(got, tuple):
                got = list(got)
            if got != want:
                problems.append(f"{where} diag {key}: expected {want!r}, got {got!r}")
        if cycle.write is not None and result.write != cycle.write:
            problems.append(f"{where} write: expected {cycle.write}, got {result.write}")
        memory = result.memory
    assert not problems, "\n".join(problems)


def test_there_are_enough_scenarios() -> None:
    assert len(scenario_names()) >= 40
