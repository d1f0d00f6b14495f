"""A cascaded charging manager (`evse_cm`): another chargebrain (or a cFos manager) seen by this
one, the master, as one wallbox.

The slave is reached over its HTTP API at `address` (`http://host:port`), as `admin` with the
device's `password`. Each read fetches its `get_dev_info`:
- its site limit (`max_total_current`, or `max_total_power` converted when that is a formula)
  is the wallbox's most (`cable_max_ma`);
- its wallboxes' measured currents, summed per phase in its building frame (each wallbox's
  `phase_rotation` applied), are the wallbox's draw; their power and energy are summed;
- the state is charging if any of its wallboxes charges, else vehicle detected if any has a
  car, else standby.
- its minimum is the smallest `min_charging_cur` among its wallboxes with a car connected
  (none connected: no minimum of its own, the master's configured one counts), rounded up to
  a whole percent of the slave's limit (the share below is whole percent). The smallest,
  not the sum: it is what the slave needs to start its first car, so the master admits the
  slave as soon as one of its cars can charge, and the slave admits further cars within the
  allotment as it grows (a sum would keep every car waiting until all fit at once).

The mechanism for the limit: `apply()` sets the slave's `max_total_cur_prc` to the master's
setpoint as a whole percentage of the slave's site limit, rounded down, so the slave's own load
management divides at most the master's allotment among its wallboxes (and never more than its
own fuse). That parameter is not written to the slave's database (api.md), so a restarted
slave starts at 100 % of its own limit. It is written every cycle; a slave that stops answering
is a COM error like any device (its last reading counts until the timeout).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from chargebrain.devices.base import (
    STATE_CHARGING,
    STATE_STANDBY,
    STATE_VEHICLE_DETECTED,
    STATE_VENTILATION,
    DeviceError,
    EvseCapabilities,
    EvseReading,
    EvseSetpoint,
)
from chargebrain.units import rotate_phases

MAX_ANSWER_BYTES = 5_000_000
PLUGGED = (STATE_VEHICLE_DETECTED, STATE_CHARGING, STATE_VENTILATION)


class CmEvse:
    """A slave charging manager behind its HTTP API."""

    def __init__(self, address: str, password: str, timeout_s: float) -> None:
        self.address = address.rstrip("/")
        self.password = password
        self.timeout_s = timeout_s
        self.limit_ma = 0  # the slave's site limit at 100 %, from the last read
        self.last_prc: int | None = None  # the share last written
        self._session: aiohttp.ClientSession | None = None

    @property
    def capabilities(self) -> EvseCapabilities:
        """Whole percent of the slave's limit; at most that limit."""
        if self.limit_ma <= 0:
            return EvseCapabilities()
        return EvseCapabilities(step_ma=max(1, self.limit_ma // 100),
                                max_current_ma=self.limit_ma)

    async def _call(self, method: str, cmd: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"Authorization": aiohttp.encode_basic_auth("admin", self.password)})
        url = f"{self.address}/cnf?cmd={cmd}"
        try:
            async with self._session.request(method, url, json=body) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES + 1)
                if response.status == 401:
                    raise DeviceError(f"{self.address}: the slave refused the password")
                if response.status != 200:
                    raise DeviceError(f"{self.address}: {cmd} answered HTTP {response.status}")
        except TimeoutError:
            raise DeviceError(f"no answer from {self.address} within {self.timeout_s:g} s"
                              ) from None
        except aiohttp.ClientError as err:
            raise DeviceError(f"cannot reach {self.address} ({type(err).__name__})") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise DeviceError(f"{self.address}: {cmd} did not answer JSON") from None

    async def read(self, now_s: float) -> EvseReading:
        info = await self._call("GET", "get_dev_info")
        try:
            return self._reading(info)
        except (KeyError, TypeError, ValueError) as err:
            raise DeviceError(f"{self.address}: unexpected get_dev_info ({err})") from None

    def _reading(self, info: dict[str, Any]) -> EvseReading:
        params = info["params"]
        volts = int(params.get("system_voltage", 230)) or 230
        configured = params.get("max_total_current")
        if isinstance(configured, int) and not isinstance(configured, bool):
            self.limit_ma = configured
        else:  # a formula: its value is published as power over three phases
            self.limit_ma = round(int(params["max_total_power"]) * 1000 / (3 * volts))
        prc = int(params.get("max_total_cur_prc", 100))
        currents = [0, 0, 0]
        power = energy = 0
        has_energy, states, minima = False, [], []
        for dev in info["devices"]:
            if not dev.get("is_evse") or dev.get("dev_type") == "evse_group" \
                    or dev.get("com_err"):
                continue
            phases = (int(dev["current_l1"]), int(dev["current_l2"]), int(dev["current_l3"]))
            building = rotate_phases(phases, int(dev.get("phase_rotation", 0)))
            currents = [a + b for a, b in zip(currents, building, strict=True)]
            power += int(dev.get("power_w", 0))
            if dev.get("total_energy") is not None:
                energy += int(dev["total_energy"])
                has_energy = True
            states.append(int(dev.get("state", STATE_STANDBY)))
            if int(dev.get("state", STATE_STANDBY)) in PLUGGED:
                minima.append(int(dev.get("min_charging_cur", 0)))
        if STATE_CHARGING in states or STATE_VENTILATION in states:
            state = STATE_CHARGING
        elif STATE_VEHICLE_DETECTED in states:
            state = STATE_VEHICLE_DETECTED
        else:
            state = STATE_STANDBY
        title = str(params.get("title") or "charging manager")
        return EvseReading(
            state=state,
            currents_ma=(currents[0], currents[1], currents[2]),
            power_w=power,
            total_energy_wh=energy if has_energy else None,
            model=f"{title},{params.get('version', '')}",
            cable_max_ma=self.limit_ma,
            current_limit_ma=self.limit_ma * prc // 100,
            offered_ma=self.limit_ma * prc // 100,
            enabled=prc > 0,
            min_current_ma=self._min_share_ma(min(minima)) if minima else 0,
        )

    def _min_share_ma(self, need_ma: int) -> int:
        """The least allotment whose whole-percent share (rounded down, `share_prc`) still
        gives the slave `need_ma`: rounded up to a whole percent of its limit."""
        if self.limit_ma <= 0:
            return need_ma
        prc = min(100, -(-need_ma * 100 // self.limit_ma))
        return -(-prc * self.limit_ma // 100)

    def share_prc(self, setpoint: EvseSetpoint) -> int:
        """The slave's `max_total_cur_prc` for `setpoint`: whole percent, rounded down."""
        if not setpoint.charging_allowed or self.limit_ma <= 0:
            return 0
        return max(0, min(100, setpoint.current_ma * 100 // self.limit_ma))

    async def apply(self, setpoint: EvseSetpoint) -> None:
        if self.limit_ma <= 0:
            await self.read(0.0)  # the share is relative to the slave's limit
        prc = self.share_prc(setpoint)
        await self._call("POST", "set_params", {"max_total_cur_prc": prc})
        self.last_prc = prc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
