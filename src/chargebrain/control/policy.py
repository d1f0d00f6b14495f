"""What a wallbox is left with where chargebrain gives up control (param `disable_policy`).

Control is given up in observation mode, for a disabled device, when chargebrain stops, and by
a wallbox that lost its manager. Everywhere else a wallbox gets current only from a plan.
"""

from __future__ import annotations

from chargebrain.core.site import DisablePolicy
from chargebrain.devices.base import EvseSetpoint
from chargebrain.devices.config import EvseConfig


def policy_setpoint(config: EvseConfig, disable_policy: int) -> EvseSetpoint:
    """0: charging off; 1: the wallbox's minimum current; −1: its maximum (a maximum given
    as a formula counts as the minimum: formulas are not evaluated, and the policy never
    gives more than anybody computed)."""
    if disable_policy == DisablePolicy.OFF:
        return EvseSetpoint(0, enabled=False)
    if disable_policy == DisablePolicy.UNLIMITED:
        if isinstance(config.max_charging_cur, int) and not isinstance(config.max_charging_cur,
                                                                       bool):
            return EvseSetpoint(config.max_charging_cur)
        return EvseSetpoint(config.min_charging_cur)
    return EvseSetpoint(config.min_charging_cur)
