"""A virtual electric car: the load behind every simulated wallbox.

Pure: no clock, no I/O. The wallbox model (the local Power Brain's simulated hardware, `Sim-`
devices) owns a `VirtualCar`, and on every step asks it what it draws for the current the
wallbox offers; `charge()` returns the new car (state of charge raised) and what was drawn.

Behaviour, as real cars show it on a type-2 charge point (IEC 61851):
- a car draws nothing below the 6 A minimum the pilot signal may advertise;
- it draws `min(offered, its own maximum)` on each of its phases (1 or 3; fewer when the
  wallbox supplies fewer, e.g. after switching to one phase);
- a full battery draws nothing, the car stays plugged (pilot state B).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from chargebrain.units import Phases

MIN_CHARGE_CURRENT_MA = 6000  # below this the pilot signal means "do not charge"
DEFAULT_VOLTAGE_V = 230

# Charge-pilot states as the Power Brain's register 8092 numbers them.
CP_A_STANDBY = 0
CP_B_VEHICLE_DETECTED = 1
CP_C_CHARGING = 2


@dataclass(frozen=True, slots=True)
class ChargeStep:
    """What a car drew during one step."""

    currents_ma: Phases  # per phase, in the wallbox's phase frame (L1 first)
    power_w: int
    energy_wh: float  # may be fractional for short steps; accumulate it as float

    @property
    def charging(self) -> bool:
        return self.power_w > 0


NO_DRAW = ChargeStep((0, 0, 0), 0, 0.0)


@dataclass(frozen=True, slots=True)
class VirtualCar:
    """A car that can be plugged into a simulated wallbox. Immutable: `charge()` returns a
    new car, so a step can be computed, checked and only then committed."""

    plugged: bool = False
    phases: int = 3  # 1 or 3: how many phases the car's on-board charger uses
    max_current_ma: int = 16000  # per phase
    soc_pct: float = 50.0
    capacity_wh: int = 60000
    rfid: str = ""  # the card presented when the car was plugged in ("" = none)

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError("phases must be 1 or 3")
        if not 0 <= self.max_current_ma <= 80000:
            raise ValueError("max_current_ma must be between 0 and 80000")
        if not 0.0 <= self.soc_pct <= 100.0:
            raise ValueError("soc_pct must be between 0 and 100")
        if not 1 <= self.capacity_wh <= 1_000_000:
            raise ValueError("capacity_wh must be between 1 and 1000000")
        if len(self.rfid) > 30:
            raise ValueError("rfid must be at most 30 characters")

    @property
    def full(self) -> bool:
        return self.soc_pct >= 100.0

    def wants_current(self) -> bool:
        """Plugged in and not full."""
        return self.plugged and not self.full

    def replace(self, **changes: object) -> VirtualCar:
        """A copy with some fields changed (validated like a new car)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def draw_ma(self, offered_ma: int, enabled: bool, supply_phases: int = 3) -> Phases:
        """Per-phase current the car takes when `offered_ma` is offered (no state change)."""
        if not (enabled and self.wants_current()) or offered_ma < MIN_CHARGE_CURRENT_MA:
            return (0, 0, 0)
        current = min(offered_ma, self.max_current_ma)
        if current < MIN_CHARGE_CURRENT_MA:
            return (0, 0, 0)
        used = 1 if min(self.phases, supply_phases) < 3 else 3
        return (current, current if used == 3 else 0, current if used == 3 else 0)

    def charge(self, offered_ma: int, enabled: bool, dt_s: float, *,
               supply_phases: int = 3, voltage_v: int = DEFAULT_VOLTAGE_V
               ) -> tuple[VirtualCar, ChargeStep]:
        """Charge for `dt_s` seconds at the offered current; return the new car and the draw.

        The energy of the step is capped at what the battery can still take, so the state of
        charge ends at exactly 100 % and a full car draws nothing afterwards.
        """
        if dt_s <= 0:
            return self, NO_DRAW
        currents = self.draw_ma(offered_ma, enabled, supply_phases)
        power = round(sum(currents) * voltage_v / 1000)
        if power <= 0:
            return self, NO_DRAW
        room_wh = (100.0 - self.soc_pct) / 100.0 * self.capacity_wh
        energy = min(power * dt_s / 3600.0, room_wh)
        soc = min(100.0, self.soc_pct + energy / self.capacity_wh * 100.0)
        return self.replace(soc_pct=soc), ChargeStep(currents, power, energy)

    def pilot_state(self, step: ChargeStep) -> int:
        """Charge-pilot state (8092 numbering) of a wallbox with this car after `step`."""
        if not self.plugged:
            return CP_A_STANDBY
        return CP_C_CHARGING if step.charging else CP_B_VEHICLE_DETECTED

    def as_dict(self) -> dict[str, object]:
        """The car's state as the API shows it (`cmd=sim_vehicle`)."""
        return {"plugged": self.plugged, "phases": self.phases,
                "max_current": self.max_current_ma, "soc": round(self.soc_pct, 2),
                "capacity": self.capacity_wh, "rfid": self.rfid}
