"""The JSON shapes of get_dev_info: the `params` object and one object per device.

Field names and types follow compat.md exactly: `device_enabled` is an int, `state` is 1–6
(6 = offline, for a device with a COM error), every number is an integer (mA, W, Wh, V),
EVSEs carry both `power_w` and `cur_charging_power`, meters both `power_w` and `power`, and
the power-based parameter names of the older firmware are served next to the current-based
ones, converted with `system_voltage` × 3 phases.
"""

from __future__ import annotations

from typing import Any

from chargebrain.devices import config as cfg
from chargebrain.devices.base import STATE_ERROR, STATE_OFFLINE, STATE_STANDBY, EvseReading
from chargebrain.devices.registry import Device, DeviceRegistry
from chargebrain.devices.types import Kind
from chargebrain.units import Phases, add, current_ma, phase_count, rotate_phases

VENDOR_ID = 52997  # 0xcf05, the vendor id of the controller we are compatible with
PRODUCT_ID = 1
MAX_EVSES = 1000  # no licence limit; clients only display this
LOCAL_EVSE = cfg.LOCAL_EVSE_ADDRESS


def power_from_current_w(current_ma_: int, voltage_v: int) -> int:
    """Three-phase power of a per-phase current (the W vocabulary of older firmware)."""
    return round(current_ma_ * voltage_v * 3 / 1000)


def current_from_power_ma(power_w: float, voltage_v: int) -> int:
    """Per-phase current of a three-phase power (inverse of `power_from_current_w`)."""
    return current_ma(power_w, voltage_v, 3)


def params_info(params: dict[str, Any], registry: DeviceRegistry, *, now_s: float,
                version: str, cycle_ms: int, serialno: str) -> dict[str, Any]:
    """The `params` object of get_dev_info / get_params."""
    site = registry.site
    volts = int(params["system_voltage"])
    configured_max = params["max_total_current"]
    if isinstance(configured_max, int):
        max_total_ma = configured_max
    else:  # a formula: the cycle publishes its value; 0 until it has run
        max_total_ma = site.max_total_current_ma or 0
    reserve_ma = int(params["reserve_current"])
    evse_cap_ma = int(params["max_total_evse_current"])
    budget_ma = max(0, max_total_ma * int(params["max_total_cur_prc"]) // 100 - reserve_ma)
    if evse_cap_ma > 0:
        budget_ma = min(budget_ma, evse_cap_ma)
    cons_w = site.cons_evse_power_w
    if cons_w is None:
        cons_w = sum(registry.evse_measurement(d).power_w for d in registry.evses()
                     if d.status.evse_reading is not None and not d.status.com_err)
    avail_w = site.avail_evse_power_w
    if avail_w is None:
        avail_w = power_from_current_w(budget_ma, volts)
    out: dict[str, Any] = {
        "title": params["title"],
        "desc": params["desc"],
        # current-based names (newer firmware)
        "max_total_current": configured_max,
        "reserve_current": reserve_ma,
        "overdraft_cur": int(params["overdraft_cur"]),
        "max_total_evse_current": evse_cap_ma,
        "cons_evse_power": cons_w,
        "avail_evse_power": avail_w,
        "grid_pwr": site.grid_pwr_w or 0,
        "cons_pwr": site.cons_pwr_w or 0,
        "surplus_power": site.surplus_power_w or 0,
        "error_pwr": site.error_pwr_w or 0,
        # power-based names (older firmware), W over three phases
        "max_total_power": power_from_current_w(max_total_ma, volts),
        "power_reserve": power_from_current_w(reserve_ma, volts),
        "overdraft": power_from_current_w(int(params["overdraft_cur"]), volts),
        "max_total_evse_power": power_from_current_w(evse_cap_ma, volts),
        "consumed_evse_power": cons_w,
        "remaining_evse_power": max(0, avail_w - cons_w),
        "lb_enabled": bool(params["lb_enabled"]),
        "disable_policy": int(params["disable_policy"]),
        "max_imbalance": int(params["max_imbalance"]),
        "imbalance_add": bool(params["imbalance_add"]),
        "min_pause_time": int(params["min_pause_time"]),
        "price_model": int(params["price_model"]),
        "cycle_time": site.cycle_time_ms if site.cycle_time_ms is not None else cycle_ms,
        "max_evses": MAX_EVSES,
        "shareware_mode": False,
        "version": version,
        "time": int(now_s),
        "vsn": {"vendorid": VENDOR_ID, "version": version, "productid": PRODUCT_ID,
                "serialno": serialno},
        "ocpp_gateway_license_cnt": 0,
        "ocpp_gateway_licenses_used": 0,
        "ocpp_unknown_boxes": list(site.ocpp_unknown_boxes),
    }
    for name, value in params.items():
        out.setdefault(name, value)
    return out


def device_info(registry: DeviceRegistry, device: Device, *, now_s: float, voltage_v: int
                ) -> dict[str, Any]:
    """One entry of get_dev_info's `devices`."""
    config = device.config
    status = device.status
    reading = status.reading
    out: dict[str, Any] = {
        "dev_type": config.dev_type,
        "device_enabled": int(config.device_enabled),
        "name": config.name,
        "address": cfg.shown_address(config.address),
        "id": int(config.id),
        "dev_id": device.dev_id,
        "number": int(config.number),
        "desc": config.desc,
        "com_err": bool(status.com_err),
        "com_err_secs": status.com_err_secs(now_s),
        "com_errors": int(status.com_errors),
        "last_error": status.last_error,
        "is_evse": device.kind is Kind.EVSE,
        "used_phases": int(config.used_phases),
        "model": reading.model if reading is not None else "",
    }
    if device.is_group:
        out.update(_group_fields(registry, device, voltage_v))
    elif isinstance(config, cfg.EvseConfig):
        out.update(_evse_fields(registry, device, config, voltage_v))
    elif isinstance(config, cfg.MeterConfig):
        out.update(_meter_fields(device, config, voltage_v))
    return out


def _state(device: Device) -> int:
    if device.status.com_err:
        return STATE_OFFLINE
    reading = device.status.evse_reading
    if reading is None:
        return STATE_STANDBY
    return reading.state if STATE_STANDBY <= reading.state <= STATE_ERROR else STATE_ERROR


def _max_current_ma(config: cfg.EvseConfig | cfg.GroupConfig) -> int:
    """The configured maximum; a formula shows as 0 (formulas are not evaluated)."""
    return config.max_charging_cur if isinstance(config.max_charging_cur, int) else 0


def _evse_fields(registry: DeviceRegistry, device: Device, config: cfg.EvseConfig,
                 voltage_v: int) -> dict[str, Any]:
    status = device.status
    reading = status.evse_reading
    measured = registry.evse_measurement(device)
    phases = phase_count(config.used_phases) or 3
    out: dict[str, Any] = {
        "label": config.label,
        "min_charging_cur": config.min_charging_cur,
        "max_charging_cur": config.max_charging_cur,
        "max_power": round(_max_current_ma(config) * voltage_v * phases / 1000),
        "prio": config.prio,
        "group": config.group,
        "phase_rotation": config.phase_rotation,
        "charging_enabled": bool(status.charging_enabled),
        "cur_charging_power": measured.power_w,
        "power_w": measured.power_w,
        "current_l1": measured.currents_ma[0],
        "current_l2": measured.currents_ma[1],
        "current_l3": measured.currents_ma[2],
        "last_set_charging_cur": int(status.last_set_charging_cur_ma),
        "total_energy": int(measured.energy_wh),
        "phases": sum(1 << i for i, c in enumerate(measured.currents_ma) if c > 500),
        "state": _state(device),
        "lreason": status.lreason,
        "paused": bool(status.paused),
        "pause_time": int(status.pause_time_s),
        "pause_min_time": int(status.pause_min_time_s),
        "pause_reason": status.pause_reason,
        "charging_dur": int(status.charging_dur_s),
        "needs_auth": bool(status.needs_auth),
        "ov_cur": int(status.ov_cur_ma),
        "overrides": int(status.overrides),
        "ta_en": int(status.ta_en_wh),
    }
    if config.attach:
        out["attach"] = config.attach
    if config.dev_type == "evse_powerbrain" and config.address == LOCAL_EVSE:
        out["evse"] = _local_evse(reading)
    return out


def _local_evse(reading: EvseReading | None) -> dict[str, Any]:
    """The nested `evse` object the built-in wallbox carries."""
    if reading is None:
        return {"cp_state": "Standby", "pp_state": "no cable", "charging": False,
                "current": 0, "enabled": False}
    return {"cp_state": reading.cp_state or "Standby", "pp_state": reading.pp_state or "no cable",
            "charging": reading.charging, "current": int(reading.offered_ma),
            "enabled": bool(reading.enabled)}


def _group_fields(registry: DeviceRegistry, device: Device, voltage_v: int) -> dict[str, Any]:
    """A group shows the EVSE fields (clients treat every E<n> alike), summed over the
    wallboxes below it, in the building frame."""
    config = device.config
    assert isinstance(config, cfg.GroupConfig)
    members = registry.evses_below(device.number)
    currents: Phases = (0, 0, 0)
    power = energy = 0
    states = []
    for member in members:
        measured = registry.evse_measurement(member)
        rotation = getattr(member.config, "phase_rotation", 0)
        currents = add(currents, rotate_phases(measured.currents_ma, rotation))
        power += measured.power_w
        energy += measured.energy_wh
        states.append(_state(member))
    state = 3 if 3 in states or 4 in states else 2 if 2 in states else STATE_STANDBY
    limit = _max_current_ma(config)
    return {
        "label": "", "min_charging_cur": 0, "max_charging_cur": config.max_charging_cur,
        "max_power": round(limit * voltage_v * 3 / 1000), "prio": 1, "group": config.group,
        "phase_rotation": 0, "charging_enabled": True, "cur_charging_power": power,
        "power_w": power, "current_l1": currents[0], "current_l2": currents[1],
        "current_l3": currents[2], "last_set_charging_cur": -1, "total_energy": energy,
        "phases": sum(1 << i for i, c in enumerate(currents) if c > 500), "state": state,
        "lreason": "", "paused": False, "pause_time": 0, "pause_min_time": 0,
        "pause_reason": "", "charging_dur": 0, "needs_auth": False, "ov_cur": 0,
        "overrides": 0, "ta_en": 0, "members": [m.dev_id for m in registry.members(device.number)],
    }


def _meter_fields(device: Device, config: cfg.MeterConfig, voltage_v: int) -> dict[str, Any]:
    reading = device.status.meter_reading
    if reading is None:
        currents: Phases = (0, 0, 0)
        volts: Phases = (voltage_v, voltage_v, voltage_v)
        power = imported = exported = 0
        is_va = config.is_va
    else:
        volts, power = reading.voltages_v, reading.power_w
        imported, exported = reading.import_wh, reading.export_wh
        is_va = config.is_va if reading.is_va is None else reading.is_va
        currents = reading.currents_ma or _spread(power, config.phases, volts)
    out: dict[str, Any] = {
        "is_va": bool(is_va),
        "invert": bool(config.invert),
        "import": int(imported),
        "export": int(exported),
        "power": int(power),
        "power_w": int(power),
        "current_l1": int(currents[0]),
        "current_l2": int(currents[1]),
        "current_l3": int(currents[2]),
        "voltage_l1": int(volts[0]),
        "voltage_l2": int(volts[1]),
        "voltage_l3": int(volts[2]),
        "role": config.role,
        "group": config.group,
        "phase_rotation": config.phase_rotation,
    }
    if reading is not None and reading.soc is not None:
        out["soc"] = int(reading.soc)
    return out


def _spread(power_w: int, mask: int, volts: Phases) -> Phases:
    """Per-phase currents of a total-power-only meter: power spread evenly over its phases."""
    mask = mask or 0b111
    n = phase_count(mask)
    return tuple(current_ma(power_w / n, volts[i] or 230) if mask & (1 << i) else 0  # type: ignore[return-value]
                 for i in range(3))
