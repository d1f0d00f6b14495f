"""Virtual meters: readings computed each cycle from the plan's diagnostics.

| dev_type | power (W) |
|---|---|
| `meter_virtual_grid_demand` | the fresh site grid meter, else non-EVSE load + EVSE draw |
| `meter_virtual_consumed_power` | consumption without EVSEs |
| `meter_virtual_produced_power` | production |
| `meter_virtual_produced_power_avg` | production, moving average over `AVG_WINDOW_S` |
| `meter_virtual_evse_power` | what the EVSEs draw |
| `meter_virtual_available_evse_power` | what the EVSEs could draw at the site |
| `meter_virtual_remaining_evse_power` | available − drawn (never negative) |
| `meter_virtual_surplus` | PV surplus |
| `meter_virtual_surplus_avg` | surplus, moving average over `AVG_WINDOW_S` |

Only the grid-demand meter knows per-phase currents; the others report power only (get_dev_info
spreads it over the phases). Import/export counters integrate the power over time (positive →
import) for as long as the process runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from chargebrain.core.site import Diagnostics
from chargebrain.devices.base import MeterReading
from chargebrain.devices.status import integrate_wh
from chargebrain.units import Phases

AVG_WINDOW_S = 300.0
MODEL = "chargebrain,virtual meter,1.0,"

KINDS = {
    "meter_virtual_grid_demand", "meter_virtual_consumed_power", "meter_virtual_produced_power",
    "meter_virtual_produced_power_avg", "meter_virtual_evse_power",
    "meter_virtual_available_evse_power", "meter_virtual_remaining_evse_power",
    "meter_virtual_surplus", "meter_virtual_surplus_avg",
}


@dataclass(frozen=True, slots=True)
class SiteFlows:
    """The per-cycle numbers virtual meters are made of."""

    diagnostics: Diagnostics
    grid_ma: Phases | None  # site grid meter currents when measured and fresh
    evse_draw_ma: Phases  # what the EVSEs draw now, building frame


def power_of(dev_type: str, flows: SiteFlows, averages: MovingAverages, now_s: float
             ) -> tuple[int, Phases | None]:
    """(power W, per-phase currents or None) of one virtual meter type."""
    d = flows.diagnostics
    if dev_type == "meter_virtual_grid_demand":
        if d.grid_power_w is not None:
            return d.grid_power_w, flows.grid_ma
        computed = tuple(n + e for n, e in zip(d.non_evse_ma, flows.evse_draw_ma, strict=True))
        power = d.consumption_power_w - d.production_power_w + d.cons_evse_power_w
        return power, computed  # type: ignore[return-value]
    if dev_type == "meter_virtual_consumed_power":
        return d.consumption_power_w, None
    if dev_type == "meter_virtual_produced_power":
        return d.production_power_w, None
    if dev_type == "meter_virtual_produced_power_avg":
        return averages.value("produced", d.production_power_w, now_s), None
    if dev_type == "meter_virtual_evse_power":
        return d.cons_evse_power_w, None
    if dev_type == "meter_virtual_available_evse_power":
        return d.avail_evse_power_w, None
    if dev_type == "meter_virtual_remaining_evse_power":
        return max(0, d.avail_evse_power_w - d.cons_evse_power_w), None
    if dev_type == "meter_virtual_surplus":
        return d.surplus_w, None
    if dev_type == "meter_virtual_surplus_avg":
        return averages.value("surplus", d.surplus_w, now_s), None
    return 0, None


class MovingAverages:
    """Time-weighted moving averages over the last `window_s` seconds, one per key."""

    def __init__(self, window_s: float = AVG_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._seen: dict[str, float] = {}

    def value(self, key: str, sample: int, now_s: float) -> int:
        """Add `sample` at `now_s` (once per instant) and return the window's average."""
        samples = self._samples.setdefault(key, deque())
        if self._seen.get(key) != now_s:
            samples.append((now_s, sample))
            self._seen[key] = now_s
        while len(samples) > 1 and samples[1][0] <= now_s - self.window_s:
            samples.popleft()
        if len(samples) == 1:
            return samples[0][1]
        total = weight = 0.0
        for (t0, v), (t1, _) in zip(samples, list(samples)[1:], strict=False):
            dt = max(0.0, t1 - max(t0, now_s - self.window_s))
            total += v * dt
            weight += dt
        return round(total / weight) if weight > 0 else samples[-1][1]


class VirtualMeters:
    """Energy counters and averages of the virtual meters, across cycles."""

    def __init__(self) -> None:
        self.averages = MovingAverages()
        self._energy: dict[str, tuple[float, float, float]] = {}  # import, export, last_s

    def reading(self, dev_id: str, dev_type: str, flows: SiteFlows, now_s: float,
                voltage_v: int) -> MeterReading:
        """The reading of one virtual meter this cycle."""
        power, currents = power_of(dev_type, flows, self.averages, now_s)
        imported, exported, last_s = self._energy.get(dev_id, (0.0, 0.0, now_s))
        dt = now_s - last_s
        imported = integrate_wh(imported, power, dt)
        exported = integrate_wh(exported, -power, dt)
        self._energy[dev_id] = (imported, exported, now_s)
        return MeterReading(currents_ma=currents, voltages_v=(voltage_v,) * 3,  # type: ignore[arg-type]
                            power_w=int(power), import_wh=int(imported),
                            export_wh=int(exported), model=MODEL)
