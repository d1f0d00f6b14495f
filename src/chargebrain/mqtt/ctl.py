"""`cfos_mqtt/ctl`: an external controller sets wallbox setpoints in observation mode.

Only with the param `mqtt_ctl` on and load management off (`lb_enabled` false): chargebrain
then plans nothing for the wallboxes and an outside optimiser may drive them directly. The
payload names wallboxes by dev_id, every key optional:

    {"E1": {"cur": 8000, "ena": 1, "wke": 0, "phs": 3}, "E2": {"cur": 10000}}

- `cur`: mA per phase. More than the wallbox's maximum (`max_charging_cur`, the cycle's
  evaluated value when it is a formula, and the driver's own maximum) is cut to that maximum;
  0 < cur < `min_charging_cur` means no charging (no car charges below its minimum);
- `ena`: 0 stops charging, 1 allows it (true/false too);
- `phs`: 1 or 3 phases, for wallboxes that can switch phases (ignored by the others);
- `wke`: accepted (0/1) for compatibility; chargebrain has no wake-up command for any driver.

A key not given keeps what the last `ctl` message said for that wallbox (nothing said yet:
charging allowed, the maximum current). A message is applied as a whole or not at all: not
JSON, not an object, an unknown or disabled wallbox, an unknown key or a value out of range →
one log line, nothing changes.

**Silence is safe.** A wallbox that no `ctl` message named for `mqtt_ctl_timeout_s` seconds
(the controller died, the broker is gone) falls back to `disable_policy` (0 off, 1 its minimum,
−1 its maximum), as everywhere chargebrain gives up control. The same happens at once when
`mqtt_ctl` or MQTT is turned off and when chargebrain stops. When load management is turned on
the control cycle takes over and the held `ctl` setpoints are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from chargebrain.control.policy import policy_setpoint
from chargebrain.devices.base import EvseDriver, EvseSetpoint, evse_capabilities
from chargebrain.devices.config import EvseConfig
from chargebrain.devices.registry import Device, DeviceRegistry
from chargebrain.params import Params
from chargebrain.values import to_bool

log = logging.getLogger(__name__)

KEYS = frozenset({"cur", "ena", "wke", "phs"})
MAX_CUR_MA = 1_000_000
WRITE_TIMEOUT_S = 2.0


class CtlError(ValueError):
    """A `ctl` message was refused; the message says why."""


@dataclass(frozen=True, slots=True)
class CtlCommand:
    """What one `ctl` message says for one wallbox (None: not said)."""

    cur_ma: int | None = None
    enabled: bool | None = None
    wake: bool | None = None
    phases: int | None = None


def parse_ctl(payload: bytes, wallbox: Callable[[str], str | None]) -> dict[str, CtlCommand]:
    """dev_id → command for a `ctl` payload; `wallbox(dev_id)` says why a dev_id cannot be
    driven (None: it can). Raises CtlError for anything that is not a usable message."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise CtlError("the payload is not JSON") from None
    if not isinstance(data, dict) or not data:
        raise CtlError('the payload must be an object like {"E1": {"cur": 8000}}')
    out: dict[str, CtlCommand] = {}
    for dev_id, fields in data.items():
        problem = wallbox(dev_id)
        if problem is not None:
            raise CtlError(f"{dev_id}: {problem}")
        if not isinstance(fields, dict):
            raise CtlError(f"{dev_id}: must be an object with cur, ena, wke, phs")
        unknown = sorted(set(fields) - KEYS)
        if unknown:
            raise CtlError(f"{dev_id}: unknown key {unknown[0]}")
        out[dev_id] = CtlCommand(cur_ma=_current(dev_id, fields.get("cur")),
                                 enabled=_flag(dev_id, "ena", fields.get("ena")),
                                 wake=_flag(dev_id, "wke", fields.get("wke")),
                                 phases=_phases(dev_id, fields.get("phs")))
    return out


def _current(dev_id: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise CtlError(f"{dev_id}: cur must be a number of mA")
    if not 0 <= value <= MAX_CUR_MA:
        raise CtlError(f"{dev_id}: cur must be between 0 and {MAX_CUR_MA} mA")
    return round(value)


def _flag(dev_id: str, name: str, value: Any) -> bool | None:
    if value is None:
        return None
    flag = to_bool(value)
    if flag is None:
        raise CtlError(f"{dev_id}: {name} must be 0 or 1")
    return flag


def _phases(dev_id: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or value not in (1, 3):
        raise CtlError(f"{dev_id}: phs must be 1 or 3")
    return int(value)


@dataclass(slots=True)
class _Held:
    command: CtlCommand
    setpoint: EvseSetpoint
    at_s: float


class WallboxControl:
    """The held `ctl` setpoints, their writes and the fallback to `disable_policy`.

    `max_ma(dev_id)` is the wallbox's evaluated maximum from the last cycle (a formula's value),
    None when there is none; `clock` is the registry's."""

    def __init__(self, params: Params, devices: DeviceRegistry, *,
                 max_ma: Callable[[str], int | None] = lambda _dev_id: None) -> None:
        self.params = params
        self.devices = devices
        self.max_ma = max_ma
        self.writes = 0  # setpoints written (tests, diagnostics)
        self.fallbacks = 0  # wallboxes given back to disable_policy
        self._held: dict[str, _Held] = {}
        self._lock = asyncio.Lock()  # messages and the checks one after another, in order

    @property
    def active(self) -> bool:
        """`ctl` messages are taken now: the option is on and load management is off."""
        return bool(self.params["mqtt_ctl"]) and not bool(self.params["lb_enabled"])

    def held(self, dev_id: str) -> EvseSetpoint | None:
        """The setpoint a `ctl` message holds for this wallbox (the set_ajax_evse answer in
        observation mode), None when none does."""
        held = self._held.get(dev_id)
        return held.setpoint if held is not None and self.active else None

    def controlled(self) -> list[str]:
        return list(self._held)

    async def message(self, payload: bytes) -> None:
        """One `ctl` message: apply it as a whole, or log one line and change nothing."""
        async with self._lock:
            await self._message(payload)

    async def _message(self, payload: bytes) -> None:
        if not self.params["mqtt_ctl"]:
            log.warning("MQTT ctl ignored: the param mqtt_ctl is off")
            return
        if self.params["lb_enabled"]:
            log.warning("MQTT ctl ignored: load management is on (ctl works only in "
                        "observation mode, lb_enabled false)")
            return
        try:
            commands = parse_ctl(payload, self._why_not)
        except CtlError as err:
            log.warning("MQTT ctl ignored: %s", err)
            return
        now = self.devices.clock()
        for dev_id, command in commands.items():
            device = self.devices.get(dev_id)
            if device is None:  # deleted meanwhile
                continue
            old = self._held.get(dev_id)
            merged = _merge(old.command, command) if old is not None else command
            setpoint = self._setpoint(device, merged)
            self._held[dev_id] = _Held(merged, setpoint, now)
            if old is None or old.setpoint != setpoint:
                await self._write(device, setpoint, now)

    def _why_not(self, dev_id: str) -> str | None:
        device = self.devices.get(dev_id) if isinstance(dev_id, str) else None
        if device is None:
            return "no such device"
        if not isinstance(device.config, EvseConfig) or not isinstance(device.driver,
                                                                        EvseDriver):
            return "not a wallbox"
        if not device.enabled:
            return "the device is disabled"
        return None

    def _setpoint(self, device: Device, command: CtlCommand) -> EvseSetpoint:
        config = device.config
        assert isinstance(config, EvseConfig)
        limit = self._limit_ma(device, config)
        current = limit if command.cur_ma is None else min(command.cur_ma, limit)
        if current < config.min_charging_cur:
            current = 0
        caps = evse_capabilities(device.driver)
        one_phase = (command.phases == 1 if command.phases is not None and caps.phase_switching
                     else None)
        enabled = command.enabled is not False and current > 0
        return EvseSetpoint(current if enabled else 0, enabled=enabled, one_phase=one_phase)

    def _limit_ma(self, device: Device, config: EvseConfig) -> int:
        """The most this wallbox may be given: its configured maximum (a formula's value from
        the last cycle, else its minimum), capped by what the driver accepts."""
        if isinstance(config.max_charging_cur, int):
            limit = config.max_charging_cur
        else:
            evaluated = self.max_ma(device.dev_id)
            limit = evaluated if evaluated is not None else config.min_charging_cur
        caps = evse_capabilities(device.driver)
        if caps.max_current_ma is not None:
            limit = min(limit, caps.max_current_ma)
        return max(0, limit)

    async def _write(self, device: Device, setpoint: EvseSetpoint, now: float) -> None:
        if await self.devices.apply(device, setpoint, now, WRITE_TIMEOUT_S):
            self.writes += 1
        else:
            log.warning("MQTT ctl: writing %s to %s failed", setpoint, device.dev_id)

    async def check(self) -> None:
        """Called about once a second: silent wallboxes and a changed mode fall back."""
        async with self._lock:
            await self._check()

    async def _check(self) -> None:
        if not self._held:
            return
        if self.params["lb_enabled"]:  # the control cycle has taken over
            self._held.clear()
            return
        if not self.params["mqtt_ctl"] or not str(self.params["mqtt_url"]).strip():
            await self._release("mqtt_ctl or MQTT is off")
            return
        timeout_s = float(self.params["mqtt_ctl_timeout_s"])
        now = self.devices.clock()
        silent = [d for d, h in self._held.items() if now - h.at_s >= timeout_s]
        for dev_id in silent:
            await self._fall_back(dev_id, f"no ctl message for {timeout_s:.0f} s")
        for dev_id in [d for d in self._held if self._why_not(d) is not None]:
            self._held.pop(dev_id, None)  # deleted or disabled: not ours any more

    async def release(self, why: str) -> None:
        """Give every wallbox a `ctl` message holds back to `disable_policy` (still in
        observation mode; with load management on the cycle owns them)."""
        async with self._lock:
            await self._release(why)

    async def _release(self, why: str) -> None:
        if self.params["lb_enabled"]:
            self._held.clear()
            return
        for dev_id in list(self._held):
            await self._fall_back(dev_id, why)

    async def _fall_back(self, dev_id: str, why: str) -> None:
        self._held.pop(dev_id, None)
        device = self.devices.get(dev_id)
        if device is None or not isinstance(device.config, EvseConfig) or not device.enabled:
            return
        target = policy_setpoint(device.config, int(self.params["disable_policy"]))
        log.warning("MQTT ctl: %s: %s falls back to disable_policy (%d mA)", why, dev_id,
                    target.current_ma if target.charging_allowed else 0)
        self.fallbacks += 1
        await self._write(device, target, self.devices.clock())


def _merge(old: CtlCommand, new: CtlCommand) -> CtlCommand:
    """`new` over `old`: keys a message leaves out keep their last value."""
    return replace(old, **{name: value for name in ("cur_ma", "enabled", "wake", "phases")
                           if (value := getattr(new, name)) is not None})
