"""Device types: every `dev_type` key a configuration may contain, its label and its family.

The keys are those of the original product so that configurations and clients carry over
(compat.md). `cmd=get_dev_types` and `dev_meta` in `get_params` both serve `labels()`.
Only the types whose `supported` flag is set can be created now; the others are listed so that
clients find every key, and `set_params` refuses them with "device type X is not supported yet".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """EVSE-kind devices have ids E<n>, meters M<n>."""

    EVSE = "E"
    METER = "M"


class Family(enum.Enum):
    """Which driver family (and which configuration model) a type belongs to."""

    POWERBRAIN = "powerbrain"  # built-in controller (`evse`, `meter1`, `meter2`) or Modbus TCP
    AJAX = "ajax"  # HTTP input: values pushed with set_ajax_evse / set_ajax_meter
    SIM = "sim"  # simulated device (virtual car, configurable load)
    GROUP = "group"  # charging group: a node of the limit tree, no driver
    VIRTUAL = "virtual"  # computed by the control cycle from other devices, no driver
    OCPP = "ocpp"  # OCPP 1.6J wallbox on the central system (chargebrain.ocpp)
    MODBUS_DEF = "modbus_def"  # Modbus meter read through a meter definition (definitions.py)
    HTTP_DEF = "http_def"  # HTTP/JSON meter read through a meter definition (rtype 1)
    CM = "cm"  # cascaded charging manager over HTTP (drivers/cm.py)
    EXPRESSION = "expression"  # formula meter, computed by the control cycle (no driver)


@dataclass(frozen=True, slots=True)
class DevType:
    key: str
    label: str
    kind: Kind
    family: Family
    supported: bool = True


_TYPES = [
    DevType("evse_powerbrain", "Power Brain Wallbox", Kind.EVSE, Family.POWERBRAIN),
    DevType("evse_ajax", "HTTP Input Wallbox", Kind.EVSE, Family.AJAX),
    DevType("evse_group", "EVSE Group", Kind.EVSE, Family.GROUP),
    DevType("evse_sim", "Sim-Wallbox", Kind.EVSE, Family.SIM),
    DevType("evse_cm", "Charging Manager Slave", Kind.EVSE, Family.CM),
    DevType("evse_ocpp", "EVSE with OCPP 1.6", Kind.EVSE, Family.OCPP),
    DevType("meter_powerbrain", "Power Brain S0 Meter", Kind.METER, Family.POWERBRAIN),
    DevType("meter_ajax", "HTTP Input Meter", Kind.METER, Family.AJAX),
    DevType("meter_sim", "Sim-Meter", Kind.METER, Family.SIM),
    DevType("meter_expression", "Expression Meter", Kind.METER, Family.EXPRESSION),
    DevType("meter_sdm630", "Eastron SDM630", Kind.METER, Family.MODBUS_DEF),
    DevType("meter_sdm72dm", "Eastron SDM72D-M", Kind.METER, Family.MODBUS_DEF),
    DevType("meter_abb_b23_b24", "ABB B23/B24", Kind.METER, Family.MODBUS_DEF),
    DevType("meter_janitza_umg96rm", "Janitza UMG 96RM", Kind.METER, Family.MODBUS_DEF),
    DevType("meter_sunspec", "SunSpec Inverter / Meter", Kind.METER, Family.MODBUS_DEF),
    DevType("meter_shelly_3em", "Shelly 3EM (HTTP)", Kind.METER, Family.HTTP_DEF),
    DevType("meter_virtual_grid_demand", "VM Grid Demand", Kind.METER, Family.VIRTUAL),
    DevType("meter_virtual_consumed_power", "VM Consumed non-EVSE Power", Kind.METER,
            Family.VIRTUAL),
    DevType("meter_virtual_produced_power", "VM Produced Power", Kind.METER, Family.VIRTUAL),
    DevType("meter_virtual_produced_power_avg", "VM Produced Power AVG", Kind.METER,
            Family.VIRTUAL),
    DevType("meter_virtual_evse_power", "VM Consumed EVSE Power", Kind.METER, Family.VIRTUAL),
    DevType("meter_virtual_available_evse_power", "VM Power available for EVSEs", Kind.METER,
            Family.VIRTUAL),
    DevType("meter_virtual_remaining_evse_power", "VM Power remaining for EVSEs", Kind.METER,
            Family.VIRTUAL),
    DevType("meter_virtual_surplus", "VM Surplus", Kind.METER, Family.VIRTUAL),
    DevType("meter_virtual_surplus_avg", "VM Surplus AVG", Kind.METER, Family.VIRTUAL),
]

DEV_TYPES: dict[str, DevType] = {t.key: t for t in _TYPES}


def labels() -> dict[str, str]:
    """Every known `dev_type` → its display label (the `get_dev_types` / `dev_meta` answer)."""
    return {t.key: t.label for t in _TYPES}


def get(key: str) -> DevType | None:
    """The type named `key`, or None when no such type exists."""
    return DEV_TYPES.get(key)


def register(dev_type: DevType) -> None:
    """Add a type found at run time (a user's meter definition file); a known key is kept."""
    if dev_type.key not in DEV_TYPES:
        _TYPES.append(dev_type)
        DEV_TYPES[dev_type.key] = dev_type
