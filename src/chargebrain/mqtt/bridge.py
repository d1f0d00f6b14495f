"""`MqttBridge`: one broker connection for the MQTT API and Home Assistant discovery.

The state snapshot (state.py) feeds it through `subscribe`: the callback only keeps the newest
snapshot and wakes the writer, so the control cycle never waits on the broker. The writer
publishes at most once per `min_interval_s` (the cycle period) and only topics whose bytes
changed; all state topics are retained. After every (re)connect it publishes `online` on the
availability topic (the last will says `offline`) and everything again, so a restarted broker
gets its retained topics back. A lost connection is retried with back-off (1 s doubling to
30 s); a change of `mqtt_url`, `mqtt_topic_serial` or `mqtt_api` reconnects at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import aiomqtt
import orjson

from chargebrain import API_VERSION
from chargebrain.api.errors import ApiError
from chargebrain.api.request import Principal
from chargebrain.devices.registry import DeviceRegistry
from chargebrain.mqtt import discovery
from chargebrain.mqtt.inbound import ApiQuery, SeenIds, answer_bytes
from chargebrain.mqtt.topics import HA_PREFIX, HA_STATUS, Topics, prefix_for
from chargebrain.mqtt.url import BrokerUrl, BrokerUrlError, parse_broker_url
from chargebrain.params import Params
from chargebrain.state import Snapshot, StatePublisher
from chargebrain.users.transactions import TransactionRecord

log = logging.getLogger(__name__)

MQTT_ADMIN = Principal(is_admin=True, via="mqtt")
CONNECTION_PARAMS = frozenset({"mqtt_url", "mqtt_topic_serial", "mqtt_api"})
PUSH_TYPES = {"evse_ajax": "set_ajax_evse", "meter_ajax": "set_ajax_meter"}
PUSH_ADDRESS = "mqtt"  # an HTTP-input device with this address listens on the default broker
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
MAX_EVENTS = 200  # log lines and transactions waiting for the broker; the oldest go first


class ApiCaller(Protocol):
    """What runs an API command (api/http.py CnfDispatcher.call)."""

    async def call(self, pairs: list[tuple[str, str]], body: bytes, principal: Principal,
                   remote: str) -> Any: ...


class MqttBridge:
    def __init__(self, params: Params, state: StatePublisher, devices: DeviceRegistry,
                 api: ApiCaller, *, min_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.params = params
        self.state = state
        self.devices = devices
        self.api = api
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.connects = 0  # successful connections (tests, diagnostics)
        self.publishes = 0  # writer rounds that published something
        self.connected = asyncio.Event()
        self._dirty = asyncio.Event()
        self._snapshot: Snapshot | None = None
        self._published: dict[str, bytes] = {}
        self._last_round_s = -1e9
        self._seen = SeenIds()
        self._task: asyncio.Task[None] | None = None
        self._generation = 0  # grows with every restart and stop: older loops end themselves
        self._handlers: set[asyncio.Task[None]] = set()
        self._client: aiomqtt.Client | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._events: deque[tuple[str, bytes]] = deque(maxlen=MAX_EVENTS)
        self._log_handler = _LogForwarder(self)

    @property
    def topics(self) -> Topics:
        return Topics(prefix_for(self.devices.serialno, bool(self.params["mqtt_topic_serial"])))

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.params.on_change.append(self._on_params)
        self._restart()

    async def stop(self) -> None:
        """Say `offline` (retained) and disconnect."""
        self._follow_state(False)
        with contextlib.suppress(ValueError):
            self.params.on_change.remove(self._on_params)
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.publish(self.topics.status, b"offline", qos=1,
                                                      retain=True), 2.0)
        await self._cancel()

    async def _cancel(self) -> None:
        self._generation += 1
        tasks = [t for t in (self._task, *self._handlers) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:  # a broker that does not answer the disconnect must not hold up stop()
            _, pending = await asyncio.wait(tasks, timeout=3.0)
            if pending:
                log.warning("MQTT: %d task(s) did not stop in time", len(pending))
        self._task = None
        self._client = None
        self.connected.clear()

    def _restart(self) -> None:
        old = self._task
        if old is not None:
            old.cancel()
        self._generation += 1
        url = str(self.params["mqtt_url"]).strip()
        self._follow_state(bool(url))  # no snapshot deliveries while MQTT is off
        self._task = (asyncio.create_task(self._run(url, old, self._generation), name="mqtt")
                      if url else None)

    def _follow_state(self, on: bool) -> None:
        root = logging.getLogger("chargebrain")
        if on and self._unsubscribe is None:
            self._unsubscribe = self.state.subscribe(self._on_snapshot)
            root.addHandler(self._log_handler)
        elif not on and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            root.removeHandler(self._log_handler)
            self._events.clear()

    def ta_finished(self, record: TransactionRecord) -> None:
        """A transaction ended: published on `ta_log` (TransactionLog.on_finished)."""
        if self._unsubscribe is not None:
            self.event("ta_log", orjson.dumps(record.to_json()))

    def event(self, kind: str, payload: bytes) -> None:
        """Queue a not-retained message on `<prefix>/<kind>` for the next writer round."""
        self._events.append((kind, payload))
        self._dirty.set()

    def _on_params(self, names: frozenset[str]) -> None:
        if names & CONNECTION_PARAMS:
            self._restart()
        else:  # e.g. mqtt_ha_discovery: the writer adds or removes the configs
            self._dirty.set()

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._dirty.set()

    # -- the connection -----------------------------------------------------------------------

    async def _run(self, url: str, previous: asyncio.Task[None] | None, generation: int
                   ) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        try:
            broker = parse_broker_url(url)
        except BrokerUrlError as err:
            log.warning("MQTT off: %s", err)
            return
        backoff_s = BACKOFF_MIN_S
        try:
            while True:
                try:
                    await self._session(broker, generation)
                except* aiomqtt.MqttError as group:
                    log.warning("MQTT %s: %s; retrying in %.0f s", broker.describe(),
                                group.exceptions[0], backoff_s)
                except* Exception:
                    log.exception("MQTT bridge failed; retrying in %.0f s", backoff_s)
                self._end_if_replaced(generation)
                self._client = None
                if self.connected.is_set():  # it was up: start the back-off afresh
                    backoff_s = BACKOFF_MIN_S
                    self.connected.clear()
                await asyncio.sleep(backoff_s)
                backoff_s = min(BACKOFF_MAX_S, backoff_s * 2)
        finally:  # cancelled: the param changed, or stop()
            self._client = None
            self.connected.clear()

    async def _session(self, broker: BrokerUrl, generation: int) -> None:
        topics = self.topics
        will = aiomqtt.Will(topics.status, b"offline", qos=1, retain=True)
        version = (aiomqtt.ProtocolVersion.V5 if broker.version == 5
                   else aiomqtt.ProtocolVersion.V311)
        tls = ssl.create_default_context() if broker.tls else None
        async with aiomqtt.Client(broker.host, broker.port, username=broker.username,
                                  password=broker.password, protocol=version, will=will,
                                  tls_context=tls, keepalive=30, timeout=10) as client:
            self._client = client
            for topic_filter in topics.subscriptions(bool(self.params["mqtt_api"])):
                await client.subscribe(topic_filter, qos=1)
            await client.publish(topics.status, b"online", qos=1, retain=True)
            self._published.clear()  # the broker may have lost them: publish everything again
            self._dirty.set()
            self.connects += 1
            self.connected.set()
            log.info("MQTT connected to %s (topics %s/…)", broker.describe(), topics.prefix)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._write(client, topics, generation))
                group.create_task(self._read(client, topics))

    # -- publishing ---------------------------------------------------------------------------

    def _end_if_replaced(self, generation: int) -> None:
        """End a loop of an older connection. Its task was cancelled, but a library call can
        swallow a cancel request (asyncio.wait_for in Python 3.11 loses one when its inner
        future finishes at the same moment): without this, a cancelled writer could publish
        forever and the reconnect waiting for it would never come."""
        if generation != self._generation:
            raise asyncio.CancelledError

    async def _write(self, client: aiomqtt.Client, topics: Topics, generation: int) -> None:
        while True:
            self._end_if_replaced(generation)
            await self._dirty.wait()
            wait_s = self._last_round_s + self.min_interval_s - self.clock()
            if wait_s > 0:  # at most one round per cycle period; later changes coalesce
                await asyncio.sleep(wait_s)
            self._dirty.clear()
            snapshot = self._snapshot or self.state.current()
            changed = [(t, p) for t, p in self.messages(snapshot, topics).items()
                       if self._published.get(t) != p]
            self._last_round_s = self.clock()
            while self._events:
                kind, payload = self._events[0]
                await client.publish(f"{topics.prefix}/{kind}", payload, qos=0)
                self._events.popleft()
            for topic, payload in changed:
                await client.publish(topic, payload, qos=1 if topic.startswith(HA_PREFIX)
                                     else 0, retain=True)
                if payload:
                    self._published[topic] = payload
                else:  # a cleared retained topic: nothing to remember
                    self._published.pop(topic, None)
            if changed:
                self.publishes += 1

    def messages(self, snapshot: Snapshot, topics: Topics) -> dict[str, bytes]:
        """Every retained topic → payload for `snapshot`; topics published before and now gone
        (a deleted device) map to b"" (which clears a retained message)."""
        dev_info = orjson.loads(snapshot.dev_info_public)
        out = {topics.dev_info: snapshot.dev_info_public, topics.params: snapshot.params_public}
        for device in dev_info["devices"]:
            out[topics.device(str(device["dev_id"]))] = orjson.dumps(device)
        if self.params["mqtt_ha_discovery"]:
            out.update(discovery.configs(dev_info, serial=self.devices.serialno, topics=topics,
                                         sw_version=API_VERSION))
        for topic in self._published:
            if topic not in out:
                out[topic] = b""
        return out

    # -- incoming -----------------------------------------------------------------------------

    async def _read(self, client: aiomqtt.Client, topics: Topics) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else str(
                message.payload or "").encode()
            if topic == HA_STATUS:
                if payload == b"online":  # HA restarted: announce the configs again
                    self._published = {t: p for t, p in self._published.items()
                                       if not t.startswith(HA_PREFIX)}
                    self._dirty.set()
                continue
            parts = topics.split(topic)
            if parts is None:
                continue
            task = asyncio.create_task(self._handle(client, topics, *parts, payload))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, client: aiomqtt.Client, topics: Topics, kind: str, rest: str,
                      payload: bytes) -> None:
        try:
            if kind == "set":
                await self._push(client, topics, rest, payload)
            elif kind == "api" and self.params["mqtt_api"]:
                await self._api(client, topics, rest, payload)
            elif kind == "ha":
                await self._command(rest, payload)
        except aiomqtt.MqttError as err:
            log.warning("MQTT answer to %s/%s not sent: %s", kind, rest, err)
        except Exception:
            log.exception("MQTT message on %s/%s failed", kind, rest)

    async def _push(self, client: aiomqtt.Client, topics: Topics, dev_id: str,
                    payload: bytes) -> None:
        """`set/<dev_id>`: the set_ajax_meter / set_ajax_evse JSON of an HTTP-input device."""
        device = self.devices.get(dev_id)
        cmd = PUSH_TYPES.get(device.config.dev_type) if device is not None else None
        if device is None or cmd is None or device.config.address != PUSH_ADDRESS:
            log.warning("MQTT set/%s ignored: not an HTTP-input device with address %s",
                        dev_id, PUSH_ADDRESS)
            return
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            log.warning("MQTT set/%s ignored: the payload is not a JSON object", dev_id)
            return
        try:
            answer = await self.api.call([("cmd", cmd), ("dev_id", dev_id)], payload,
                                         MQTT_ADMIN, "mqtt")
        except ApiError as err:
            log.warning("MQTT set/%s ignored: %s", dev_id, err.message)
            return
        if cmd == "set_ajax_evse":
            await client.publish(topics.set_res(dev_id), orjson.dumps(answer), qos=0)

    async def _api(self, client: aiomqtt.Client, topics: Topics, query: str,
                   payload: bytes) -> None:
        """`api/<query>`: an HTTP API command as admin; the answer goes to `api_res`."""
        parsed = ApiQuery(query)
        if parsed.needs_msg_id and parsed.msg_id is None:
            answer = orjson.dumps(f"{parsed.cmd or 'this command'} changes state: over MQTT it "
                                  "needs a msg_id=<unique id> in the query")
        elif parsed.msg_id is not None and (seen := self._seen.get(parsed.msg_id)) is not None:
            log.info("MQTT api msg_id %s seen before: not run again", parsed.msg_id)
            answer = seen
        else:
            try:
                answer = answer_bytes(await self.api.call(parsed.pairs, payload, MQTT_ADMIN,
                                                          "mqtt"))
            except ApiError as err:
                answer = orjson.dumps(err.message)
            if parsed.msg_id is not None:
                self._seen.remember(parsed.msg_id, answer)
        await client.publish(topics.api_res, answer, qos=1)

    async def _command(self, rest: str, payload: bytes) -> None:
        """`ha/<dev_id>/<what>`: a Home Assistant number/switch, as override_device."""
        dev_id, _, what = rest.partition("/")
        pairs = discovery.command_query(dev_id, what, payload.decode(errors="replace"))
        if pairs is None:
            log.warning("MQTT ha/%s ignored: payload %.40r", rest, payload)
            return
        try:
            await self.api.call(pairs, b"", MQTT_ADMIN, "mqtt")
        except ApiError as err:
            log.warning("MQTT ha/%s ignored: %s", rest, err.message)


class _LogForwarder(logging.Handler):
    """chargebrain's log lines (INFO and up) → `<prefix>/log`. The bridge's own lines stay out
    (a broker problem must not feed itself)."""

    def __init__(self, bridge: MqttBridge) -> None:
        super().__init__(logging.INFO)
        self.bridge = bridge
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(__name__.rpartition(".")[0]):
            return
        try:
            self.bridge.event("log", self.format(record).encode())
        except Exception:
            self.handleError(record)
