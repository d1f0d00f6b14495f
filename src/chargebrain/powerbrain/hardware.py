"""Simulated controller hardware behind the registers.

No clock of its own: `integrate(t0, t1)` lets the time between two instants pass with the state
as it was, and `refresh(now)` derives every measured register from the configuration registers
and the car. The controller calls both on every tick and before every change, so energy is the
exact integral of a piecewise-constant draw and tests drive time with plain numbers.

- EVSE: the charge pilot follows the virtual car (A no car, B car, C charging); the car draws
  `min(limit, cable or fixed current, car max)` on its phases when charging is enabled; the
  attached meter (8057–8068, `has_meter` = 1) measures that draw exactly and 8058 integrates it.
  Fail-safe replaces `charging_cur_limit` with `fail_safe_current` (0 = stop) once the EVSE has
  seen no Modbus traffic for `fail_safe_duration`; `disconnect_cp` switches the pilot off for
  its seconds (the car stops drawing but stays plugged, state B).
- S0 meters: a load (meter1 is wired in series with the wallbox, so it sees the car's draw, plus
  an optional simulated load; meter2 sees only its simulated load) produces `pulsesperkwh`
  pulses per kWh; each pulse adds 1000/pulsesperkwh Wh to 8058; power comes from the time between
  the last two pulses (−1 until two pulses were seen) and decays when pulses stop coming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from chargebrain.powerbrain.bank import RegisterBank
from chargebrain.sim.vehicle import CP_B_VEHICLE_DETECTED, VirtualCar
from chargebrain.units import Phases

DEFAULT_CABLE_CURRENT_MA = 32000  # the simulated socket's cable, seen via PP when plugged
JOULES_PER_KWH = 3_600_000.0
EPSILON_WH = 1e-6  # float sums like 0.1 + … + 0.1 must still complete a whole Wh


@dataclass
class EvseSim:
    """State of the simulated wallbox that is not in its registers."""

    car: VirtualCar = field(default_factory=VirtualCar)
    cable_current_ma: int = DEFAULT_CABLE_CURRENT_MA
    disconnect_until_s: float | None = None
    last_traffic_s: float = 0.0
    energy_frac_wh: float = 0.0  # part of a Wh not yet in register 8058
    # the draw of the current instant (set by refresh, integrated by the next integrate)
    offered_ma: int = 0
    supply_phases: int = 3
    voltage_v: int = 230
    draw_ma: Phases = (0, 0, 0)
    power_w: int = 0

    def failsafe_active(self, bank: RegisterBank, now_s: float) -> bool:
        duration = bank.get_int("fail_safe_duration")
        return duration > 0 and now_s - self.last_traffic_s >= duration

    def integrate(self, bank: RegisterBank, dt_s: float) -> None:
        """Let `dt_s` seconds pass at the current draw: charge the car, count energy."""
        if dt_s <= 0 or self.power_w <= 0:
            return
        self.car, step = self.car.charge(self.offered_ma, True, dt_s,
                                         supply_phases=self.supply_phases,
                                         voltage_v=self.voltage_v)
        self.energy_frac_wh += step.energy_wh
        whole = int(self.energy_frac_wh + EPSILON_WH)
        if whole:
            self.energy_frac_wh -= whole
            bank.set("energy", bank.get_int("energy") + whole)

    def refresh(self, bank: RegisterBank, now_s: float) -> None:
        """Derive the measured registers (8086, 8090, 8092, 8095, meter block) at `now_s`."""
        if self.disconnect_until_s is not None and now_s >= self.disconnect_until_s:
            self.disconnect_until_s = None
        remaining = 0 if self.disconnect_until_s is None else \
            math.ceil(self.disconnect_until_s - now_s)
        bank.set("disconnect_cp", min(remaining, 0xFFFF))

        car = self.car
        cable_da = self.cable_current_ma // 100 if car.plugged else 0
        bank.set("cable_current", cable_da)
        fixed_da = bank.get_int("fixed_current")
        cap_da = fixed_da if fixed_da > 0 else cable_da
        if self.failsafe_active(bank, now_s):
            limit_da = bank.get_int("fail_safe_current")
        else:
            limit_da = bank.get_int("charging_cur_limit")
        enabled = bank.get_int("charging_enable") == 1 and self.disconnect_until_s is None
        offered_da = min(limit_da, cap_da) if enabled and car.plugged else 0
        self.offered_ma = offered_da * 100
        self.supply_phases = 1 if bank.get_int("relay_select") == 1 else 3
        self.voltage_v = bank.get_int("voltage_l1")
        self.draw_ma = car.draw_ma(self.offered_ma, True, self.supply_phases)
        self.power_w = round(sum(self.draw_ma) * self.voltage_v / 1000)

        bank.set("charging_current", offered_da)
        if not car.plugged:
            state = 0
        elif self.disconnect_until_s is not None:
            state = CP_B_VEHICLE_DETECTED  # pilot off; the cable is still there
        else:
            state = 2 if self.power_w > 0 else CP_B_VEHICLE_DETECTED
        bank.set("charge_pilot_state", state)
        bank.set("power", self.power_w)
        for i, name in enumerate(("current_l1", "current_l2", "current_l3")):
            bank.set(name, round(self.draw_ma[i] / 100))


@dataclass
class S0Sim:
    """An S0 pulse input with its simulated load."""

    load_w: float = 0.0  # simulated load besides the wallbox (meter1) / the only load (meter2)
    pulse_frac: float = 0.0  # progress towards the next pulse, 0…1
    energy_frac_wh: float = 0.0
    last_pulse_s: float | None = None
    interval_s: float | None = None  # time between the last two pulses

    def integrate(self, bank: RegisterBank, t0_s: float, t1_s: float, load_w: float) -> None:
        """Count the pulses a constant `load_w` produces between `t0_s` and `t1_s`."""
        dt = t1_s - t0_s
        ppk = bank.get_int("pulsesperkwh")
        if dt <= 0 or load_w <= 0 or ppk <= 0:
            return
        rate = load_w * ppk / JOULES_PER_KWH  # pulses per second
        total = self.pulse_frac + rate * dt
        count = math.floor(total)
        if count:
            last = t0_s + (count - self.pulse_frac) / rate
            if count >= 2:
                self.interval_s = 1.0 / rate
            elif self.last_pulse_s is not None:
                self.interval_s = last - self.last_pulse_s
            self.last_pulse_s = last
            bank.set("pulses", bank.get_int("pulses") + count)
            self.energy_frac_wh += count * 1000.0 / ppk
            whole = int(self.energy_frac_wh + EPSILON_WH)
            if whole:
                self.energy_frac_wh -= whole
                bank.set("energy", bank.get_int("energy") + whole)
        self.pulse_frac = total - count

    def refresh(self, bank: RegisterBank, now_s: float) -> None:
        """Power and currents from the pulse interval (decaying while no pulse comes)."""
        ppk = bank.get_int("pulsesperkwh")
        if self.interval_s is None or self.last_pulse_s is None or self.interval_s <= 0:
            bank.set("timeperpulse", 0)
            power = -1
        else:
            bank.set("timeperpulse", min(round(self.interval_s * 1000), 0x7FFFFFFF))
            interval = max(self.interval_s, now_s - self.last_pulse_s)
            power = round(JOULES_PER_KWH / (ppk * interval))
        bank.set("power", power)
        mask = bank.get_int("phases")
        volts = [bank.get_int(f"voltage_l{i}") for i in (1, 2, 3)]
        total_v = sum(v for i, v in enumerate(volts) if mask & (1 << i))
        per_phase_da = round(power * 10 / total_v) if power > 0 and total_v > 0 else 0
        for i in range(3):
            bank.set(f"current_l{i + 1}", per_phase_da if mask & (1 << i) else 0)
