"""A simulated year of 20 devices and the site, written in accelerated time (a fake clock).

The schedule ticks as densely as each tier keeps data at the end: hourly until 40 days before
the end (only the 1 h tier keeps that), every 15 min until 10 days before, every minute until
2 days before, then every 10 s (raw). So every tier ends up with as many rows as a year of
10 s recording leaves, in a few ten thousand ticks instead of three million.

Devices: 8 wallboxes (import counter), a house, a PV and a grid meter with import/export
counters, 3 meters with one counter, 6 power-only meters (energy from integrated power).
Counters are the exact integral of the simulated power (Wh, as the devices report them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from chargebrain.recorder.samples import Measurement, site_key
from chargebrain.recorder.tiers import DAY_S

YEAR_S = 365 * DAY_S
END_S = 1_798_761_600  # 2027-01-01T00:00:00Z
SCHEDULE = ((40 * DAY_S, 3600), (10 * DAY_S, 900), (2 * DAY_S, 60), (0, 10))


def ticks(end_s: int = END_S, year_s: int = YEAR_S) -> Iterator[int]:
    """Tick times from `end_s - year_s` to `end_s`, densest near the end (see above)."""
    t = end_s - year_s
    for until_before_s, step in SCHEDULE:
        while t <= end_s - until_before_s:
            yield t
            t += step


def _wave(t: int, period_s: float, phase: float) -> float:
    return 0.5 + 0.5 * math.sin(2 * math.pi * t / period_s + phase)


def _noise(t: int, i: int) -> float:
    """A cheap repeatable value in [0, 1)."""
    return ((t * 2654435761 + i * 40503) % 4294967296) / 4294967296


@dataclass
class SimDevice:
    key: str
    power: Callable[[int], int]
    counters: str  # "both", "import", "none"
    evse: bool = False
    import_wh: float = 0.0
    export_wh: float = 0.0
    last_t: int | None = None
    last_w: int = 0

    def measure(self, t: int) -> Measurement:
        power_w = self.power(t)
        if self.last_t is not None:  # the counter integrates what was drawn (trapezoid)
            wh = (self.last_w + power_w) / 2 * (t - self.last_t) / 3600
            if wh >= 0:
                self.import_wh += wh
            else:
                self.export_wh -= wh
        self.last_t, self.last_w = t, power_w
        imp = int(self.import_wh) + 1 if self.counters != "none" else 0
        exp = int(self.export_wh) + 1 if self.counters == "both" else 0
        if self.evse:
            return Measurement(self.key, power_w, (power_w * 1000 // 690,) * 3, import_wh=imp,
                               offered_ma=16000, state=3 if power_w else 2)
        return Measurement(self.key, power_w, (power_w * 1000 // 690,) * 3, imp, exp)


@dataclass
class SimSite:
    devices: list[SimDevice] = field(default_factory=list)

    def measurements(self, t: int) -> list[Measurement]:
        out = [d.measure(t) for d in self.devices]
        by_key = {m.key: m.power_w for m in out}
        cars = sum(m.power_w for m in out if m.key.startswith("E"))
        out += [Measurement(site_key("grid"), by_key["M2"]),
                Measurement(site_key("pv"), by_key["M3"]),
                Measurement(site_key("house"), by_key["M1"]),
                Measurement(site_key("cars"), cars)]
        return out


def twenty_devices() -> SimSite:
    def evse(i: int) -> Callable[[int], int]:
        return lambda t: 11000 if (t // 3600 + 3 * i) % 24 < 3 + i % 3 else 0

    def house(t: int) -> int:
        return int(300 + 2500 * _wave(t, DAY_S, 1.0) + 3000 * (_noise(t, 1) > 0.97))

    def pv(t: int) -> int:
        return int(max(0.0, 8000 * math.sin(2 * math.pi * (t % DAY_S) / DAY_S - 1.6))
                   * (0.6 + 0.4 * _noise(t, 2)))

    def grid(t: int) -> int:
        return house(t) - pv(t) + sum(evse(i)(t) for i in range(8))

    def meter(i: int) -> Callable[[int], int]:
        return lambda t: int(50 + 1500 * _wave(t, DAY_S / (1 + i % 3), i) * _noise(t, i))

    site = SimSite()
    site.devices += [SimDevice(f"E{i + 1}", evse(i), "import", evse=True) for i in range(8)]
    site.devices += [SimDevice("M1", house, "import"), SimDevice("M2", grid, "both"),
                     SimDevice("M3", pv, "import")]
    site.devices += [SimDevice(f"M{i}", meter(i), "import") for i in range(4, 7)]
    site.devices += [SimDevice(f"M{i}", meter(i), "none") for i in range(7, 13)]
    assert len(site.devices) == 20
    return site
