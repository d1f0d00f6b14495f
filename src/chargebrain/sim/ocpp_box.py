"""A simulated OCPP 1.6J wallbox: the `ocpp` library's client-side `ChargePoint` over a real
WebSocket, for tests, the soak and `--demo`.

`SimBox` connects to `ws://host:port/<box_id>`, answers the central system's calls
(SetChargingProfile with `profile_status`, ChangeConfiguration, GetConfiguration,
ClearChargingProfile, RemoteStopTransaction) and keeps the profiles it accepted the way a box
does: one per connector, purpose and stack level. `limit_a(connector)` is the limit it would
apply now (the highest valid stack level: the transaction's TxProfile, else the connector's
TxDefaultProfile, else connector 0's), so a test can check what a real box would do,
including the fallback when profiles run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect


@dataclass(slots=True)
class Installed:
    """One accepted profile (the library's snake_case dict) and when its schedule ends."""

    profile: dict[str, Any]
    ends: datetime | None


@dataclass(slots=True)
class SimConnector:
    status: str = "Available"
    transaction_id: int | None = None
    energy_wh: int = 0
    profiles: dict[tuple[str, int], Installed] = field(default_factory=dict)


class SimBox(ChargePoint):  # type: ignore[misc]  # the library is untyped
    """The box side of one connection; build it with `SimBox.connect`."""

    def __init__(self, box_id: str, connection: ClientConnection, connectors: int = 1,
                 phase_switching: bool = False) -> None:
        super().__init__(box_id, connection, response_timeout=10)
        self.ws = connection
        self.connectors = {n: SimConnector() for n in range(0, connectors + 1)}
        self.profile_status = "Accepted"  # the answer to SetChargingProfile
        self.profile_delay_s = 0.0  # how long it takes to give that answer
        self.received: list[dict[str, Any]] = []  # every SetChargingProfile payload
        self.configuration: dict[str, str] = {
            "ConnectorSwitch3to1PhaseSupported": "true" if phase_switching else "false"}
        self.cleared = 0
        self.remote_stops: list[int] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, box_id: str, *, connectors: int = 1,
                      headers: dict[str, str] | None = None,
                      phase_switching: bool = False,
                      ssl_context: ssl.SSLContext | None = None) -> SimBox:
        ws = await connect(f"{url}/{box_id}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                           additional_headers=headers, ssl=ssl_context)
        box = cls(box_id, ws, connectors, phase_switching)
        box._task = asyncio.create_task(box._run())
        return box

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            await self.start()

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    # -- CP → CS --------------------------------------------------------------------------------

    async def boot(self) -> str:
        result = await self.call(call.BootNotification(charge_point_model="SimBox",
                                                       charge_point_vendor="chargebrain"))
        return str(result.status)

    async def status(self, connector_id: int, status: str, error_code: str = "NoError") -> None:
        self.connectors[connector_id].status = status
        await self.call(call.StatusNotification(connector_id=connector_id,
                                                error_code=error_code, status=status))

    async def meter(self, connector_id: int, currents_a: tuple[float, float, float],
                    energy_wh: int, power_w: float | None = None) -> None:
        self.connectors[connector_id].energy_wh = energy_wh
        samples = [{"value": f"{a:.1f}", "measurand": "Current.Import", "phase": p, "unit": "A"}
                   for a, p in zip(currents_a, ("L1", "L2", "L3"), strict=True)]
        samples.append({"value": str(energy_wh), "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh"})
        if power_w is not None:
            samples.append({"value": f"{power_w:.0f}", "measurand": "Power.Active.Import",
                            "unit": "W"})
        await self.call(call.MeterValues(
            connector_id=connector_id,
            meter_value=[{"timestamp": datetime.now(UTC).isoformat(), "sampledValue": samples}]))

    async def authorize(self, id_tag: str) -> str:
        result = await self.call(call.Authorize(id_tag=id_tag))
        return str(result.id_tag_info["status"])

    async def start_transaction(self, connector_id: int, id_tag: str) -> tuple[int, str]:
        conn = self.connectors[connector_id]
        result = await self.call(call.StartTransaction(
            connector_id=connector_id, id_tag=id_tag, meter_start=conn.energy_wh,
            timestamp=datetime.now(UTC).isoformat()))
        status = str(result.id_tag_info["status"])
        if status == "Accepted":
            conn.transaction_id = int(result.transaction_id)
        return int(result.transaction_id), status

    async def stop_transaction(self, connector_id: int) -> None:
        conn = self.connectors[connector_id]
        assert conn.transaction_id is not None
        await self.call(call.StopTransaction(meter_stop=conn.energy_wh,
                                             timestamp=datetime.now(UTC).isoformat(),
                                             transaction_id=conn.transaction_id))
        conn.transaction_id = None

    # -- CS → CP --------------------------------------------------------------------------------

    @on(Action.set_charging_profile)
    async def on_set_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]
                             ) -> call_result.SetChargingProfile:
        self.received.append({"connector_id": connector_id, **cs_charging_profiles})
        if self.profile_delay_s:
            await asyncio.sleep(self.profile_delay_s)  # a slow box (call timeouts)
        if self.profile_status != "Accepted":
            return call_result.SetChargingProfile(status=self.profile_status)
        purpose = cs_charging_profiles["charging_profile_purpose"]
        conn = self.connectors.get(connector_id)
        if conn is None or (purpose == "TxProfile" and (
                connector_id == 0 or conn.transaction_id is None)):
            return call_result.SetChargingProfile(status="Rejected")
        schedule = cs_charging_profiles["charging_schedule"]
        start = datetime.fromisoformat(schedule["start_schedule"])
        duration = schedule.get("duration")
        ends = None if duration is None else start + timedelta(seconds=int(duration))
        conn.profiles[(purpose, int(cs_charging_profiles["stack_level"]))] = Installed(
            cs_charging_profiles, ends)
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str
                                ) -> call_result.ChangeConfiguration:
        self.configuration[key] = value
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None
                             ) -> call_result.GetConfiguration:
        wanted = key or list(self.configuration)
        known = [{"key": k, "readonly": False, "value": self.configuration[k]}
                 for k in wanted if k in self.configuration]
        unknown = [k for k in wanted if k not in self.configuration]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.clear_charging_profile)
    def on_clear(self, id: int | None = None, connector_id: int | None = None,
                 charging_profile_purpose: str | None = None, stack_level: int | None = None
                 ) -> call_result.ClearChargingProfile:
        """Remove the profiles that match every given criterion (none given: all)."""
        self.cleared += 1
        found = False
        for number, conn in self.connectors.items():
            if connector_id is not None and number != connector_id:
                continue
            for key, item in list(conn.profiles.items()):
                profile = item.profile
                if ((id is None or profile["charging_profile_id"] == id)
                        and (charging_profile_purpose is None
                             or key[0] == charging_profile_purpose)
                        and (stack_level is None or key[1] == stack_level)):
                    del conn.profiles[key]
                    found = True
        return call_result.ClearChargingProfile(status="Accepted" if found else "Unknown")

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        self.remote_stops.append(transaction_id)
        return call_result.RemoteStopTransaction(status="Accepted")

    # -- what the box applies -------------------------------------------------------------------

    def limit_a(self, connector_id: int, now: datetime | None = None) -> float | None:
        """The limit the box applies now (None: no valid profile: it charges unlimited)."""
        now = now or datetime.now(UTC)
        conn = self.connectors[connector_id]
        if conn.transaction_id is not None:
            found = _best(conn, "TxProfile", now, conn.transaction_id)
            if found is not None:
                return found
        found = _best(conn, "TxDefaultProfile", now)
        if found is None:
            found = _best(self.connectors[0], "TxDefaultProfile", now)
        return found


def _best(conn: SimConnector, purpose: str, now: datetime,
          transaction_id: int | None = None) -> float | None:
    valid = [(level, item) for (kind, level), item in conn.profiles.items()
             if kind == purpose and (item.ends is None or now < item.ends)
             and (transaction_id is None or item.profile.get("transaction_id") == transaction_id)]
    if not valid:
        return None
    _, item = max(valid, key=lambda pair: pair[0])
    return float(item.profile["charging_schedule"]["charging_schedule_period"][0]["limit"])
