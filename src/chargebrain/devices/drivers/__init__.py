"""Driver families, one module each, and `build_driver`: configuration → driver.

| dev_type | driver |
|---|---|
| `evse_powerbrain`, `meter_powerbrain` | powerbrain.py (built-in register model, or Modbus TCP) |
| `evse_ajax`, `meter_ajax` | ajax.py (pushed by set_ajax_evse / set_ajax_meter) |
| `evse_sim`, `meter_sim` | sim.py (virtual car, constant load) |
| `evse_ocpp` | ocpp.py (a connector of a box on the OCPP 1.6J server, chargebrain.ocpp) |
| `evse_group`, `meter_virtual_*` | none (groups are limits; virtual meters are computed) |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chargebrain.devices import config as cfg
from chargebrain.devices import types
from chargebrain.devices.base import Driver
from chargebrain.devices.drivers.ajax import AjaxEvse, AjaxMeter
from chargebrain.devices.drivers.local import LocalRegisters
from chargebrain.devices.drivers.ocpp import OcppEvse
from chargebrain.devices.drivers.powerbrain import (
    ModbusTcpRegisters,
    PowerBrainEvse,
    PowerBrainMeter,
    Registers,
)
from chargebrain.devices.drivers.sim import SimEvse, SimMeter
from chargebrain.devices.types import Family, Kind
from chargebrain.ocpp import CentralSystem


def build_driver(config: cfg.DeviceConfig, *, voltage_v: int,
                 powerbrain: Callable[[], Any],
                 ocpp: Callable[[], CentralSystem | None] = lambda: None) -> Driver | None:
    """A new driver for `config`; None for devices without one (groups, virtual meters).

    `powerbrain` returns the built-in controller (or None when there is none), `ocpp` the
    OCPP central system (None while it is off)."""
    info = types.get(config.dev_type)
    assert info is not None
    timeout_s = config.com_timeout_ms / 1000
    if info.family is Family.AJAX:
        return AjaxEvse(timeout_s) if info.kind is Kind.EVSE else AjaxMeter(timeout_s)
    if info.family is Family.SIM:
        if isinstance(config, cfg.SimMeterConfig):
            return SimMeter(power_w=config.sim_power_w, phases_mask=config.phases,
                            voltage_v=voltage_v)
        return SimEvse(voltage_v=voltage_v)
    if info.family is Family.OCPP:
        return OcppEvse(ocpp, config.address, config.id, voltage_v)
    if info.family is Family.POWERBRAIN:
        regs = _registers(config, timeout_s, powerbrain)
        if info.kind is Kind.EVSE:
            return PowerBrainEvse(regs, voltage_v=voltage_v, used_phases=config.used_phases)
        return PowerBrainMeter(regs)
    return None


def _registers(config: cfg.DeviceConfig, timeout_s: float, powerbrain: Callable[[], Any]
               ) -> Registers:
    if config.address in (cfg.LOCAL_EVSE_ADDRESS, *cfg.LOCAL_METER_ADDRESSES):
        return LocalRegisters(powerbrain, config.address)
    endpoint = cfg.parse_host_port(config.address, "a local unit")
    return ModbusTcpRegisters(endpoint, config.id, timeout_s)
