"""`MqttBridge`: one broker connection for the MQTT API and Home Assistant discovery.

The state snapshot (state.py) feeds it through `subscribe`: the callback only keeps the newest
snapshot and wakes the writer, so the control cycle never waits on the broker. The writer
publishes at most once per `min_interval_s` (the cycle period) and only topics whose bytes
changed; all state topics are retained. After every (re)connect it publishes `online` on the
availability topic (the last will says `offline`) and everything again, so a restarted broker
gets its retained topics back. A lost connection is retried with back-off (1 s doubling to
30 s); a change of `mqtt_url`, `mqtt_topic_serial`, `mqtt_api`, `mqtt_ctl` or `mqtt_ca_file`
reconnects at once.

Only devices with `mqtt_publish` get `get/<dev_id>` (and Home Assistant entities). HTTP-input
devices whose `address` is a broker URL are served by one extra client per distinct URL
(`_pusher`, the same back-off), which subscribes `set/+` there and answers `set_res` there.
`cfos_mqtt/ctl` goes to `ctl.WallboxControl`, which a watch task checks every second (silent
controllers fall back to disable_policy even while the broker is away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chargebrain import API_VERSION
from chargebrain.api.errors import ApiError
from chargebrain.api.request import Principal
from chargebrain.devices.registry import DeviceRegistry
from chargebrain.mqtt import discovery
from chargebrain.mqtt.connection import TlsSetupError, client_for, tls_context
from chargebrain.mqtt.ctl import WallboxControl
from chargebrain.mqtt.inbound import ApiQuery, SeenIds, answer_bytes
from chargebrain.mqtt.topics import HA_PREFIX, HA_STATUS, Topics, prefix_for
from chargebrain.mqtt.url import BrokerUrl, BrokerUrlError, is_broker_url, parse_broker_url
from chargebrain.params import Params
from chargebrain.state import Snapshot, StatePublisher
from chargebrain.users.transactions import TransactionRecord

log = logging.getLogger(__name__)

MQTT_ADMIN = Principal(is_admin=True, via="mqtt")
CONNECTION_PARAMS = frozenset({"mqtt_url", "mqtt_topic_serial", "mqtt_api", "mqtt_ctl",
                               "mqtt_ca_file"})
PUSHER_PARAMS = frozenset({"mqtt_topic_serial", "mqtt_ca_file"})
PUSH_TYPES = {"evse_ajax": "set_ajax_evse", "meter_ajax": "set_ajax_meter"}
PUSH_ADDRESS = "mqtt"  # an HTTP-input device with this address listens on the default broker
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
MAX_EVENTS = 200  # log lines and transactions waiting for the broker; the oldest go first
CTL_CHECK_S = 1.0  # how often silent ctl controllers are looked for


class ApiCaller(Protocol):
    """What runs an API command (api/http.py CnfDispatcher.call)."""

    async def call(self, pairs: list[tuple[str, str]], body: bytes, principal: Principal,
                   remote: str) -> Any: ...


class MqttBridge:
    def __init__(self, params: Params, state: StatePublisher, devices: DeviceRegistry,
                 api: ApiCaller, *, min_interval_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 evse_max_ma: Callable[[str], int | None] = lambda _dev_id: None) -> None:
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
        self.ctl = WallboxControl(params, devices, max_ma=evse_max_ma)
        self._watch: asyncio.Task[None] | None = None
        self._pushers: dict[str, asyncio.Task[None]] = {}  # broker URL → its push client
        self.pusher_connects: dict[str, int] = {}  # broker URL → successful connections

    @property
    def topics(self) -> Topics:
        return Topics(prefix_for(self.devices.serialno, bool(self.params["mqtt_topic_serial"])))

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.params.on_change.append(self._on_params)
        self.devices.on_change.append(self._on_device)
        self._restart()
        self._sync_pushers()
        self._watch = asyncio.create_task(self._watch_ctl(), name="mqtt-ctl-watch")

    async def stop(self) -> None:
        """Give ctl-held wallboxes back to disable_policy, say `offline` (retained) and
        disconnect (the push clients too)."""
        self._follow_state(False)
        with contextlib.suppress(ValueError):
            self.params.on_change.remove(self._on_params)
        with contextlib.suppress(ValueError):
            self.devices.on_change.remove(self._on_device)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
            self._watch = None
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.publish(self.topics.status, b"offline", qos=1,
                                                      retain=True), 2.0)
        await self._cancel()  # no ctl message is taken after this
        await self._stop_pushers(list(self._pushers))
        try:
            await self.ctl.release("chargebrain stops")
        except Exception:
            log.exception("MQTT ctl: giving the wallboxes back failed")

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
        if names & PUSHER_PARAMS:
            for url in list(self._pushers):
                self._pushers.pop(url).cancel()
            self._sync_pushers()

    def _on_device(self, _dev_id: str) -> None:
        self._sync_pushers()

    async def _watch_ctl(self) -> None:
        while True:
            await asyncio.sleep(CTL_CHECK_S)
            try:
                await self.ctl.check()
            except Exception:
                log.exception("MQTT ctl check failed")

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
        try:
            tls_context(broker, str(self.params["mqtt_ca_file"]))
        except TlsSetupError as err:
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
        async with client_for(broker, str(self.params["mqtt_ca_file"]), will=will) as client:
            self._client = client
            for topic_filter in topics.subscriptions(bool(self.params["mqtt_api"]),
                                                     bool(self.params["mqtt_ctl"])):
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
        published = [d for d in dev_info["devices"] if self._publishes(str(d["dev_id"]))]
        for device in published:
            out[topics.device(str(device["dev_id"]))] = orjson.dumps(device)
        if self.params["mqtt_ha_discovery"]:  # entities for the published devices only
            out.update(discovery.configs({**dev_info, "devices": published},
                                         serial=self.devices.serialno, topics=topics,
                                         sw_version=API_VERSION))
        for topic in self._published:
            if topic not in out:
                out[topic] = b""
        return out

    def _publishes(self, dev_id: str) -> bool:
        device = self.devices.get(dev_id)
        return device is not None and bool(getattr(device.config, "mqtt_publish", False))

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
            parts = ("ctl", "") if topic == topics.ctl else topics.split(topic)
            if parts is None:
                continue
            reply = _Reply.of(message.properties)
            self._spawn(self._handle(client, topics, *parts, payload, reply))

    def _spawn(self, job: Any) -> None:
        task = asyncio.create_task(job)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _handle(self, client: aiomqtt.Client, topics: Topics, kind: str, rest: str,
                      payload: bytes, reply: _Reply | None = None,
                      address: str = PUSH_ADDRESS) -> None:
        try:
            if kind == "set":
                await self._push(client, topics, rest, payload, address)
            elif kind == "api" and self.params["mqtt_api"]:
                await self._api(client, topics, rest, payload, reply)
            elif kind == "ha":
                await self._command(rest, payload)
            elif kind == "ctl":
                await self.ctl.message(payload)
        except aiomqtt.MqttError as err:
            log.warning("MQTT answer to %s/%s not sent: %s", kind, rest, err)
        except Exception:
            log.exception("MQTT message on %s/%s failed", kind, rest)

    async def _push(self, client: aiomqtt.Client, topics: Topics, dev_id: str,
                    payload: bytes, address: str = PUSH_ADDRESS) -> None:
        """`set/<dev_id>`: the set_ajax_meter / set_ajax_evse JSON of an HTTP-input device
        whose `address` is this broker (`mqtt` for the default one, else its URL)."""
        device = self.devices.get(dev_id)
        cmd = PUSH_TYPES.get(device.config.dev_type) if device is not None else None
        if device is not None and self._served_elsewhere(device.config.address.strip(), address):
            return  # the same broker under another name: that device's own client takes it
        if device is None or cmd is None or device.config.address.strip() != address:
            where = PUSH_ADDRESS if address == PUSH_ADDRESS else _describe(address)
            log.warning("MQTT set/%s ignored: not an HTTP-input device with address %s",
                        dev_id, where)
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
                   payload: bytes, reply: _Reply | None = None) -> None:
        """`api/<query>`: an HTTP API command as admin; the answer goes to `api_res`, or
        (MQTT 5) to the request's response topic with its correlation data."""
        if reply is not None and reply.topic is not None and topics.own(reply.topic):
            log.warning("MQTT api/%s ignored: response topic %.60r is one of chargebrain's",
                        query, reply.topic)
            await client.publish(topics.api_res, orjson.dumps(
                f"response topic {reply.topic} refused: it must lie outside "
                f"{topics.prefix}/ and {HA_PREFIX}/"), qos=1,
                properties=reply.properties() if reply is not None else None)
            return
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
        target = reply.topic if reply is not None and reply.topic else topics.api_res
        await client.publish(target, answer, qos=1,
                             properties=reply.properties() if reply is not None else None)

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


    def _served_elsewhere(self, device_address: str, address: str) -> bool:
        """The device listens through another client that is connected to this very broker
        (its URL is `mqtt_url`, or the default broker is its URL)."""
        return device_address != address and (
            (mine := self._endpoint(address)) is not None and mine == self._endpoint(
                device_address))

    def _endpoint(self, address: str) -> tuple[str, int] | None:
        url = str(self.params["mqtt_url"]).strip() if address == PUSH_ADDRESS else address
        if not is_broker_url(url):
            return None
        try:
            broker = parse_broker_url(url)
        except BrokerUrlError:
            return None
        return broker.host.lower(), broker.port

    # -- HTTP-input devices on brokers of their own -------------------------------------------

    def _sync_pushers(self) -> None:
        """One push client per distinct broker URL that an HTTP-input device names."""
        wanted = {d.config.address.strip() for d in self.devices.all()
                  if d.config.dev_type in PUSH_TYPES and d.enabled
                  and is_broker_url(d.config.address)}
        for url in [u for u in self._pushers if u not in wanted]:
            self._pushers.pop(url).cancel()
        for url in wanted - set(self._pushers):
            self._pushers[url] = asyncio.create_task(self._pusher(url), name="mqtt-push")

    async def _stop_pushers(self, urls: list[str]) -> None:
        tasks = [self._pushers.pop(u) for u in urls if u in self._pushers]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=3.0)

    async def _pusher(self, url: str) -> None:
        try:
            broker = parse_broker_url(url)
        except BrokerUrlError as err:  # the configuration check refuses these: not expected
            log.warning("MQTT push broker off: %s", err)
            return
        backoff_s = BACKOFF_MIN_S
        while True:
            try:
                async with client_for(broker, str(self.params["mqtt_ca_file"])) as client:
                    topics = self.topics
                    await client.subscribe(topics.set_filter, qos=1)
                    self.pusher_connects[url] = self.pusher_connects.get(url, 0) + 1
                    log.info("MQTT push client connected to %s", broker.describe())
                    backoff_s = BACKOFF_MIN_S
                    async for message in client.messages:
                        parts = topics.split(message.topic.value)
                        if parts is None or parts[0] != "set":
                            continue
                        payload = message.payload if isinstance(message.payload, bytes) \
                            else str(message.payload or "").encode()
                        self._spawn(self._handle(client, topics, "set", parts[1], payload,
                                                 address=url))
            except (aiomqtt.MqttError, TlsSetupError) as err:
                log.warning("MQTT push broker %s: %s; retrying in %.0f s", broker.describe(),
                            err, backoff_s)
            except Exception:
                log.exception("MQTT push client for %s failed; retrying in %.0f s",
                              broker.describe(), backoff_s)
            await asyncio.sleep(backoff_s)
            backoff_s = min(BACKOFF_MAX_S, backoff_s * 2)


class _Reply:
    """MQTT 5 request/response: where the answer goes and the data it must carry back."""

    def __init__(self, topic: str | None, correlation: bytes | None) -> None:
        self.topic = topic
        self.correlation = correlation

    @classmethod
    def of(cls, properties: Properties | None) -> _Reply | None:
        if properties is None:
            return None
        topic = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        if topic is None and correlation is None:
            return None
        return cls(str(topic) if topic is not None else None,
                   bytes(correlation) if correlation is not None else None)

    def properties(self) -> Properties | None:
        if self.correlation is None:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = self.correlation
        return props


def _describe(url: str) -> str:
    try:
        return parse_broker_url(url).describe()
    except BrokerUrlError:
        return "a broker URL"


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
