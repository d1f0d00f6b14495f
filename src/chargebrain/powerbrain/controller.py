"""The built-in Power Brain controller: three register banks, simulated hardware, persistence.

`PowerBrain` is what both servers talk to: `cmd=modbus` over HTTP and the Modbus TCP server call
the same `read_*` / `write` methods, so a write through one is read back through the other.

Time is always an argument (`now_s`, seconds of a monotonic clock): `tick(now_s)` advances the
simulated hardware, and every write first lets time pass up to its own instant. `clock` is only
a default the shell (servers, handlers, the tick task) uses to produce `now_s`.

Persistence: registers marked `persisted` (flash) live in the store's kv namespace
`reg:<unit>` (controller-wide ones such as `count_restart` in `reg:controller`), written in one
transaction before a write is acknowledged. Counters the hardware advances (pulses, energy) are
flushed every `COUNTER_FLUSH_S` of simulated time and on `close()`.

Fail-safe "traffic": every successful read or write of the EVSE unit through Modbus TCP or
`cmd=modbus`, and every call of the local driver API (`evse_status`, `set_charging`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chargebrain.powerbrain.bank import RegisterBank, RegisterError, WriteOp
from chargebrain.powerbrain.hardware import EvseSim, S0Sim
from chargebrain.powerbrain.registers import LAYOUTS, UNIT_NAMES, Register, fits
from chargebrain.sim.vehicle import VirtualCar
from chargebrain.store.db import Store
from chargebrain.units import Phases

log = logging.getLogger(__name__)

CONTROLLER_NS = "reg:controller"
COUNTER_FLUSH_S = 10.0
TICK_PERIOD_S = 0.2
COUNTERS = ("pulses", "energy")
MAX_RFID_HEX = 30  # 15 registers


def unit_ns(unit: str) -> str:
    return f"reg:{unit}"


def rfid_hex(rfid: str) -> str:
    """The hex string register 8096 shows for an RFID: hex ids as they are (lower case),
    anything else as the hex of its bytes."""
    text = rfid.strip()
    if text and all(c in "0123456789abcdefABCDEF" for c in text):
        out = text.lower()
    else:
        out = text.encode("utf-8").hex()
    if len(out) > MAX_RFID_HEX:
        raise ValueError(f"rfid is longer than {MAX_RFID_HEX} hex digits")
    return out


@dataclass(frozen=True, slots=True)
class EvseStatus:
    """What the local driver reads from the EVSE unit."""

    cp_state: int  # 8092: 0 A, 1 B, 2 C
    plugged: bool
    charging: bool
    enabled: bool  # 8094
    limit_ma: int  # 8093
    offered_ma: int  # 8095: what the pilot signals now (fail-safe included)
    cable_ma: int  # 8090 (0: no cable)
    one_phase: bool  # 8087
    currents_ma: Phases
    power_w: int
    energy_wh: int  # 8058 of the attached meter
    rfid: str  # 8096
    rfid_count: int  # 8111
    failsafe: bool


@dataclass(frozen=True, slots=True)
class MeterStatus:
    """What the local driver reads from an S0 meter unit."""

    power_w: int  # −1 until two pulses were seen
    currents_ma: Phases
    voltages_v: Phases
    energy_wh: int
    pulses: int


class PowerBrain:
    """The controller's state. One instance per installation (`app.powerbrain`)."""

    def __init__(self, store: Store | None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.store = store
        self.clock = clock
        self.banks: dict[str, RegisterBank] = {u: RegisterBank(LAYOUTS[u]) for u in UNIT_NAMES}
        self.evse = EvseSim()
        self.s0: dict[str, S0Sim] = {"meter1": S0Sim(), "meter2": S0Sim()}
        self._last_tick_s: float | None = None
        self._last_flush_s: float | None = None
        self._counters_dirty = False
        self._fresh = True
        self._load()

    # -- persistence ----------------------------------------------------------------------------

    def _load(self) -> None:
        if self.store is None:
            return
        shared = self.store.kv_all(CONTROLLER_NS)
        self._fresh = "count_restart" not in shared
        for unit, bank in self.banks.items():
            stored = self.store.kv_all(unit_ns(unit))
            for reg in bank.layout.fields:
                if not reg.persisted:
                    continue
                source = shared if reg.shared else stored
                if reg.name in source and _valid_stored(reg, source[reg.name]):
                    bank.store(reg, source[reg.name])
        for bank in self.banks.values():
            for reg in bank.layout.fields:
                if reg.boot_from is not None:
                    bank.store(reg, bank.get(reg.boot_from))

    def _persist(self, values: dict[str, dict[str, int | str]]) -> None:
        """Write `{namespace: {name: value}}` in one transaction (before acknowledging)."""
        if self.store is None or not any(values.values()):
            return
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO kv(ns, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT(ns, key) DO UPDATE SET value=excluded.value",
                [(ns, k, json.dumps(v)) for ns, kv in values.items() for k, v in kv.items()])

    def _flush_counters(self, now_s: float | None) -> None:
        if not self._counters_dirty:
            return
        self._persist({unit_ns(u): {n: self.banks[u].get(n) for n in COUNTERS}
                       for u in UNIT_NAMES})
        self._counters_dirty = False
        self._last_flush_s = now_s

    # -- life cycle -----------------------------------------------------------------------------

    def start(self, now_s: float) -> None:
        """Boot: count the restart (0 on a fresh install) and start the clock at `now_s`."""
        count = 0 if self._fresh else self.banks["evse"].get_int("count_restart") + 1
        count = min(count, (1 << 31) - 1)
        self._persist({CONTROLLER_NS: {"count_restart": count}})
        self._fresh = False
        for bank in self.banks.values():
            bank.set("count_restart", count)
        self._last_tick_s = now_s
        self._last_flush_s = now_s
        self.evse.last_traffic_s = now_s
        self._refresh(now_s)

    def close(self) -> None:
        """Save the counters (call before the store closes)."""
        self._flush_counters(self._last_tick_s)

    @property
    def restart_count(self) -> int:
        return self.banks["evse"].get_int("count_restart")

    # -- time -----------------------------------------------------------------------------------

    async def run(self, period_s: float = TICK_PERIOD_S) -> None:
        """Tick with `clock` every `period_s` until cancelled (the app's background task)."""
        while True:
            await asyncio.sleep(period_s)
            try:
                self.tick(self.clock())
            except Exception:  # a failing tick must not end the simulation for good
                log.exception("Power Brain tick failed")

    def tick(self, now_s: float) -> None:
        """Advance the simulated hardware to `now_s` (earlier instants are ignored)."""
        self._advance(now_s)
        if self._last_flush_s is None or now_s - self._last_flush_s >= COUNTER_FLUSH_S:
            self._flush_counters(now_s)

    def _advance(self, now_s: float) -> None:
        t0 = self._last_tick_s
        if t0 is None:
            t0 = now_s
            self.evse.last_traffic_s = now_s
        if now_s > t0:
            self._integrate(t0, now_s)
            self._last_tick_s = now_s
        self._refresh(max(now_s, t0))

    def _integrate(self, t0: float, t1: float) -> None:
        evse_power_w = self.evse.power_w
        self.evse.integrate(self.banks["evse"], t1 - t0)
        for unit, sim in self.s0.items():
            load = sim.load_w + (evse_power_w if unit == "meter1" else 0)
            sim.integrate(self.banks[unit], t0, t1, load)
        if evse_power_w > 0 or any(sim.load_w > 0 for sim in self.s0.values()):
            self._counters_dirty = True

    def _refresh(self, now_s: float) -> None:
        self.evse.refresh(self.banks["evse"], now_s)
        for unit, sim in self.s0.items():
            sim.refresh(self.banks[unit], now_s)

    def note_traffic(self, unit: str, now_s: float) -> None:
        """A Modbus client read or wrote `unit` at `now_s` (feeds the EVSE's fail-safe)."""
        if unit == "evse":
            self.evse.last_traffic_s = max(self.evse.last_traffic_s, now_s)

    # -- register access (cmd=modbus and the Modbus TCP server) --------------------------------

    def bank(self, unit: str) -> RegisterBank:
        """The bank of `unit` (KeyError for an unknown unit name)."""
        return self.banks[unit]

    def read_raw(self, unit: str, address: int, count: int, now_s: float | None = None
                 ) -> list[int]:
        """`count` raw registers; counts as traffic when `now_s` is given."""
        regs = self.banks[unit].read_raw(address, count)
        if now_s is not None:
            self.note_traffic(unit, now_s)
        return regs

    def read_value(self, unit: str, address: int, suffix: str = "",
                   now_s: float | None = None) -> int | str:
        value = self.banks[unit].read_field(address, suffix)
        if now_s is not None:
            self.note_traffic(unit, now_s)
        return value

    def read_all(self, unit: str, now_s: float | None = None) -> dict[str, int | str]:
        values = self.banks[unit].read_all()
        if now_s is not None:
            self.note_traffic(unit, now_s)
        return values

    def write(self, unit: str, ops: Iterable[WriteOp], now_s: float) -> None:
        """Check every op (in order, each seeing the ones before), then apply all of them;
        raise RegisterError and change nothing if one is refused."""
        self._advance(now_s)
        bank = self.banks[unit]
        scratch = bank.copy()
        changes: list[tuple[Register, int | str]] = []
        for op in ops:
            for reg, value in scratch.plan(op):
                for target, new in self._effects(bank, reg, value):
                    scratch.store(target, new)
                    changes.append((target, new))
        persist: dict[str, dict[str, int | str]] = {}
        for reg, value in changes:
            if reg.persisted:
                ns = CONTROLLER_NS if reg.shared else unit_ns(unit)
                persist.setdefault(ns, {})[reg.name] = value
        self._persist(persist)
        for reg, value in changes:
            self._apply(unit, reg, value, now_s)
        self.note_traffic(unit, now_s)
        self._refresh(now_s)

    def write_raw(self, unit: str, address: int, words: list[int], now_s: float) -> None:
        """Modbus functions 6/16: raw registers from `address`."""
        self.write(unit, [WriteOp(address, values=tuple(words))], now_s)

    @staticmethod
    def _effects(bank: RegisterBank, reg: Register, value: int | str
                 ) -> list[tuple[Register, int | str]]:
        """The register changes one field write causes (the reset commands act on others)."""
        by_name = bank.layout.by_name
        if reg.name == "reset_pulses":
            return [(by_name["pulses"], 0)] if value == 1 else []
        if reg.name == "reset_energy":
            return [(by_name["energy"], 0)] if value == 1 else []
        return [(reg, value)]

    def _apply(self, unit: str, reg: Register, value: int | str, now_s: float) -> None:
        targets = self.banks.values() if reg.shared else [self.banks[unit]]
        for bank in targets:
            bank.store(reg, value)
        if reg.name == "energy":
            if unit == "evse":
                self.evse.energy_frac_wh = 0.0
            else:
                self.s0[unit].energy_frac_wh = 0.0
        elif reg.name == "disconnect_cp" and unit == "evse":
            self.evse.disconnect_until_s = now_s + int(value) if value else None

    # -- the simulated world (sim_vehicle, demo) -----------------------------------------------

    @property
    def car(self) -> VirtualCar:
        return self.evse.car

    def set_car(self, car: VirtualCar, now_s: float, *, rfid_presented: bool = False) -> None:
        """Replace the virtual car at the EVSE; an RFID presented with it shows in 8096/8111.
        Raises ValueError (nothing changed) when the RFID does not fit register 8096."""
        hex_id = rfid_hex(car.rfid) if rfid_presented and car.rfid else None
        self._advance(now_s)
        self.evse.car = car
        if hex_id is not None:
            bank = self.banks["evse"]
            bank.set("last_rfid", hex_id)
            bank.set("detected_rfids", (bank.get_int("detected_rfids") + 1) & 0xFFFF)
        self._refresh(now_s)

    def set_meter_load(self, unit: str, load_w: float, now_s: float) -> None:
        """Set the simulated load an S0 meter counts (meter1 also counts the wallbox)."""
        if unit not in self.s0:
            raise KeyError(unit)
        if not 0 <= load_w <= 1_000_000:
            raise ValueError("load_w must be between 0 and 1000000")
        self._advance(now_s)
        self.s0[unit].load_w = float(load_w)

    # -- the local driver's API (the Charging Manager's own device for `evse`/`meter1/2`) ------

    def evse_status(self, now_s: float | None = None) -> EvseStatus:
        """The EVSE's state as of the last tick; counts as traffic when `now_s` is given."""
        bank = self.banks["evse"]
        if now_s is not None:
            self.note_traffic("evse", now_s)
        state = bank.get_int("charge_pilot_state")
        return EvseStatus(
            cp_state=state, plugged=self.evse.car.plugged, charging=state == 2,
            enabled=bank.get_int("charging_enable") == 1,
            limit_ma=bank.get_int("charging_cur_limit") * 100,
            offered_ma=bank.get_int("charging_current") * 100,
            cable_ma=bank.get_int("cable_current") * 100,
            one_phase=bank.get_int("relay_select") == 1,
            currents_ma=self.evse.draw_ma, power_w=bank.get_int("power"),
            energy_wh=bank.get_int("energy"), rfid=str(bank.get("last_rfid")),
            rfid_count=bank.get_int("detected_rfids"),
            failsafe=self.evse.failsafe_active(bank, self._last_tick_s or 0.0))

    def set_charging(self, now_s: float, *, limit_ma: int | None = None,
                     enabled: bool | None = None, one_phase: bool | None = None) -> None:
        """Set 8093 (mA, rounded down to 0.1 A), 8094 and 8087 in one checked write.
        Raises RegisterError (nothing changed) for a limit outside 6000–63000 mA."""
        ops = []
        if limit_ma is not None:
            ops.append(WriteOp(8093, value=limit_ma // 100))
        if enabled is not None:
            ops.append(WriteOp(8094, value=int(enabled)))
        if one_phase is not None:
            ops.append(WriteOp(8087, value=int(one_phase)))
        self.write("evse", ops, now_s)

    def meter_status(self, unit: str) -> MeterStatus:
        """An S0 meter's (or the EVSE's attached meter's) readings as of the last tick."""
        bank = self.banks[unit]
        currents = tuple(bank.get_int(f"current_l{i}") * 100 for i in (1, 2, 3))
        volts = tuple(bank.get_int(f"voltage_l{i}") for i in (1, 2, 3))
        return MeterStatus(power_w=bank.get_int("power"), currents_ma=currents,  # type: ignore[arg-type]
                           voltages_v=volts, energy_wh=bank.get_int("energy"),  # type: ignore[arg-type]
                           pulses=bank.get_int("pulses"))


def _valid_stored(reg: Register, value: object) -> bool:
    """A stored flash value is used only if it still fits the table (else: default)."""
    if reg.kind == "str":
        return isinstance(value, str) and len(value) <= 2 * reg.size
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return reg.in_range(value) if reg.writable else fits(value, reg.size, reg.signed)


__all__ = ["EvseStatus", "MeterStatus", "PowerBrain", "RegisterError", "WriteOp", "rfid_hex"]
