"""HTTP-input devices: `set_ajax_meter` and `set_ajax_evse` (POST JSON body or GET form).

Admin credentials are needed unless the device is configured with `accept_unauthenticated`.
The pushed values become the device's reading at once (get_dev_info shows them) and the
registry's `on_push` listeners are told, so the control cycle can react immediately.
set_ajax_evse answers the control object the caller must apply to its wallbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chargebrain.api.auth import require_admin
from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import bad_request, not_found
from chargebrain.control.policy import policy_setpoint
from chargebrain.devices.base import EvseSetpoint
from chargebrain.devices.config import EvseConfig
from chargebrain.devices.drivers.ajax import (
    AjaxEvse,
    AjaxMeter,
    PushError,
    parse_evse_push,
    parse_meter_push,
)
from chargebrain.devices.registry import Device

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain

QUERY_ONLY = frozenset({"cmd", "dev_id"})


def _push_device(app: ChargeBrain, req: ApiRequest, driver_type: type, what: str) -> Device:
    """The HTTP-input device of the request, after the access check."""
    dev_id = req.required_text("dev_id").strip()
    device = app.devices.get(dev_id)
    open_device = device is not None and getattr(device.config, "accept_unauthenticated", False)
    if not open_device:
        require_admin(req)
    if device is None:
        raise not_found("unknown device")
    if not isinstance(device.driver, driver_type):
        raise bad_request(f"{dev_id} is not an HTTP input {what}")
    return device


def _pushed_data(req: ApiRequest) -> dict[str, Any]:
    """The JSON body when there is one, else the query parameters (GET form)."""
    if req.body.strip():
        data = req.json_body()
        if not isinstance(data, dict):
            raise bad_request("body must be a JSON object")
        return data
    return {k: v for k, v in req.query.items() if k not in QUERY_ONLY}


def _accept_push(app: ChargeBrain, req: ApiRequest, driver_type: type, what: str,
                 parse: Any) -> Device:
    """Parse the pushed data against the device's last reading and hand it to the registry."""
    device = _push_device(app, req, driver_type, what)
    driver: Any = device.driver
    try:
        reading = parse(_pushed_data(req), int(app.params["system_voltage"]), driver.reading)
    except PushError as err:
        raise bad_request(str(err)) from None
    app.devices.push(device, reading, app.devices.clock())
    return device


async def set_ajax_meter(app: ChargeBrain, req: ApiRequest) -> str:
    """Store the values an HTTP-input meter pushes."""
    _accept_push(app, req, AjaxMeter, "meter", parse_meter_push)
    return "ok"


async def set_ajax_evse(app: ChargeBrain, req: ApiRequest) -> dict[str, Any]:
    """Store what an HTTP-input wallbox pushes; answer what it must do now.

    While load management is on, the answer is always a plan's: a push that no plan covers
    yet (a new wallbox, a car just plugged in) runs one at once and waits for it; if it cannot
    finish in time the answer is 0 A, charging not enabled. Only where control is given up
    (observation mode, a disabled device, the control cycle stopped) does `disable_policy`
    apply.
    """
    device = _accept_push(app, req, AjaxEvse, "wallbox", parse_evse_push)
    driver = device.driver
    assert isinstance(driver, AjaxEvse)
    config = device.config
    assert isinstance(config, EvseConfig)
    policy = int(app.params["disable_policy"])
    if not app.params["lb_enabled"] or not device.enabled:
        # observation mode: what a cfos_mqtt/ctl message holds for it (mqtt/ctl.py), if any
        held = app.mqtt.ctl.held(device.dev_id) if device.enabled else None
        return control_answer(device, held or policy_setpoint(config, policy))
    cycle = app.cycle
    if cycle.stopping:  # control given up: what stop() left it with, else disable_policy
        return control_answer(device, driver.setpoint or policy_setpoint(config, policy))
    setpoint = NOTHING
    if not cycle.needs_plan(device) or await cycle.plan_for(
            device, min(PLAN_WAIT_S, cycle.period_s)):
        setpoint = cycle.answer(device)
    cycle.delivered(device, setpoint)
    return control_answer(device, setpoint)


PLAN_WAIT_S = 2.0  # the longest a set_ajax_evse answer waits for a plan covering the wallbox
NOTHING = EvseSetpoint(0, enabled=False)


def control_answer(device: Device, setpoint: EvseSetpoint) -> dict[str, Any]:
    """The set_ajax_evse answer for `setpoint`."""
    config = device.config
    assert isinstance(config, EvseConfig)
    return {"device_enabled": config.device_enabled == 1,
            "charging_enabled": setpoint.charging_allowed,
            "paused": bool(device.status.paused),
            "charging_current": setpoint.current_ma if setpoint.charging_allowed else 0}


COMMANDS: dict[str, Command] = {
    "set_ajax_meter": Command(set_ajax_meter, Access.CHECKED),
    "set_ajax_evse": Command(set_ajax_evse, Access.CHECKED),
}
