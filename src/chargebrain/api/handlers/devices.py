"""Device and configuration commands.

get_dev_info, get_params, set_params, get_dev_types, get_devices, set_device, del_device,
reset_device, soft_meter, set_diag_logging, accept_license. Parsing and authorisation live
here; the domain is `app.devices` (devices/registry.py), `app.params` and the JSON shapes in
devices/view.py; get_dev_info and get_params serve the bytes of the state snapshot
(state.py). See docs/api.md for every command's parameters, answers and errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import TYPE_CHECKING, Any

from chargebrain.api.auth import require_admin
from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import bad_request, not_found
from chargebrain.devices import types, view
from chargebrain.devices.config import ConfigError
from chargebrain.devices.registry import Device
from chargebrain.params import ParamError

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain

LICENSE_NS = "license"
MAX_SOFT_METER_WH = 10**12

# set_params accepts the power-based names of older firmware (W over three phases) and stores
# them as the current-based parameter (mA per phase).
POWER_PARAMS = {"max_total_power": "max_total_current", "power_reserve": "reserve_current",
                "overdraft": "overdraft_cur", "max_total_evse_power": "max_total_evse_current"}
READ_ONLY = frozenset({
    "cons_evse_power", "avail_evse_power", "grid_pwr", "cons_pwr", "surplus_power", "error_pwr",
    "consumed_evse_power", "remaining_evse_power", "cycle_time", "max_evses", "shareware_mode",
    "version", "time", "vsn", "ocpp_gateway_license_cnt", "ocpp_gateway_licenses_used",
    "dev_meta"})


async def get_dev_info(app: ChargeBrain, req: ApiRequest) -> bytes:
    """Parameters and the state of every device: the state snapshot's bytes (state.py)."""
    return app.state.current().dev_info_for(req.principal.is_admin)


async def get_params(app: ChargeBrain, req: ApiRequest) -> bytes:
    """The `params` object of get_dev_info plus `dev_meta` (dev_type → label), from the
    state snapshot."""
    return app.state.current().params_for(req.principal.is_admin)


async def get_dev_types(app: ChargeBrain, req: ApiRequest) -> dict[str, str]:
    """Every dev_type → label."""
    return types.labels()


async def get_devices(app: ChargeBrain, req: ApiRequest) -> list[dict[str, Any]]:
    """Every device configuration (admin)."""
    return app.devices.configs()


def _param_updates(app: ChargeBrain, body: dict[str, Any]) -> dict[str, Any]:
    """Validate the global parameters of a set_params body (both vocabularies)."""
    plain: dict[str, Any] = {}
    powers: dict[str, Any] = {}
    for name, value in body.items():
        if name in READ_ONLY:
            raise bad_request(f"{name} is read-only")
        if name in POWER_PARAMS:
            if POWER_PARAMS[name] in body:
                raise bad_request(f"give either {name} or {POWER_PARAMS[name]}, not both")
            powers[name] = value
        else:
            plain[name] = value
    try:
        updates = app.params.validate_updates(plain)
        volts = int(updates.get("system_voltage", app.params["system_voltage"]))
        for name, value in powers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ParamError(f"{name} must be a number (W)")
            try:
                watts = float(value)
            except ValueError:
                raise ParamError(f"{name} must be a number (W)") from None
            if not math.isfinite(watts):
                raise ParamError(f"{name} must be a finite number")
            target = POWER_PARAMS[name]
            updates.update(app.params.validate_updates(
                {target: view.current_from_power_ma(watts, volts)}))
    except ParamError as err:
        raise bad_request(str(err)) from None
    return updates


def _devices_list(devices: Any) -> list[Any]:
    """The `devices` array of a body: at most one device object."""
    if not isinstance(devices, list):
        raise bad_request("devices must be a list with one device object")
    if len(devices) > 1:
        raise bad_request("only one device per call")
    return devices


def _json_object(req: ApiRequest) -> dict[str, Any]:
    body = req.json_body()
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body


async def set_params(app: ChargeBrain, req: ApiRequest) -> str:
    """Global parameters and/or one device (`devices: [config]`); all or nothing."""
    body = _json_object(req)
    rest = {k: v for k, v in body.items() if k != "devices"}
    devices = _devices_list(body["devices"]) if "devices" in body else []
    updates = _param_updates(app, rest)
    change = _prepare(app, devices[0]) if devices else None
    if change is None:
        app.params.apply(updates)
        return "ok"
    app.params.apply_with(updates, change.write)
    await app.devices.activate(change)
    return "ok"


def _prepare(app: ChargeBrain, device: Any) -> Any:
    try:
        return app.devices.prepare(device)
    except ConfigError as err:
        raise bad_request(str(err)) from None


async def set_device(app: ChargeBrain, req: ApiRequest) -> str:
    """Create or update one device: body `{"devices": [config]}`."""
    body = _json_object(req)
    for key in body:
        if key != "devices":
            raise bad_request(f"unknown key {key}")
    if "devices" not in body:
        raise bad_request("missing key devices")
    devices = _devices_list(body["devices"])
    if not devices:
        raise bad_request("devices must contain one device object")
    await app.devices.save(_prepare(app, devices[0]))
    return "ok"


def device_arg(app: ChargeBrain, req: ApiRequest) -> Device:
    """The device named by `dev_id` (400 when missing, 404 when unknown)."""
    dev_id = req.required_text("dev_id").strip()
    device = app.devices.get(dev_id)
    if device is None:
        raise not_found("unknown device")
    return device


async def del_device(app: ChargeBrain, req: ApiRequest) -> str:
    """Delete a device that nothing refers to any more."""
    device = device_arg(app, req)
    try:
        app.devices.check_delete(device.dev_id)
    except ConfigError as err:
        raise bad_request(str(err)) from None
    await app.devices.delete(device.dev_id)
    return "ok"


async def reset_device(app: ChargeBrain, req: ApiRequest) -> str:
    """Destroy and re-create a device's driver and runtime state."""
    device = device_arg(app, req)
    await app.devices.reset(device.dev_id)
    return "ok"


async def soft_meter(app: ChargeBrain, req: ApiRequest) -> int:
    """Read an EVSE's soft meter (Wh); with `val`, set it (admin). Answers the old value."""
    if req.has("val"):
        require_admin(req)
    else:
        app.auth.require(req, Access.READ)
    device = device_arg(app, req)
    if not device.is_evse or device.is_group:
        raise bad_request(f"{device.dev_id} is not a wallbox")
    value = req.integer("val", lo=0, hi=MAX_SOFT_METER_WH)
    previous = int(device.status.soft_meter_wh)
    if value is not None:
        app.devices.set_soft_meter(device, value)
    return previous


class DiagLogging:
    """Diagnostic logging: DEBUG for the `chargebrain` loggers, back after `DURATION_S`."""

    DURATION_S = 300.0

    def __init__(self) -> None:
        self.logger = logging.getLogger("chargebrain")
        self.until_s: float | None = None
        self._saved_level: int | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return self.until_s is not None

    def enable(self, now_s: float) -> None:
        """Log at DEBUG from `now_s` for DURATION_S (a second call restarts the period)."""
        if self._saved_level is None:
            self._saved_level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.until_s = now_s + self.DURATION_S
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(self.DURATION_S, self.disable)
        self.logger.info("diagnostic logging on for %d s", self.DURATION_S)

    def expire(self, now_s: float) -> None:
        """Turn off when the period has run out at `now_s` (the timer calls `disable`)."""
        if self.until_s is not None and now_s >= self.until_s:
            self.disable()

    def disable(self) -> None:
        """Back to the level before `enable`."""
        self._cancel_timer()
        if self._saved_level is not None:
            self.logger.setLevel(self._saved_level)
            self.logger.info("diagnostic logging off")
        self._saved_level = None
        self.until_s = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_DIAG: weakref.WeakKeyDictionary[Any, DiagLogging] = weakref.WeakKeyDictionary()


def diag_logging(app: ChargeBrain) -> DiagLogging:
    """The diagnostic-logging switch of `app`."""
    if app not in _DIAG:
        _DIAG[app] = DiagLogging()
    return _DIAG[app]


async def set_diag_logging(app: ChargeBrain, req: ApiRequest) -> str:
    """`enable=1` logs at DEBUG for 5 minutes; `enable=0` stops at once."""
    if not req.has("enable"):
        raise bad_request("missing parameter enable")
    diag = diag_logging(app)
    if req.flag("enable"):
        diag.enable(app.devices.clock())
    else:
        diag.disable()
    return "ok"


async def accept_license(app: ChargeBrain, req: ApiRequest) -> str:
    """Record the licence acceptance and the usage-statistics choice. chargebrain never
    reports anything anywhere; the choice is only stored and shown."""
    if not req.has("acc"):
        raise bad_request("missing parameter acc")
    accepted = req.flag("acc")
    allow_stats = req.flag("allow_usage_stats")
    app.store.kv_set_many(LICENSE_NS, {"accepted": accepted, "allow_usage_stats": allow_stats,
                                       "time": int(app.devices.clock())})
    return "ok"


COMMANDS: dict[str, Command] = {
    "get_dev_info": Command(get_dev_info, Access.READ),
    "get_params": Command(get_params, Access.READ),
    "get_dev_types": Command(get_dev_types, Access.READ),
    "get_devices": Command(get_devices, Access.ADMIN),
    "set_params": Command(set_params, Access.ADMIN),
    "set_device": Command(set_device, Access.ADMIN),
    "del_device": Command(del_device, Access.ADMIN),
    "reset_device": Command(reset_device, Access.ADMIN),
    "soft_meter": Command(soft_meter, Access.CHECKED),
    "set_diag_logging": Command(set_diag_logging, Access.ADMIN),
    "accept_license": Command(accept_license, Access.ADMIN),
}
