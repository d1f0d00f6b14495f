"""Property: pushed wallboxes and a pushed grid meter in any order, cars that follow late,
plans that start between any two pushes — the limits hold at every step and nobody is held
back for good.

A pure simulation of what the control shell does with HTTP-input devices (control/cycle.py,
api/handlers/ajax.py), built only from the core's `plan` and `released_ma`:

- each step (1 s) every wallbox and the grid meter push once, in an order hypothesis picks;
  a plan may start after any push (hypothesis decides), always after a push from a wallbox
  no plan covers yet (a new car, an unplug), and once per step as the periodic cycle;
- a wallbox push carries what its car draws now and gets `released_ma` of the last plan as
  its answer (cuts before raises); its car draws that answer `delay_s` later;
- the grid meter push carries the house load plus every car's draw at that moment.

Checked after every push: every answer 0 or min..max; what the cars were told (what they
draw `delay_s` later) keeps every site phase within the limit, allowing the rise of
the house load since the cars last settled (docs/load-management.md §12: a rise that comes
while a car is still following a setpoint is believed as far as the readings prove it, and in
full at the latest `settle_s` after the last setpoint change). At the end, after the house
load and the cars stayed the same for a while, every wallbox has been told its planned current.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargebrain.core.plan import plan
from chargebrain.core.release import released_ma
from chargebrain.core.site import (
    CommandSample,
    DrawSample,
    EvseInput,
    MeterInput,
    MeterRole,
    PlanMemory,
    PlanResult,
    SiteInput,
    SiteSettings,
)
from chargebrain.units import ZERO, Phases, add, rotate_phases

MIN_MA = 6000
STEP_S = 1.0
HISTORY = 4
SETTLE_S = SiteSettings().settle_s
# A house-load change smaller than what settling cars could also explain is believed once they
# settle (docs/load-management.md §12); below a meter's resolution that may take a while.
RESOLUTION_MA = 100


@dataclass
class Box:
    dev_id: str
    car_phases: int
    max_ma: int
    priority: int
    rotation: int
    plug_at: int  # step the car arrives
    leave_at: int | None  # step it leaves (None: stays)
    told: list[tuple[float, int]] = field(default_factory=list)  # answers (time, mA)
    readings: list[DrawSample] = field(default_factory=list)
    planned_plugged: bool | None = None  # plug state the last plan covering it saw

    def plugged(self, step: int) -> bool:
        return step >= self.plug_at and (self.leave_at is None or step < self.leave_at)

    def told_ma(self) -> int:
        return self.told[-1][1] if self.told else 0

    def draw(self, t: float, delay_s: float, step: int) -> Phases:
        """What the car draws at `t`: the last answer that reached it (EVSE frame)."""
        if not self.plugged(step):
            return ZERO
        current = 0
        for at, cur in self.told:
            if at + delay_s <= t:
                current = cur
        return self._on_phases(current)

    def would_draw(self, current: int) -> Phases:
        return self._on_phases(current)

    def _on_phases(self, current: int) -> Phases:
        if current < MIN_MA:
            return ZERO
        return (current,) * 3 if self.car_phases == 3 else (current, 0, 0)


@st.composite
def worlds(draw):
    n = draw(st.integers(1, 4))
    boxes = []
    for i in range(n):
        leave = draw(st.none() | st.integers(3, 8))
        boxes.append(Box(f"E{i + 2}", draw(st.sampled_from([1, 3])),
                         draw(st.sampled_from([16000, 32000])), draw(st.sampled_from([1, 1, 2])),
                         draw(st.sampled_from([0, 120, 240])), draw(st.integers(0, 4)), leave))
    limit = draw(st.sampled_from([16000, 25000, 32000]))
    busy = 10  # steps with changes; then a quiet tail
    houses = draw(st.lists(st.tuples(*[st.integers(0, 14000)] * 3), min_size=busy,
                           max_size=busy))
    # no car reacts faster than SiteSettings.response_s (0.1 s), the accounting's assumption
    delay = draw(st.sampled_from([0.15, 0.3, 1.0, 2.5]))
    return boxes, limit, houses, delay


def _site(boxes: list[Box], limit: int, meter: tuple[float, Phases] | None) -> SiteInput:
    evses = []
    for b in boxes:
        last = b.readings[-1] if b.readings else None
        one_phase_seen = any(r.currents_ma[0] > 0 and not any(r.currents_ma[1:])
                             for r in b.readings[-HISTORY:])
        evses.append(EvseInput(
            b.dev_id, connected=bool(last and last.plugged),
            charging=bool(last and any(last.currents_ma)),
            measured_ma=last.currents_ma if last else None,
            phases_mask=0b001 if one_phase_seen else 0b111, phase_rotation_deg=b.rotation,
            min_current_ma=MIN_MA, max_current_ma=b.max_ma, priority=b.priority,
            arrival_order=b.plug_at, readings=tuple(b.readings[-HISTORY:]),
            commands=tuple(CommandSample(at, cur) for at, cur in b.told[-HISTORY:])))
    if meter is None:  # configured, nothing pushed yet: stale, the worst case
        meters = (MeterInput("M1", MeterRole.GRID),)
    else:
        meters = (MeterInput("M1", MeterRole.GRID, currents_ma=meter[1],
                             power_w=sum(meter[1]) * 230 // 1000, read_at_s=meter[0]),)
    settings_ = SiteSettings(max_total_current_ma=limit, max_imbalance_ma=0)
    return SiteInput(settings_, (), meters, tuple(evses))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), data=st.data())
def test_limits_hold_for_any_push_order_and_lag(world, data):
    boxes, limit, busy_houses, delay = world
    quiet = 8
    houses = busy_houses + [busy_houses[-1]] * quiet
    memory = PlanMemory()
    last: PlanResult | None = None
    meter: tuple[float, Phases] | None = None

    def run_plan(now: float) -> None:
        nonlocal memory, last
        site = _site(boxes, limit, meter)
        last = plan(site, memory, now)
        memory = last.memory
        for b in boxes:
            b.planned_plugged = b.readings[-1].plugged if b.readings else None

    for step, house in enumerate(houses):
        t0 = step * STEP_S
        order = data.draw(st.permutations([*range(len(boxes)), -1]), label=f"order {step}")
        for j, who in enumerate(order):
            t = t0 + 0.05 * (j + 1)
            if who == -1:  # the grid meter
                grid = house
                for b in boxes:
                    grid = add(grid, rotate_phases(b.draw(t, delay, step), b.rotation))
                meter = (t, grid)
            else:
                b = boxes[who]
                reading = DrawSample(t, b.draw(t, delay, step), b.plugged(step))
                b.readings.append(reading)
                if last is None or b.planned_plugged != reading.plugged:
                    run_plan(t)  # a push no plan covers runs one at once
                assert last is not None
                planned = {x.dev_id: _planned(last, x) for x in boxes}
                told = {x.dev_id: _may_draw(x) for x in boxes}
                answer = released_ma(b.dev_id, planned, told, last.diagnostics)
                assert answer == 0 or MIN_MA <= answer <= b.max_ma, (b.dev_id, answer)
                if answer != b.told_ma() or not b.told:
                    b.told.append((t, answer))
            _check(boxes, limit, houses, step, t, delay)
            if data.draw(st.booleans(), label="a cycle starts here"):
                run_plan(t + 0.01)
        run_plan(t0 + 0.9)  # the periodic cycle
    # quiet tail: nobody is held back for good. Two more rounds of pushes after the last
    # plan: one for the cuts, one for the raises they make room for.
    assert last is not None
    final = len(houses) * STEP_S
    for k in range(2):
        for n, b in enumerate(boxes):
            t = final + k * STEP_S + 0.05 * (n + 1)
            b.readings.append(DrawSample(t, b.draw(t, delay, len(houses) - 1),
                                         b.plugged(len(houses) - 1)))
            planned = {x.dev_id: _planned(last, x) for x in boxes}
            told = {x.dev_id: _may_draw(x) for x in boxes}
            answer = released_ma(b.dev_id, planned, told, last.diagnostics)
            if answer != b.told_ma():
                b.told.append((t, answer))
    for b in boxes:
        if b.plugged(len(houses) - 1):
            assert b.told_ma() == _planned(last, b), (b.dev_id, b.told_ma(), _planned(last, b))


def _planned(result: PlanResult, box: Box) -> int:
    sp = result.setpoints.get(box.dev_id)
    return sp.current_ma if sp is not None and sp.current_ma > 0 else 0


def _may_draw(box: Box) -> int:
    """What the shell counts a wallbox as told (0 once a reading after it shows no car)."""
    if not box.told:
        return 0
    at, cur = box.told[-1]
    if box.readings and box.readings[-1].at_s > at and not box.readings[-1].plugged:
        return 0
    return cur


def _check(boxes: list[Box], limit: int, houses: list[Phases], step: int, t: float,
           delay: float) -> None:
    house = houses[step]
    # A rise is believed in full once the cars have settled: at the latest settle_s (+ the
    # car's delay) after the last setpoint change; before that only as far as readings prove.
    # Then a reading, a grid reading and the cut's delivery follow, one push each (3 steps).
    last_change = max((b.told[-1][0] for b in boxes if b.told), default=t)
    start = min(t, last_change) - SETTLE_S - delay - 3 * STEP_S
    lowest = [min(h[i] for k, h in enumerate(houses[:step + 1]) if k * STEP_S >= start
                  or k == step) for i in range(3)]
    # Every car follows its answers with the same delay, so what the site draws at any moment
    # is what the cars had been told `delay` before: checking what they are told now, after
    # every push, checks every moment.
    worst = house
    for b in boxes:
        if b.plugged(step):
            worst = add(worst, rotate_phases(b.would_draw(b.told_ma()), b.rotation))
    for i in range(3):
        allowance = house[i] - lowest[i] + RESOLUTION_MA
        assert worst[i] <= limit + allowance, (
            f"t={t:.2f}: phase {i + 1} {worst[i]} over {limit} + {allowance} "
            f"(house {house}); told { {b.dev_id: b.told for b in boxes} }")
