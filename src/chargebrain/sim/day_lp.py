"""The perfect-foresight optimum of a simulated day: a linear program (docs/simulate-day.md).

Knowing the whole day in advance (PV, house load, when each car comes and goes), how much PV
energy could the cars take at most, within the same site limit per phase, each car's maximum
current and the energy it needs? Minimum currents and on/off are relaxed (a car may take any
current between 0 and its maximum), and so is the choice between one and three phases (a
switchable car may split a step between them), which makes it a linear program and an upper
bound for any real controller (the docs say why).

Per step t (length `step_s`) and car i, in amperes per phase of the car's own frame:
- `a[i,t]` the three-phase current (the same on its L1, L2, L3),
- `b[i,t]` the one-phase current (on its L1 only; only for cars that can draw on one phase),
- `y[t]` the PV power going into cars (W).

Maximise Σ y[t]·Δ subject to
- a + b ≤ max_A · present[i,t] (a, b ≥ 0; present = share of the step the car is there),
- per building phase p: Σ_i (a + b·[car L1 is p]) ≤ limit_A − house_A[p,t] + pv_A[p,t]
  (clipped at 0: when the house alone is over the limit, the cars get nothing),
- per car: Σ_t V·(3a + b)·Δ ≤ needed energy,
- y[t] ≤ Σ_i V·(3a + b) and 0 ≤ y[t] ≤ max(0, PV − house) (PV serves the house first;
  for an LP step that averages several simulation steps, the average of their surpluses).

Solved with scipy's `linprog` (HiGHS). Pure apart from the solver; scipy is imported when an
optimum is computed, so importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LpCar:
    """One car: present[t] in 0..1 per LP step, what it needs (Wh), its wallbox."""

    name: str
    present: tuple[float, ...]
    need_wh: float
    max_ma: int = 16000
    rotation_deg: int = 0  # where the wallbox's L1 is wired in the building (0/120/240)
    three_phase: bool = True  # the car can draw on three phases
    one_phase: bool = True  # the car/wallbox can draw on L1 alone (switchable, or a 1p car)


@dataclass(frozen=True, slots=True)
class LpDay:
    """The day as the LP sees it: per step averages."""

    step_s: float
    pv_w: tuple[float, ...]  # all phases together, spread evenly over the three
    house_ma: tuple[tuple[float, float, float], ...]  # per building phase
    limit_ma: int
    voltage_v: int
    cars: tuple[LpCar, ...]
    # PV left after the house per step (W); None: max(0, PV − house) of the averages. A
    # step that averages finer steps needs the average of their surpluses (max(0, ·) of an
    # average is less than the average of max(0, ·), and the bound must not be cut).
    surplus_w: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class LpResult:
    """The optimum: PV into cars (Wh), each car's energy (Wh) and per-step power (W)."""

    status: str
    pv_to_cars_wh: float
    car_wh: dict[str, float]
    car_power_w: dict[str, tuple[float, ...]]


def _l1_phase(rotation_deg: int) -> int:
    """The building phase (0–2) the wallbox's L1 is wired to."""
    return {0: 0, 120: 1, 240: 2}.get(rotation_deg, 0)


def solve(day: LpDay) -> LpResult:
    """Solve the LP of the module docstring; ValueError when the solver fails."""
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    steps = len(day.pv_w)
    if len(day.house_ma) != steps or any(len(c.present) != steps for c in day.cars):
        raise ValueError("every series must have one value per step")
    volt = float(day.voltage_v)
    hours = day.step_s / 3600
    n_cars = len(day.cars)
    # variable layout: per car [a_0..a_T-1, b_0..b_T-1], then y_0..y_T-1
    def a_ix(i: int, t: int) -> int:
        return 2 * steps * i + t

    def b_ix(i: int, t: int) -> int:
        return 2 * steps * i + steps + t

    y0 = 2 * steps * n_cars
    n_vars = y0 + steps
    bounds: list[tuple[float, float]] = [(0.0, 0.0)] * n_vars
    surplus = (list(day.surplus_w) if day.surplus_w is not None else
               [max(0.0, day.pv_w[t] - sum(day.house_ma[t]) * volt / 1000)
                for t in range(steps)])
    if len(surplus) != steps:
        raise ValueError("every series must have one value per step")
    for t in range(steps):
        bounds[y0 + t] = (0.0, surplus[t])
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    rhs: list[float] = []

    def row(entries: list[tuple[int, float]], bound: float) -> None:
        r = len(rhs)
        for c, v in entries:
            rows.append(r)
            cols.append(c)
            vals.append(v)
        rhs.append(bound)

    for i, car in enumerate(day.cars):
        top = car.max_ma / 1000
        for t in range(steps):
            cap = top * max(0.0, min(1.0, car.present[t]))
            bounds[a_ix(i, t)] = (0.0, cap if car.three_phase else 0.0)
            bounds[b_ix(i, t)] = (0.0, cap if car.one_phase else 0.0)
            if car.three_phase and car.one_phase and cap > 0:
                row([(a_ix(i, t), 1.0), (b_ix(i, t), 1.0)], cap)
        # energy: sum V (3a + b) dt <= need
        energy = [(a_ix(i, t), 3 * volt * hours) for t in range(steps)]
        energy += [(b_ix(i, t), volt * hours) for t in range(steps)]
        row(energy, max(0.0, car.need_wh))
    limit_a = day.limit_ma / 1000
    for t in range(steps):
        pv_a = day.pv_w[t] / volt / 3  # balanced inverter, A per phase
        for p in range(3):
            room = max(0.0, limit_a - day.house_ma[t][p] / 1000 + pv_a)
            entries = [(a_ix(i, t), 1.0) for i in range(n_cars)]
            entries += [(b_ix(i, t), 1.0) for i, c in enumerate(day.cars)
                        if _l1_phase(c.rotation_deg) == p]
            row(entries, room)
        # y <= sum V (3a + b)
        link = [(y0 + t, 1.0)]
        for i in range(n_cars):
            link += [(a_ix(i, t), -3 * volt), (b_ix(i, t), -volt)]
        row(link, 0.0)
    a_ub = coo_matrix((vals, (rows, cols)), shape=(len(rhs), n_vars)).tocsr()
    cost = np.zeros(n_vars)
    cost[y0:] = -hours  # maximise PV energy into cars
    # a tiny reward for energy from any source keeps the schedule meaningful where PV is
    # not binding; it is small enough never to trade PV away (≤ 1e-6 Wh per Wh)
    for i in range(n_cars):
        for t in range(steps):
            cost[a_ix(i, t)] -= 1e-6 * 3 * volt * hours
            cost[b_ix(i, t)] -= 1e-6 * volt * hours
    result = linprog(cost, A_ub=a_ub, b_ub=np.array(rhs), bounds=bounds, method="highs")
    if result.status != 0 or result.x is None:
        raise ValueError(f"the optimum could not be computed: {result.message}")
    x = result.x
    pv_wh = float(sum(x[y0:]) * hours)
    car_wh: dict[str, float] = {}
    car_power: dict[str, tuple[float, ...]] = {}
    for i, car in enumerate(day.cars):
        power = tuple(volt * (3 * x[a_ix(i, t)] + x[b_ix(i, t)]) for t in range(steps))
        car_power[car.name] = power
        car_wh[car.name] = float(sum(power) * hours)
    return LpResult("optimal", pv_wh, car_wh, car_power)
