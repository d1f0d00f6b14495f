"""Units and phase helpers shared by every layer.

Currents are integers in mA (`_ma`), power in W (`_w`), energy in Wh (`_wh`), voltage in V (`_v`).
Per-phase quantities are 3-tuples ordered L1, L2, L3. A phase *mask* has bit0 = L1, bit1 = L2,
bit2 = L3.
"""

from __future__ import annotations

Phases = tuple[int, int, int]

ZERO: Phases = (0, 0, 0)
ALL_PHASES_MASK = 0b111


def phase_count(mask: int) -> int:
    """Number of phases set in a mask."""
    return (mask & ALL_PHASES_MASK).bit_count()


def rotate_mask(mask: int, rotation_deg: int) -> int:
    """Map an EVSE-frame phase mask into the building frame.

    `rotation_deg` says where the wallbox's L1 is wired: 0 → building L1, 120 → building L2,
    240 → building L3 (and L2/L3 follow cyclically).
    """
    shift = {0: 0, 120: 1, 240: 2}[rotation_deg]
    mask &= ALL_PHASES_MASK
    return ((mask << shift) | (mask >> (3 - shift))) & ALL_PHASES_MASK


def rotate_phases(values: Phases, rotation_deg: int) -> Phases:
    """Map per-phase values from the EVSE frame into the building frame (see rotate_mask)."""
    shift = {0: 0, 120: 1, 240: 2}[rotation_deg]
    out = [0, 0, 0]
    for i, v in enumerate(values):
        out[(i + shift) % 3] = v
    return (out[0], out[1], out[2])


def mask_to_phases(mask: int, current_ma: int) -> Phases:
    """The per-phase current vector of `current_ma` drawn on the phases of `mask`."""
    return tuple(current_ma if mask & (1 << i) else 0 for i in range(3))  # type: ignore[return-value]


def add(a: Phases, b: Phases) -> Phases:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def sub(a: Phases, b: Phases) -> Phases:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def power_w(current_ma: int, voltage_v: int, phases: int = 1) -> int:
    """Power of `phases` phases each carrying `current_ma` at `voltage_v`."""
    return round(current_ma * voltage_v * phases / 1000)


def current_ma(power_w_: float, voltage_v: int, phases: int = 1) -> int:
    """Per-phase current that carries `power_w_` over `phases` phases at `voltage_v`."""
    if phases <= 0 or voltage_v <= 0:
        return 0
    return round(power_w_ * 1000 / (voltage_v * phases))
