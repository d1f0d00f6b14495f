"""The OCPP 1.6J WebSocket server and one `BoxLink` per ChargeBox ID.

A box connects to `ws://host:port/<ChargeBoxID>` with subprotocol `ocpp1.6` (optionally with
HTTP Basic auth, user = ChargeBox ID, OCPP-J security profile 1). Its `BoxLink` lives as long
as the server: it keeps the connectors' state across reconnects, and while a connection is up
it runs the setup after BootNotification and the profile keeper.

Setup (after every accepted BootNotification; at a reconnect of a box accepted before when no
BootNotification follows within `BOOT_WAIT_S`; again after a failed setup): ChangeConfiguration
of the measurands and their interval, GetConfiguration of `ConnectorSwitch3to1PhaseSupported`
(phase switching through `numberPhases`), then for every configured connector a standing
TxDefaultProfile at the fallback current (the `disable_policy` value) without end, and a control
profile of 0 A: no current until the first plan. Until the setup is done the link is not
`ready` and the device reads as a COM error. The standing default is sent again when the
fallback current changes.

Control (`set_limit`): one profile per change, renewed by the keeper when half its `hold_s`
has passed — only while the driver keeps reading the connector (`touch`), so a box whose
manager stopped caring falls back by itself when the profile runs out. A rejected profile or a
call that timed out raises `OcppError` and stays in `error` until a profile is accepted again;
the keeper retries it every `hold_s / 2` while the driver reads.

Override C (`remote_stop`): RemoteStopTransaction of the connector's running transaction, once
per transaction until the override is lifted (`resumed`). A connector whose device is disabled
under `disable_policy` −1 (`released`) is left to the box: the keeper clears its profiles with
ClearChargingProfile once (again after a reconnect) and sends it nothing more until it is
configured again.

Times for the keeper are the event loop's monotonic clock; profile start times are UTC.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from chargebrain.ocpp.handler import BoxHandler, profile_payload
from chargebrain.ocpp.state import ConnectorState

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
BOOT_WAIT_S = 5.0  # a box accepted before that reconnects without BootNotification


class OcppError(Exception):
    """A box did not answer a call in time, or refused it."""


@dataclass(slots=True)
class Limit:
    """The last limit sent to a connector (monotonic seconds)."""

    current_ma: int
    number_phases: int | None
    sent_s: float
    touched_s: float
    failed: bool = False  # the box refused it or did not answer: not in force


class BoxLink:
    """One ChargeBox ID: its connectors and, while connected, its connection."""

    def __init__(self, box_id: str, central: CentralSystem) -> None:
        self.box_id = box_id
        self.central = central
        self.heartbeat_s = central.heartbeat_s
        self.connectors: dict[int, ConnectorState] = {}
        self.handler: BoxHandler | None = None
        self.connection: ServerConnection | None = None
        self.ready = False  # setup done on this connection
        self.accepted_once = False
        self.phase_switching = False  # the box reports ConnectorSwitch3to1PhaseSupported
        self.error = ""  # last failed call ("" = none since the last accepted profile)
        self.limits: dict[int, Limit] = {}
        self.standing_ma: dict[int, int] = {}  # the standing default each connector has
        self.stopped: dict[int, int] = {}  # connector → transaction ended by RemoteStop
        self.cleared: set[int] = set()  # connectors whose profiles were cleared (released)
        self.profile_messages = 0  # SetChargingProfile calls sent (changes and renewals)
        self._setup: asyncio.Task[None] | None = None

    @property
    def known(self) -> bool:
        """Configured now (an evse_ocpp device names this ChargeBox ID): asked at every boot,
        so a box rejected before is accepted at its next BootNotification once it is added."""
        return bool(self.central.connectors_of(self.box_id))

    @property
    def connected(self) -> bool:
        return self.handler is not None

    def connector(self, connector_id: int) -> ConnectorState:
        return self.connectors.setdefault(connector_id, ConnectorState())

    def authorize(self, connector_id: int | None, id_tag: str, start: bool) -> str:
        return self.central.authorize(self.box_id, connector_id, id_tag, start)

    def new_transaction_id(self) -> int:
        return self.central.new_transaction_id()

    # -- connection lifecycle -------------------------------------------------------------------

    def attach(self, handler: BoxHandler, connection: ServerConnection) -> None:
        self.handler, self.connection = handler, connection
        self.ready, self.error = False, ""
        self.limits.clear()
        self.cleared.clear()  # a box keeps profiles across reconnects: clear them again
        self._setup = None

    def detach(self, handler: BoxHandler) -> None:
        if self.handler is handler:
            self.handler, self.connection, self.ready = None, None, False
            if self._setup is not None:
                self._setup.cancel()

    def rejected(self) -> None:
        """BootNotification of an unconfigured box: listed (and logged once) for the user."""
        if self.box_id not in self.central.unknown_boxes:
            self.central.unknown_boxes.append(self.box_id)
            log.warning("OCPP box %s is not configured: boot rejected (add an evse_ocpp "
                        "device with address %s)", self.box_id, self.box_id)

    def booted(self) -> None:
        """Accepted BootNotification: (re)run the setup in the background."""
        if self.box_id in self.central.unknown_boxes:
            self.central.unknown_boxes.remove(self.box_id)
        self.accepted_once, self.ready = True, False
        if self._setup is not None:
            self._setup.cancel()
        self._setup = asyncio.ensure_future(self._run_setup())

    async def _run_setup(self) -> None:
        handler = self.handler
        if handler is None:
            return
        try:
            await handler.configure_meter_values(self.central.meter_interval_s)
            self.phase_switching = await handler.phase_switching()
            self.standing_ma.clear()
            for connector_id in self.central.connectors_of(self.box_id):
                await self._send_standing(connector_id)
                await self._send(profile_payload(connector_id, 0,
                                                 duration_s=self.central.hold_s))
                now = time.monotonic()  # 0 A until the first plan, renewed while read
                self.limits[connector_id] = Limit(0, None, now, now)
            self.ready = True
        except (OcppError, TimeoutError, ConnectionClosed) as err:
            self.error = f"setup failed: {err or type(err).__name__}"
            log.warning("OCPP box %s: %s", self.box_id, self.error)

    async def keep(self) -> None:
        """While connected: set up a box that reconnected without booting, renew profiles."""
        tick_s = min(1.0, self.central.hold_s / 4)
        waited_s, next_try_s = 0.0, BOOT_WAIT_S
        while True:
            await asyncio.sleep(tick_s)
            waited_s += tick_s
            idle = self._setup is None or self._setup.done()
            if not self.ready and idle and self.accepted_once and waited_s >= next_try_s:
                self.booted()  # no BootNotification came, or the setup failed: try again
                next_try_s = waited_s + max(BOOT_WAIT_S, self.central.hold_s / 2)
            if self.ready:
                await self._clear_released()
                await self._standing_changed()
                await self._renew_due()

    async def _send_standing(self, connector_id: int) -> None:
        fallback = self.central.fallback_ma(self.box_id, connector_id)
        await self._send(profile_payload(connector_id, fallback, duration_s=None, standing=True))
        self.standing_ma[connector_id] = fallback

    async def _clear_released(self) -> None:
        """A connector whose device was disabled under `disable_policy` −1 is left to the box:
        its profiles are cleared (ClearChargingProfile), once; it gets a standing default
        again when it is configured again."""
        released = set(self.central.released(self.box_id))
        self.cleared &= released
        for connector_id in sorted(released - self.cleared):
            handler = self.handler
            if handler is None:
                return
            try:
                status = await handler.clear_profiles(connector_id)
            except (TimeoutError, ConnectionClosed):
                return  # tried again at the next tick
            if status != "Accepted":
                log.info("OCPP box %s connector %d: ClearChargingProfile %s", self.box_id,
                         connector_id, status)
            self.cleared.add(connector_id)
            self.standing_ma.pop(connector_id, None)
            self.limits.pop(connector_id, None)

    async def _standing_changed(self) -> None:
        """disable_policy or the connector's minimum/maximum changed: a new standing default."""
        for connector_id in self.central.connectors_of(self.box_id):
            if self.standing_ma.get(connector_id) != self.central.fallback_ma(self.box_id,
                                                                             connector_id):
                with contextlib.suppress(OcppError):
                    await self._send_standing(connector_id)

    async def _renew_due(self) -> None:
        now = time.monotonic()
        hold = self.central.hold_s
        for connector_id, limit in list(self.limits.items()):
            if now - limit.sent_s >= hold / 2 and now - limit.touched_s < hold:
                with contextlib.suppress(OcppError):
                    await self.set_limit(connector_id, limit.current_ma, limit.number_phases,
                                         renewal=True)

    # -- control --------------------------------------------------------------------------------

    def touch(self, connector_id: int) -> None:
        """The driver read the connector: its limit is still wanted."""
        limit = self.limits.get(connector_id)
        if limit is not None:
            limit.touched_s = time.monotonic()

    async def set_limit(self, connector_id: int, current_ma: int,
                        number_phases: int | None = None, *, renewal: bool = False) -> None:
        """Send `current_ma` (0 = no charging) to the connector for `hold_s`: a TxProfile
        while a transaction runs (a TxDefaultProfile when the box refuses that). A `renewal`
        (the keeper's) does not count as the driver still wanting the limit."""
        if not self.ready:
            raise OcppError(f"OCPP box {self.box_id} is not set up")
        transaction_id = self.connector(connector_id).transaction_id
        hold = self.central.hold_s
        try:
            if transaction_id is not None:
                try:
                    await self._send(profile_payload(connector_id, current_ma, duration_s=hold,
                                                     transaction_id=transaction_id,
                                                     number_phases=number_phases))
                except OcppError:
                    await self._send(profile_payload(connector_id, current_ma, duration_s=hold,
                                                     number_phases=number_phases))
            else:
                await self._send(profile_payload(connector_id, current_ma, duration_s=hold,
                                                 number_phases=number_phases))
        except OcppError as err:
            # kept as wanted: the keeper tries it again after hold_s / 2
            self.error = str(err)
            previous = self.limits.get(connector_id)
            now = time.monotonic()
            touched = previous.touched_s if renewal and previous is not None else now
            self.limits[connector_id] = Limit(current_ma, number_phases, now, touched,
                                              failed=True)
            raise
        now = time.monotonic()
        self.error = ""
        previous = self.limits.get(connector_id)
        touched = previous.touched_s if renewal and previous is not None else now
        self.limits[connector_id] = Limit(current_ma, number_phases, now, touched)

    async def remote_stop(self, connector_id: int) -> bool:
        """End the connector's running transaction (override C) with RemoteStopTransaction,
        once per transaction; True when a call was sent."""
        transaction_id = self.connector(connector_id).transaction_id
        handler = self.handler
        if (transaction_id is None or handler is None
                or self.stopped.get(connector_id) == transaction_id):
            return False
        self.stopped[connector_id] = transaction_id  # once, whatever the box answers
        try:
            status = await handler.remote_stop(transaction_id)
        except (TimeoutError, ConnectionClosed):
            status = "no answer"
        if status != "Accepted":
            log.warning("OCPP box %s connector %d: RemoteStopTransaction %s", self.box_id,
                        connector_id, status)
        return True

    def resumed(self, connector_id: int) -> None:
        """Override C is lifted: a later transaction may be stopped again."""
        self.stopped.pop(connector_id, None)

    async def _send(self, payload: Any) -> None:
        handler = self.handler
        if handler is None:
            raise OcppError(f"OCPP box {self.box_id} is not connected")
        self.profile_messages += 1
        try:
            status = await handler.set_profile(payload)
        except TimeoutError:
            raise OcppError(f"OCPP box {self.box_id} did not answer SetChargingProfile"
                            ) from None
        except ConnectionClosed:
            raise OcppError(f"OCPP box {self.box_id} is not connected") from None
        if status != "Accepted":
            raise OcppError(f"OCPP box {self.box_id}: SetChargingProfile {status}")


class CentralSystem:
    """The server. The app hands in who is configured, who may charge and the fallback:

    - `connectors_of(box_id)`: the configured connector ids of a box ([] = unknown box);
    - `authorize(box_id, connector_id, id_tag, start)`: an OCPP AuthorizationStatus;
    - `fallback_ma(box_id, connector_id)`: the standing default current (disable_policy);
    - `released(box_id)`: connector ids whose device is disabled under `disable_policy` −1
      (their profiles are cleared).
    """

    def __init__(self, host: str, port: int, *,
                 connectors_of: Callable[[str], list[int]],
                 authorize: Callable[[str, int | None, str, bool], str],
                 fallback_ma: Callable[[str, int], int],
                 released: Callable[[str], list[int]] = lambda _box: [],
                 password: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 heartbeat_s: int = 60, meter_interval_s: int = 10, hold_s: int = 60,
                 response_timeout_s: float = 10.0,
                 unknown_boxes: list[str] | None = None) -> None:
        self.host, self.requested_port = host, port
        self.connectors_of = connectors_of
        self.authorize = authorize
        self.fallback_ma = fallback_ma
        self.released = released
        self.password = password
        self.ssl_context = ssl_context
        self.heartbeat_s = heartbeat_s
        self.meter_interval_s = meter_interval_s
        self.hold_s = hold_s
        self.response_timeout_s = response_timeout_s
        self.links: dict[str, BoxLink] = {}
        # ChargeBox IDs rejected at boot (not configured); the app shows this very list
        self.unknown_boxes: list[str] = [] if unknown_boxes is None else unknown_boxes
        self.port: int | None = None
        self._server: Server | None = None
        self._next_transaction_id = int(time.time()) % 1_000_000_000

    def link(self, box_id: str) -> BoxLink | None:
        return self.links.get(box_id)

    def new_transaction_id(self) -> int:
        self._next_transaction_id += 1
        return self._next_transaction_id

    async def start(self) -> None:
        self._server = await serve(self._serve, self.host, self.requested_port,
                                   subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                                   process_request=self._check_request, ssl=self.ssl_context)
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        scheme = "wss" if self.ssl_context else "ws"
        log.info("OCPP 1.6J server listening on %s://%s:%d/<ChargeBoxID>", scheme, self.host,
                 self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _check_request(self, connection: ServerConnection, request: Request
                       ) -> Response | None:
        if self.password is None:
            return None
        box_id = _box_id(request.path)
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = secret = ""
            if user == box_id and secret == self.password:
                return None
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "password required\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="chargebrain OCPP"'
        return response

    async def _serve(self, connection: ServerConnection) -> None:
        box_id = _box_id(connection.request.path if connection.request else "")
        if connection.subprotocol != SUBPROTOCOL or not box_id:
            await connection.close(1002, "need subprotocol ocpp1.6 and /<ChargeBoxID>")
            return
        link = self.links.get(box_id)
        if link is None:
            link = self.links[box_id] = BoxLink(box_id, self)
        old = link.connection
        if old is not None:  # the box reconnected before we saw the old connection drop
            with contextlib.suppress(Exception):
                await old.close()
        handler = BoxHandler(box_id, connection, link, self.response_timeout_s)
        link.attach(handler, connection)
        keeper = asyncio.create_task(link.keep(), name=f"ocpp-keeper-{box_id}")
        try:
            await handler.start()
        except ConnectionClosed:
            pass
        finally:
            keeper.cancel()
            link.detach(handler)
            log.info("OCPP box %s disconnected", box_id)


def _box_id(path: str) -> str:
    """The ChargeBox ID: the last path segment (query dropped, %-escapes decoded)."""
    return unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
