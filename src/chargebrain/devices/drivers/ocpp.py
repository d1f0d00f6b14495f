"""OCPP 1.6J wallboxes (`evse_ocpp`): one connector of a box connected to the central system.

`address` is the ChargeBox ID, `id` the connector. The box sends its data (StatusNotification,
MeterValues); `read()` hands out what the box's `BoxLink` last heard and raises `DeviceError`
while the box is not connected, not set up, faulted, or its last profile failed, so the cycle
books it as a COM error. `apply()` sends the setpoint as a SetChargingProfile in A
(`BoxLink.set_limit`); the link renews it before it runs out while this driver keeps reading.
A setpoint with `end_session` (override C) also ends a running transaction with
RemoteStopTransaction, once per transaction; lifting it (`c`) sends nothing: the next profile
lets the car charge again.
"""

from __future__ import annotations

from collections.abc import Callable

from chargebrain.devices.base import (
    DeviceError,
    EvseCapabilities,
    EvseReading,
    EvseSetpoint,
)
from chargebrain.ocpp import BoxLink, CentralSystem, OcppError

# Profiles carry A with one decimal (handler.limit_a rounds down to 0.1 A).
OCPP_CAPABILITIES = EvseCapabilities(step_ma=100)
OCPP_SWITCHING = EvseCapabilities(step_ma=100, phase_switching=True)


class OcppEvse:
    """One connector of an OCPP box; `central()` is the running server (None: it is off)."""

    def __init__(self, central: Callable[[], CentralSystem | None], box_id: str,
                 connector_id: int, voltage_v: int) -> None:
        self.central = central
        self.box_id = box_id
        self.connector_id = connector_id
        self.voltage_v = voltage_v

    @property
    def capabilities(self) -> EvseCapabilities:
        """0.1 A steps; phase switching when the box reported it at its last setup."""
        central = self.central()
        link = central.link(self.box_id) if central is not None else None
        return OCPP_SWITCHING if link is not None and link.phase_switching else OCPP_CAPABILITIES

    def _link(self) -> BoxLink:
        central = self.central()
        if central is None:
            raise DeviceError("the OCPP server is off (--ocpp-port 0)")
        link = central.link(self.box_id)
        if link is None or not link.connected:
            raise DeviceError(f"OCPP box {self.box_id} is not connected")
        if not link.ready:
            raise DeviceError(link.error or f"OCPP box {self.box_id} is not set up yet")
        return link

    async def read(self, now_s: float) -> EvseReading:
        link = self._link()
        link.touch(self.connector_id)  # still wanted: the keeper renews (or retries) it
        if link.error:
            raise DeviceError(link.error)
        conn = link.connector(self.connector_id)
        if conn.faulted:
            raise DeviceError(f"OCPP connector {self.connector_id} Faulted ({conn.error_code})")
        limit = link.limits.get(self.connector_id)
        if limit is not None and limit.failed:
            limit = None
        power_w = conn.power_w
        if power_w is None:
            power_w = round(sum(conn.currents_ma) * self.voltage_v / 1000)
        return EvseReading(
            state=conn.state,
            currents_ma=conn.currents_ma,
            power_w=power_w,
            total_energy_wh=conn.energy_wh,
            current_limit_ma=limit.current_ma if limit is not None else 0,
            enabled=limit is None or limit.current_ma > 0,
            phase_switching=link.phase_switching,
        )

    async def apply(self, setpoint: EvseSetpoint) -> None:
        link = self._link()
        if self.connector_id in link.central.released(self.box_id):
            return  # disabled under disable_policy −1: its profiles are cleared, none sent
        current_ma = setpoint.current_ma if setpoint.charging_allowed else 0
        phases = None if setpoint.one_phase is None else (1 if setpoint.one_phase else 3)
        try:
            await link.set_limit(self.connector_id, current_ma, phases)
        except OcppError as err:
            raise DeviceError(str(err)) from None
        if setpoint.end_session:  # override C: the running transaction ends (once)
            await link.remote_stop(self.connector_id)
        else:
            link.resumed(self.connector_id)

    async def close(self) -> None:
        """Nothing to release: the connection belongs to the central system."""
