"""The weather and the house of a simulated day (`chargebrain simulate-day`, sim/day.py).

Pure and deterministic: the same seed gives the same day, to the watt.

- **PV**: a ~10 kWp roof in summer, its clear-sky output a bell from sunrise 05:30 to sunset
  21:00 (peak `PV_PEAK_W` at 13:15, inverter-limited), times a seeded cloud process: clear
  gaps (exponential, mean 12 min) alternate with clouds of 1–20 min that cut the output to
  15–60 % with cloud-edge ramps of 20–120 s, plus a slow haze (±5 %). Generated, not a
  committed recording; `--profile FILE` plays a recorded CSV instead (`read_csv`).
- **House**: base load, a fridge cycling on L2, and appliances with seeded start times:
  breakfast (kettle L1, toaster L3), washing machine (heats on L2), lunch (hob L1+L2, oven L3),
  dishwasher (heats on L3), a kettle in the afternoon, dinner (hob, oven: ~7.5 kW at once),
  evening lights and TV. Per phase, in W.

A profile is sampled once per second of the day (`DayProfile.pv_w[s]`, `house_w[s]`);
the simulation holds each value for its step.

CSV format (`read_csv` / `write_csv`): a header `time_s,pv_w,house_l1_w,house_l2_w,house_l3_w`
and rows with seconds since midnight (ascending, the first at 0); each value holds until the
next row.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

DAY_S = 86400
PV_PEAK_W = 8500  # a 10 kWp array's AC peak on a clear summer day (inverter, heat, angle)
SUNRISE_H = 5.5
SUNSET_H = 21.0
CSV_HEADER = ("time_s", "pv_w", "house_l1_w", "house_l2_w", "house_l3_w")


@dataclass(frozen=True, slots=True)
class DayProfile:
    """PV output (W, all phases together, balanced) and house load (W per phase) for every
    second of one day."""

    pv_w: tuple[int, ...]
    house_w: tuple[tuple[int, int, int], ...]
    source: str = "generated"

    def __post_init__(self) -> None:
        if len(self.pv_w) != DAY_S or len(self.house_w) != DAY_S:
            raise ValueError("a day profile has one value per second (86400)")

    def energy_wh(self, start_s: int = 0, end_s: int = DAY_S) -> tuple[float, float]:
        """(PV energy, house energy) between two seconds of the day, Wh."""
        pv = sum(self.pv_w[start_s:end_s]) / 3600
        house = sum(sum(h) for h in self.house_w[start_s:end_s]) / 3600
        return pv, house


def clear_sky_w(second: float) -> float:
    """The clear-sky output at a second of the day (W)."""
    hour = second / 3600
    if not SUNRISE_H < hour < SUNSET_H:
        return 0.0
    x = (hour - SUNRISE_H) / (SUNSET_H - SUNRISE_H)
    return PV_PEAK_W * math.sin(math.pi * x) ** 1.2


def cloud_factors(rng: random.Random) -> list[float]:
    """Transmission (0–1) for every second: clouds of 1–20 min with ramped edges."""
    factor = [1.0] * DAY_S
    t = rng.uniform(0, 900) + SUNRISE_H * 3600
    while t < SUNSET_H * 3600:
        t += rng.expovariate(1 / 720)  # clear gap, mean 12 min
        length = rng.uniform(60, 1200)  # the cloud, 1–20 min
        depth = rng.uniform(0.15, 0.6)  # what gets through at its core
        ramp = min(rng.uniform(20, 120), length / 2)
        start, end = int(t), int(t + length)
        for s in range(max(0, start), min(DAY_S, end)):
            edge = min(s - start, end - s)
            share = 1.0 if edge >= ramp else edge / ramp
            factor[s] = min(factor[s], 1.0 - (1.0 - depth) * share)
        t += length
    phase = rng.uniform(0, 2 * math.pi)
    for s in range(DAY_S):  # slow haze
        factor[s] *= 0.95 + 0.05 * math.sin(2 * math.pi * s / 5400 + phase)
    return factor


def _appliances(rng: random.Random) -> list[tuple[float, float, int, int]]:
    """(start s, duration s, phase 0–2, W) of the day's appliance runs."""

    def at(hour: float, jitter_min: float = 10) -> float:
        return hour * 3600 + rng.uniform(-jitter_min, jitter_min) * 60

    runs: list[tuple[float, float, int, int]] = []
    breakfast = at(7.0)
    runs += [(breakfast + 300, 240, 0, 2000), (breakfast + 600, 180, 2, 800)]
    wash = at(10.0, 20)
    runs += [(wash + 300, 1200, 1, 2000), (wash, 5400, 1, 250)]
    lunch = at(12.0)
    runs += [(lunch, 2400, 0, 2000), (lunch + 300, 1800, 1, 1500), (lunch, 2700, 2, 2200)]
    dishes = at(13.5, 15)
    runs += [(dishes + 300, 900, 2, 2000), (dishes + 3600, 900, 2, 2000), (dishes, 5400, 2, 150)]
    runs += [(at(16.0, 20), 240, 0, 2000)]
    dinner = at(18.0)
    runs += [(dinner, 3000, 0, 3000), (dinner + 300, 2400, 1, 2000), (dinner, 2700, 2, 2500)]
    for phase in range(3):
        runs.append((at(19.0), 4 * 3600, phase, 150))  # lights, TV
    return runs


def generate(seed: int) -> DayProfile:
    """The deterministic day of `seed` (see the module docstring)."""
    rng = random.Random(seed)
    clouds = cloud_factors(rng)
    pv = tuple(round(clear_sky_w(s) * clouds[s]) for s in range(DAY_S))
    house = [[120.0, 110.0, 100.0] for _ in range(DAY_S)]
    for s in range(DAY_S):
        if s % 2400 < 900:  # fridge compressor
            house[s][1] += 100
    for start, length, phase, watts in _appliances(rng):
        for s in range(max(0, int(start)), min(DAY_S, int(start + length))):
            house[s][phase] += watts
    rounded = tuple((round(h[0]), round(h[1]), round(h[2])) for h in house)
    return DayProfile(pv, rounded, f"generated (seed {seed})")


def read_csv(path: Path) -> DayProfile:
    """A recorded day (module docstring format); ValueError on a malformed file."""
    rows: list[tuple[int, int, int, int, int]] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
            raise ValueError(f"{path}: the header must be {','.join(CSV_HEADER)}")
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                values = tuple(int(float(v)) for v in row)
            except ValueError as err:
                raise ValueError(f"{path}:{n}: not a number") from err
            if len(values) != 5:
                raise ValueError(f"{path}:{n}: expected 5 columns")
            if not 0 <= values[0] < DAY_S or (rows and values[0] <= rows[-1][0]):
                raise ValueError(f"{path}:{n}: time_s must ascend within 0..86399")
            if min(values[1:]) < 0:
                raise ValueError(f"{path}:{n}: powers must not be negative")
            rows.append(values)  # type: ignore[arg-type]
    if not rows or rows[0][0] != 0:
        raise ValueError(f"{path}: the first row must be at time_s 0")
    pv: list[int] = []
    house: list[tuple[int, int, int]] = []
    for i, row in enumerate(rows):
        end = rows[i + 1][0] if i + 1 < len(rows) else DAY_S
        pv += [row[1]] * (end - row[0])
        house += [(row[2], row[3], row[4])] * (end - row[0])
    return DayProfile(tuple(pv), tuple(house), f"recorded ({path.name})")


def write_csv(profile: DayProfile, path: Path, every_s: int = 10) -> None:
    """Write `profile` as CSV, one row every `every_s` seconds (the value at that second)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for s in range(0, DAY_S, every_s):
            writer.writerow((s, profile.pv_w[s], *profile.house_w[s]))
