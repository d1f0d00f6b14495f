"""Closed-loop play of a scenario file with a `physics:` block (see scenario_files).

Polled wallboxes (a local Power Brain, `evse_sim`) are written in the cycle that planned them,
and their cars follow with a delay: here a car draws a setpoint from `car_delay_s` after it
was written (3 s, one cycle of the scenarios, by default). Each cycle the runner builds what
the cycle would read: every wallbox's reading history (time-stamped draws at the cycle times)
and the setpoints handed to it (time-stamped), and a grid meter reading of house load plus
every car taken `meter_offset_s` from the cycle's time (negative: read before the wallboxes,
as a slow poll or an older push would be); then it plans and checks, for every cycle:

- every setpoint is 0 or within min..max of its wallbox;
- what the cars draw now keeps every site phase within the limit, allowing the house-load rise
  since the oldest reading this plan relied on (which no plan could have known);
- what the plan gives keeps every site phase within the limit with the house load of now,
  allowing the same rise (the accounting may still be settling on it);
- every group phase within the group's limit, with what the cars draw and with the plan.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chargebrain.core.plan import plan
from chargebrain.core.site import (
    CommandSample,
    DrawSample,
    EvseInput,
    MeterInput,
    MeterRole,
    PlanMemory,
    PlanResult,
    SiteInput,
)
from chargebrain.units import ZERO, Phases, add, rotate_phases
from tests.core.scenario_files import Scenario

HISTORY = 4


def _draw(evse: EvseInput, told_ma: int, car_phases: int) -> Phases:
    """What the car at `evse` draws after being told `told_ma` (EVSE frame)."""
    if not evse.connected or told_ma < evse.min_current_ma or told_ma <= 0:
        return ZERO
    return (told_ma, told_ma, told_ma) if car_phases == 3 else (told_ma, 0, 0)


def play(scenario: Scenario) -> list[tuple[float, PlanResult]]:
    """Run every cycle; raise AssertionError at the first broken rule."""
    physics: dict[str, Any] = scenario.physics or {}
    delay_s = float(physics.get("car_delay_s", 3.0))
    offset_s = float(physics.get("meter_offset_s", 0.0))
    grid_id = str(physics.get("grid_meter", "M1"))
    house: Phases = tuple(physics.get("house_ma", (0, 0, 0)))  # type: ignore[assignment]
    car_phases: dict[str, int] = dict(physics.get("car_phases") or {})
    told: dict[str, list[tuple[float, int]]] = {}  # per EVSE: (time, setpoint), oldest first
    seen: dict[str, list[DrawSample]] = {}
    houses: list[tuple[float, Phases]] = []  # (from when, house load)
    memory: PlanMemory = scenario.memory
    results: list[tuple[float, PlanResult]] = []

    def house_at(t: float) -> Phases:
        value = houses[0][1]
        for since, h in houses:
            if since <= t:
                value = h
        return value

    def draw_at(e: EvseInput, t: float) -> Phases:
        current = 0  # the last setpoint that has reached the car by `t`
        for at, cur in told.get(e.dev_id, []):
            if at + delay_s <= t:
                current = cur
        return _draw(e, current, car_phases.get(e.dev_id, 3))

    for cycle in scenario.cycles:
        now = cycle.at
        if cycle.house_ma is not None:
            house = cycle.house_ma
        houses.append((now, house))
        site = cycle.site
        meter_at = now + offset_s
        evses: list[EvseInput] = []
        grid = house_at(meter_at)
        drawn: dict[str, Phases] = {}
        for e in site.evses:
            draw = draw_at(e, now)
            drawn[e.dev_id] = draw
            grid = add(grid, rotate_phases(draw_at(e, meter_at), e.phase_rotation_deg))
            samples = seen.setdefault(e.dev_id, [])
            samples.append(DrawSample(now, draw, e.connected))
            del samples[:-HISTORY]
            commands = tuple(CommandSample(at, cur)
                             for at, cur in told.get(e.dev_id, [])[-HISTORY:])
            evses.append(replace(e, measured_ma=draw, charging=e.connected and any(draw),
                                 readings=tuple(samples), commands=commands))
        meters = [m for m in site.meters if m.dev_id != grid_id]
        meters.append(MeterInput(grid_id, MeterRole.GRID, currents_ma=grid,
                                 power_w=sum(grid) * site.settings.system_voltage_v // 1000,
                                 read_at_s=meter_at))
        played = SiteInput(site.settings, site.groups, tuple(meters), tuple(evses),
                           site.surplus_w)
        result = plan(played, memory, now)
        # the house may have risen unseen since the oldest reading this plan relied on
        window_s = delay_s + abs(offset_s)
        recent = [h for since, h in houses if since >= now - window_s - 1e-9]
        before = [h for since, h in houses if since < now - window_s - 1e-9]
        _check(played, result, drawn, before[-1:] + recent, now)
        for e in evses:
            sp = result.setpoints[e.dev_id]
            told.setdefault(e.dev_id, []).append((now, max(0, sp.current_ma)))
        memory = result.memory
        results.append((now, result))
    return results


def _check(site: SiteInput, result: PlanResult, drawn: dict[str, Phases],
           recent_houses: list[Phases], now: float) -> None:
    house = recent_houses[-1]
    lowest = tuple(min(h[i] for h in recent_houses) for i in range(3))
    rise = tuple(max(0, house[i] - lowest[i]) for i in range(3))
    limit = site.settings.max_total_current_ma
    group_limit = {g.group_id: g.max_current_ma for g in site.groups}
    parents = {g.group_id: g.parent_id for g in site.groups}
    on_site_drawn: Phases = house
    on_site_given: Phases = house
    group_drawn: dict[int, Phases] = {}
    group_given: dict[int, Phases] = {}
    for e in site.evses:
        sp = result.setpoints[e.dev_id]
        cur = sp.current_ma
        assert cur == 0 or e.min_current_ma <= cur <= e.max_current_ma, (
            f"t={now:g} {e.dev_id}: {cur} mA outside 0 / {e.min_current_ma}..{e.max_current_ma}")
        car = drawn[e.dev_id]
        draws_on = [c > 0 for c in car] if any(car) else [bool(e.phases_mask >> i & 1)
                                                         for i in range(3)]
        given_frame = tuple(cur if draws_on[i] else 0 for i in range(3))
        given = rotate_phases(given_frame, e.phase_rotation_deg)  # type: ignore[arg-type]
        draw = rotate_phases(car, e.phase_rotation_deg)
        on_site_drawn = add(on_site_drawn, draw)
        on_site_given = add(on_site_given, given)
        g: int | None = e.group_id
        while g is not None and g in group_limit:
            group_drawn[g] = add(group_drawn.get(g, ZERO), draw)
            group_given[g] = add(group_given.get(g, ZERO), given)
            g = parents.get(g)
    for i in range(3):
        assert on_site_drawn[i] <= limit + rise[i], (
            f"t={now:g}: the cars draw {on_site_drawn} with house {house} (rise {rise})")
        assert on_site_given[i] <= limit + rise[i], (
            f"t={now:g}: the plan gives {on_site_given} with house {house} (rise {rise}): "
            f"{ {k: v.current_ma for k, v in result.setpoints.items()} }")
    for g, cap in group_limit.items():
        if cap is None:
            continue
        assert max(group_drawn.get(g, ZERO)) <= cap, f"t={now:g}: group {g} draws over {cap}"
        assert max(group_given.get(g, ZERO)) <= cap, f"t={now:g}: group {g} given over {cap}"
