"""Driver families, one module each, and `build_driver`: configuration → driver.

| dev_type | driver |
|---|---|
| `evse_powerbrain`, `meter_powerbrain` | powerbrain.py (built-in register model, or Modbus TCP) |
| `evse_ajax`, `meter_ajax` | ajax.py (pushed by set_ajax_evse / set_ajax_meter) |
| `evse_sim`, `meter_sim` | sim.py (virtual car, constant load) |
| `meter_sdm630`, `meter_abb_b23_b24`, … (Modbus definitions, TCP or RTU) | modbus_meter.py |
| `meter_shelly_3em`, … (HTTP/JSON definitions) | http_meter.py |
| `meter_sunspec` | sunspec.py (model chain discovered) |
| `evse_cm` | cm.py (a cascaded charging manager over its HTTP API) |
| `evse_ocpp` | ocpp.py (a connector of a box on the OCPP 1.6J server, chargebrain.ocpp) |
| `meter_expression` | none: expression.py holds its state, the control cycle computes it |
| `evse_group`, `meter_virtual_*` | none (groups are limits; virtual meters are computed) |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chargebrain.devices import config as cfg
from chargebrain.devices import types
from chargebrain.devices.base import DeviceError, Driver
from chargebrain.devices.definitions import active_catalog
from chargebrain.devices.drivers.ajax import AjaxEvse, AjaxMeter
from chargebrain.devices.drivers.cm import CmEvse
from chargebrain.devices.drivers.http_meter import HttpMeter
from chargebrain.devices.drivers.local import LocalRegisters
from chargebrain.devices.drivers.modbus_meter import ModbusMeter
from chargebrain.devices.drivers.ocpp import OcppEvse
from chargebrain.devices.drivers.powerbrain import (
    REMOTE_FAIL_SAFE,
    ModbusTcpRegisters,
    PowerBrainEvse,
    PowerBrainMeter,
    Registers,
)
from chargebrain.devices.drivers.sim import SimEvse, SimMeter
from chargebrain.devices.drivers.sunspec import SunSpecMeter
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
            remote = isinstance(regs, ModbusTcpRegisters)
            return PowerBrainEvse(regs, voltage_v=voltage_v, used_phases=config.used_phases,
                                  fail_safe=REMOTE_FAIL_SAFE if remote else None)
        return PowerBrainMeter(regs)
    if isinstance(config, cfg.CmConfig):
        if not config.address:
            return Unusable("no address configured")
        return CmEvse(config.address, config.password, timeout_s)
    if config.dev_type == "meter_sunspec":
        if not config.address:
            return Unusable("no address configured")
        return SunSpecMeter(cfg.parse_meter_address(config.address), config.id, timeout_s,
                            voltage_v=voltage_v)
    if info.family in (Family.MODBUS_DEF, Family.HTTP_DEF):
        definition = active_catalog().get(config.dev_type)
        if definition is None:
            return Unusable(f"no valid meter definition {config.dev_type}")
        if not config.address:
            return Unusable("no address configured")
        if info.family is Family.HTTP_DEF:
            return HttpMeter(definition, config.address, timeout_s, voltage_v=voltage_v)
        endpoint = cfg.parse_meter_address(config.address)
        return ModbusMeter(definition, endpoint, config.id, timeout_s, voltage_v=voltage_v)
    return None


class Unusable:
    """A device that cannot be reached as configured (a defined meter without a valid
    definition file, a device without an address): every read is a COM error that says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def read(self, now_s: float) -> Any:
        raise DeviceError(self.reason)

    async def apply(self, setpoint: Any) -> None:
        raise DeviceError(self.reason)

    async def close(self) -> None:
        """Nothing to release."""


def _registers(config: cfg.DeviceConfig, timeout_s: float, powerbrain: Callable[[], Any]
               ) -> Registers:
    if config.address in (cfg.LOCAL_EVSE_ADDRESS, *cfg.LOCAL_METER_ADDRESSES):
        return LocalRegisters(powerbrain, config.address)
    endpoint = cfg.parse_host_port(config.address, "a local unit")
    return ModbusTcpRegisters(endpoint, config.id, timeout_s)
