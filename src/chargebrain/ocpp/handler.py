"""One OCPP 1.6J connection: the CP→CS messages chargebrain answers, the CS→CP calls it makes.

`BoxHandler` is the `ocpp` library's `ChargePoint` (the library parses, validates against the
1.6 JSON schemas and answers malformed or unknown messages with a CALLERROR by itself). Its
`@on` handlers only update the box's state and answer at once: they never await a call to the
box (the library awaits each handler inside its receive loop, so a call there would wait for
an answer that cannot arrive). CS→CP calls start in `@after` hooks or from the profile keeper
(`server.py`).

Profiles (`profile_payload`): chargebrain sends current limits in A, one period, kind
Absolute with its start a minute in the past (a box whose clock is a little behind still
applies it) and a bounded `duration`, at stack level `CONTROL_STACK_LEVEL`, above a standing
TxDefaultProfile at `STANDING_STACK_LEVEL` without end: when chargebrain goes quiet, the box
falls back to the standing value by itself.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result, datatypes
from ocpp.v16.enums import Action

from chargebrain.ocpp.state import MEASURANDS, ConnectorState, apply_meter_values

log = logging.getLogger(__name__)

STANDING_STACK_LEVEL = 0
CONTROL_STACK_LEVEL = 1
START_BACKDATE_S = 60  # startSchedule this far in the past (box clocks lag)
STANDING_PROFILE_ID = 100  # + connector id
CONTROL_PROFILE_ID = 200  # + connector id (TxDefaultProfile)
TX_PROFILE_ID = 300  # + connector id (TxProfile)
PHASE_SWITCH_KEY = "ConnectorSwitch3to1PhaseSupported"


class BoxEvents(Protocol):
    """What a connection reports to its box (`server.BoxLink`)."""

    heartbeat_s: int

    @property
    def known(self) -> bool:
        """The box is configured (its BootNotification is accepted)."""
        ...

    connectors: dict[int, ConnectorState]

    def connector(self, connector_id: int) -> ConnectorState:
        """The state of connector `connector_id` (created on first use)."""
        ...

    def booted(self) -> None:
        """The box sent BootNotification and was accepted: (re)run the setup."""
        ...

    def rejected(self) -> None:
        """An unconfigured box sent BootNotification (it was rejected)."""
        ...

    def authorize(self, connector_id: int | None, id_tag: str, start: bool) -> str:
        """The AuthorizationStatus for `id_tag` (`start`: a StartTransaction on the connector)."""
        ...

    def new_transaction_id(self) -> int:
        """A transaction id not used before."""
        ...


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class BoxHandler(ChargePoint):  # type: ignore[misc]  # the library is untyped
    """The messages of one connected box; `events` is its `BoxLink`."""

    def __init__(self, box_id: str, connection: Any, events: BoxEvents,
                 response_timeout_s: float) -> None:
        super().__init__(box_id, connection, response_timeout=response_timeout_s)
        self.events = events

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor: str, charge_point_model: str,
                **_: Any) -> call_result.BootNotification:
        status = "Accepted" if self.events.known else "Rejected"
        if status == "Rejected":
            self.events.rejected()
        return call_result.BootNotification(current_time=_now_iso(),
                                            interval=self.events.heartbeat_s, status=status)

    @after(Action.boot_notification)
    def after_boot(self, **_: Any) -> None:
        if self.events.known:
            self.events.booted()

    @on(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now_iso())

    @on(Action.status_notification)
    def on_status(self, connector_id: int, error_code: str, status: str,
                  **_: Any) -> call_result.StatusNotification:
        conn = self.events.connector(connector_id)
        conn.status, conn.error_code = status, error_code
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                        **_: Any) -> call_result.MeterValues:
        apply_meter_values(self.events.connector(connector_id), meter_value)
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> call_result.Authorize:
        status = self.events.authorize(None, id_tag, False)
        return call_result.Authorize(id_tag_info={"status": status})

    @on(Action.start_transaction)
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                 **_: Any) -> call_result.StartTransaction:
        status = self.events.authorize(connector_id, id_tag, True)
        transaction_id = self.events.new_transaction_id()
        conn = self.events.connector(connector_id)
        conn.id_tag = id_tag
        conn.energy_wh = max(conn.energy_wh or 0, meter_start)
        # a refused tag still gets an id (1.6 §4.8); the box then stops the transaction
        conn.transaction_id = transaction_id if status == "Accepted" else None
        return call_result.StartTransaction(transaction_id=transaction_id,
                                            id_tag_info={"status": status})

    @on(Action.stop_transaction)
    def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int,
                **kwargs: Any) -> call_result.StopTransaction:
        for conn in self._connectors_with(transaction_id):
            conn.energy_wh = max(conn.energy_wh or 0, meter_stop)
            apply_meter_values(conn, kwargs.get("transaction_data") or ())
            conn.transaction_id = None
        return call_result.StopTransaction()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="Accepted")

    def _connectors_with(self, transaction_id: int) -> list[ConnectorState]:
        return [c for c in self.events.connectors.values()
                if c.transaction_id == transaction_id]

    # -- CS → CP ------------------------------------------------------------------------------

    async def configure_meter_values(self, interval_s: int) -> None:
        """Ask for the measurands chargebrain uses, every `interval_s` (refusals are logged:
        a box that keeps its own set still reports what it reports)."""
        for key, value in (("MeterValuesSampledData", ",".join(MEASURANDS)),
                           ("MeterValueSampleInterval", str(interval_s))):
            result = await self.call(call.ChangeConfiguration(key=key, value=value))
            status = result.status if result is not None else "CallError"
            if status not in ("Accepted", "RebootRequired"):
                log.info("OCPP box %s: ChangeConfiguration %s %s", self.id, key, status)

    async def phase_switching(self) -> bool:
        """Does the box say it can switch a running charge between 3 and 1 phases
        (`ConnectorSwitch3to1PhaseSupported`)? No answer counts as no."""
        result = await self.call(call.GetConfiguration(key=[PHASE_SWITCH_KEY]))
        for item in (result.configuration_key if result is not None else None) or ():
            if item.get("key") == PHASE_SWITCH_KEY:
                return str(item.get("value", "")).strip().lower() == "true"
        return False

    async def set_profile(self, payload: call.SetChargingProfile) -> str:
        """Send one SetChargingProfile; the box's status ("Accepted", …, "CallError")."""
        result = await self.call(payload)  # None: the box answered with a CALLERROR
        return str(result.status) if result is not None else "CallError"

    async def remote_stop(self, transaction_id: int) -> str:
        """RemoteStopTransaction; the box's status ("Accepted", "Rejected", "CallError")."""
        result = await self.call(call.RemoteStopTransaction(transaction_id=transaction_id))
        return str(result.status) if result is not None else "CallError"

    async def clear_profiles(self, connector_id: int) -> str:
        """ClearChargingProfile of every profile chargebrain keeps at the connector (the
        standing default, the control TxDefaultProfile and the TxProfile, by their ids)."""
        status = "Accepted"
        for profile_id in (STANDING_PROFILE_ID, CONTROL_PROFILE_ID, TX_PROFILE_ID):
            result = await self.call(call.ClearChargingProfile(id=profile_id + connector_id))
            answer = str(result.status) if result is not None else "CallError"
            if answer not in ("Accepted", "Unknown") and status == "Accepted":
                status = answer  # Unknown: the box does not hold that one (it ran out)
        return status


def limit_a(current_ma: int) -> float:
    """A current in A as a box keeps it: rounded down to 0.1 A (never more than planned)."""
    return math.floor(max(0, current_ma) / 100) / 10


def profile_payload(connector_id: int, current_ma: int, *, duration_s: int | None,
                    transaction_id: int | None = None, number_phases: int | None = None,
                    standing: bool = False, now: datetime | None = None
                    ) -> call.SetChargingProfile:
    """The SetChargingProfile for one connector: TxProfile when `transaction_id` is given,
    else TxDefaultProfile; `standing` = the stack-level-0 default without end."""
    start = (now or datetime.now(UTC)) - timedelta(seconds=START_BACKDATE_S)
    period = datatypes.ChargingSchedulePeriod(start_period=0, limit=limit_a(current_ma),
                                              number_phases=number_phases)
    schedule = datatypes.ChargingSchedule(
        charging_rate_unit="A", charging_schedule_period=[period],
        duration=None if duration_s is None else duration_s + START_BACKDATE_S,
        start_schedule=start.isoformat())
    if standing:
        profile_id, level, purpose = (STANDING_PROFILE_ID + connector_id, STANDING_STACK_LEVEL,
                                      "TxDefaultProfile")
    elif transaction_id is not None:
        profile_id, level, purpose = (TX_PROFILE_ID + connector_id, CONTROL_STACK_LEVEL,
                                      "TxProfile")
    else:
        profile_id, level, purpose = (CONTROL_PROFILE_ID + connector_id, CONTROL_STACK_LEVEL,
                                      "TxDefaultProfile")
    profile = datatypes.ChargingProfile(
        charging_profile_id=profile_id, stack_level=level, charging_profile_purpose=purpose,
        charging_profile_kind="Absolute", charging_schedule=schedule,
        transaction_id=transaction_id)
    return call.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=profile)
