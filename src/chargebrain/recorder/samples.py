"""What one recording tick keeps, and the energy each sample adds (pure: no I/O, no clock).

A tick turns the get_dev_info answer into one `Measurement` per enabled, answering device
(groups included: their sums) and four site series (`site.grid`, `site.pv`, `site.house`,
`site.cars`, from the params object). `EnergyMeter` then gives each measurement the energy of
the interval since the previous one of its series, in mWh (integers, so buckets sum exactly):
the counter difference (import − export) where the device has counters and the step is
plausible, else the power integrated over the interval (trapezoid, capped at `max_gap_s` so an
outage is not filled in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SITE_SERIES = ("grid", "pv", "house", "cars")
SITE = "site"
PRODUCTION_ROLE = 2
STATE_OFFLINE = 6
# A counter step is energy only while the power it implies is plausible: at most 3 × the
# larger of the two measured powers, or 50 kW (a long gap spans charging we did not see).
JUMP_FACTOR = 3
PLAUSIBLE_W = 50_000


def site_key(part: str) -> str:
    """The series key of one site flow (`site.grid`, …)."""
    return f"{SITE}.{part}"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One device (or site flow) at one moment; W, mA, Wh as get_dev_info gives them."""

    key: str  # dev_id, or site.<flow>
    power_w: int
    currents_ma: tuple[int, int, int] = (0, 0, 0)
    import_wh: int = 0  # energy counters; 0 = the device has none
    export_wh: int = 0
    offered_ma: int = 0  # EVSE setpoint (last_set_charging_cur); 0 for meters
    state: int = 0  # EVSE state 1–6; 0 for meters and site flows


@dataclass(frozen=True, slots=True)
class Sample:
    """A measurement at time `t_s` with the energy of the interval it closes (mWh)."""

    t_s: int
    m: Measurement
    energy_mwh: int


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def measurements(dev_info: dict[str, Any]) -> list[Measurement]:
    """The measurements of one get_dev_info answer: every enabled device without a COM error
    (a device that does not answer leaves a gap), then the four site flows."""
    out: list[Measurement] = []
    pv_w = 0
    for d in dev_info.get("devices", []):
        if not isinstance(d, dict) or not d.get("device_enabled") or d.get("com_err"):
            continue
        currents = (_int(d.get("current_l1")), _int(d.get("current_l2")),
                    _int(d.get("current_l3")))
        power_w = _int(d.get("power_w"))
        if d.get("is_evse"):
            offered = _int(d.get("last_set_charging_cur"))
            out.append(Measurement(str(d["dev_id"]), power_w, currents,
                                   import_wh=_int(d.get("total_energy")),
                                   offered_ma=max(0, offered), state=_int(d.get("state"))))
        else:
            if d.get("role") == PRODUCTION_ROLE:
                pv_w += power_w
            out.append(Measurement(str(d["dev_id"]), power_w, currents,
                                   import_wh=_int(d.get("import")),
                                   export_wh=_int(d.get("export"))))
    p = dev_info.get("params", {})
    flows = {"grid": _int(p.get("grid_pwr")), "pv": pv_w, "house": _int(p.get("cons_pwr")),
             "cars": _int(p.get("cons_evse_power"))}
    out.extend(Measurement(site_key(name), flows[name]) for name in SITE_SERIES)
    return out


@dataclass(frozen=True, slots=True)
class Last:
    """The previous sample of a series, as the energy of the next one needs it."""

    t_s: int
    power_w: int
    import_wh: int
    export_wh: int


class EnergyMeter:
    """Energy per sample from counters or integrated power; remembers each series' last."""

    def __init__(self, max_gap_s: int, last: dict[str, Last] | None = None) -> None:
        self.max_gap_s = max_gap_s
        self.last: dict[str, Last] = dict(last or {})

    def samples(self, t_s: int, batch: Iterable[Measurement]) -> list[Sample]:
        """The samples of one tick at `t_s`. A series' sample at or before its previous one
        (the clock went back) is dropped: stored time only moves forward."""
        out = []
        for m in batch:
            prev = self.last.get(m.key)
            if prev is not None and t_s <= prev.t_s:
                continue
            out.append(Sample(t_s, m, self._energy_mwh(prev, t_s, m)))
            self.last[m.key] = Last(t_s, m.power_w, m.import_wh, m.export_wh)
        return out

    def _energy_mwh(self, prev: Last | None, t_s: int, m: Measurement) -> int:
        if prev is None:
            return 0  # the first sample of a series opens it; there is no interval yet
        has_counters = (m.import_wh or m.export_wh) and (prev.import_wh or prev.export_wh)
        d_import, d_export = m.import_wh - prev.import_wh, m.export_wh - prev.export_wh
        dt_s = t_s - prev.t_s
        if has_counters and d_import >= 0 and d_export >= 0:
            implied_w = (d_import + d_export) * 3600 / dt_s
            if implied_w <= max(JUMP_FACTOR * max(abs(prev.power_w), abs(m.power_w)),
                                PLAUSIBLE_W):
                return (d_import - d_export) * 1000
        # no counters, a counter that went back (meter replaced) or jumped (another counter
        # took over: an attached meter failed, a group gained a member): integrate the power
        dt_s = min(dt_s, self.max_gap_s)
        return round((prev.power_w + m.power_w) / 2 * dt_s / 3.6)
