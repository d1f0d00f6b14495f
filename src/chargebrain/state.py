"""One published state snapshot: what `get_dev_info` and `get_params` show, serialised once.

`StatePublisher` (`app.state`) is told that something visible changed with `mark_changed()`:
after every control cycle (the cycle's `after_cycle` hook), every accepted push and device
change (the registry's `on_push` / `on_change`), and every API command that may change state
(the HTTP dispatcher). Marking is a counter increment, so bursts coalesce: the snapshot is built
and serialised (orjson) once, on the next read or in one delivery per event-loop turn to the
subscribers, never per request.

Consumers either read `current()` (the HTTP handlers serve its bytes as they are), register a
plain callback with `subscribe(callback)` (called with each new `Snapshot`; an MQTT publisher,
a usage recorder), or iterate `updates()` (latest-value semantics: a slow reader skips
intermediate snapshots, it never queues them; a web UI live stream). None of them needs a
change in the control cycle.

A snapshot is a moment: `params.time` and `com_err_secs` are those of the moment it was built,
and the next cycle (every `cycle_ms`) builds a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from chargebrain import API_VERSION
from chargebrain.devices import types, view
from chargebrain.devices.registry import DeviceRegistry
from chargebrain.params import Params

log = logging.getLogger(__name__)

# Parameters whose password only admins see (`scheme://user:***@host` for everyone else).
SECRET_URL_PARAMS = ("mqtt_url",)

Subscriber = Callable[["Snapshot"], None]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The serialised answers of one moment; `version` grows with every change.

    `*_public` are the answers for callers without admin rights (secret URLs redacted); they
    are the very same bytes objects as the admin answers when there is nothing to hide."""

    version: int
    taken_s: float
    dev_info: bytes
    params: bytes
    dev_info_public: bytes
    params_public: bytes

    def dev_info_for(self, is_admin: bool) -> bytes:
        return self.dev_info if is_admin else self.dev_info_public

    def params_for(self, is_admin: bool) -> bytes:
        return self.params if is_admin else self.params_public

    def dev_info_value(self, is_admin: bool = True) -> dict[str, Any]:
        """A fresh decoded copy of the get_dev_info answer (for consumers that want objects)."""
        value: dict[str, Any] = orjson.loads(self.dev_info_for(is_admin))
        return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as every answer is served."""
    return orjson.dumps(value)


def redact_url(url: str) -> str:
    """Hide the password of `scheme://user:password@host` from readers without admin."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def public_params(params_obj: dict[str, Any]) -> dict[str, Any]:
    """`params_obj` as callers without admin see it (the same object when nothing differs)."""
    hidden = {name: redact_url(value) for name in SECRET_URL_PARAMS
              if isinstance(value := params_obj.get(name), str) and redact_url(value) != value}
    return {**params_obj, **hidden} if hidden else params_obj


@dataclass(frozen=True, slots=True)
class StateSource:
    """Where the state is read from: the registry, the params and two fixed facts."""

    registry: DeviceRegistry
    params: Params
    cycle_ms: int
    version: str = API_VERSION

    def params_info(self, now_s: float) -> dict[str, Any]:
        """The `params` object of get_dev_info (admin view)."""
        return view.params_info(self.params.as_dict(), self.registry, now_s=now_s,
                                version=self.version, cycle_ms=self.cycle_ms,
                                serialno=self.registry.serialno)

    def dev_info(self, params_obj: dict[str, Any], now_s: float) -> dict[str, Any]:
        """The get_dev_info answer around `params_obj`."""
        registry = self.registry
        volts = int(self.params["system_voltage"])
        devices = [view.device_info(registry, d, now_s=now_s, voltage_v=volts)
                   for d in registry.all()]
        return {"params": params_obj,
                "auth_cnt": sum(1 for d in registry.evses() if d.status.needs_auth),
                "devices": devices,
                "loadmgr_disabled": not self.params["lb_enabled"]}

    def build(self, version: int) -> Snapshot:
        """Read the state now and serialise it (admin and public views)."""
        now_s = self.registry.clock()
        params_obj = self.params_info(now_s)
        dev_meta = types.labels()
        dev_info = dumps(self.dev_info(params_obj, now_s))
        params = dumps({**params_obj, "dev_meta": dev_meta})
        public = public_params(params_obj)
        if public is params_obj:
            dev_info_public, params_public = dev_info, params
        else:
            dev_info_public = dumps(self.dev_info(public, now_s))
            params_public = dumps({**public, "dev_meta": dev_meta})
        return Snapshot(version, now_s, dev_info, params, dev_info_public, params_public)


class StatePublisher:
    """Builds the snapshot lazily after `mark_changed()` and hands it to subscribers."""

    def __init__(self, source: StateSource) -> None:
        self.source = source
        self.builds = 0  # snapshots built (for tests and benchmarks)
        self._version = 0
        self._snapshot: Snapshot | None = None
        self._subscribers: list[Subscriber] = []
        self._delivery: asyncio.Handle | None = None

    @property
    def version(self) -> int:
        """Grows with every `mark_changed()`."""
        return self._version

    def mark_changed(self, *_: object) -> None:
        """Something get_dev_info/get_params shows may have changed. Cheap: the snapshot is
        built on the next read, or once per event-loop turn when there are subscribers.
        Accepts and ignores arguments, so it can sit in any callback list (e.g. a dev_id)."""
        self._version += 1
        if self._subscribers and self._delivery is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a tool or test outside asyncio): readers still see it
                return
            self._delivery = loop.call_soon(self._deliver)

    def current(self) -> Snapshot:
        """The snapshot of the latest change (built now if it is not yet)."""
        snapshot = self._snapshot
        if snapshot is None or snapshot.version != self._version:
            snapshot = self._snapshot = self.source.build(self._version)
            self.builds += 1
        return snapshot

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(snapshot)` after each change (coalesced per event-loop turn); the
        callback must not block. Returns the function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    async def updates(self) -> AsyncIterator[Snapshot]:
        """The current snapshot, then each newer one; a slow reader gets the latest only."""
        latest: asyncio.Queue[Snapshot] = asyncio.Queue(maxsize=1)

        def put(snapshot: Snapshot) -> None:
            if latest.full():
                latest.get_nowait()
            latest.put_nowait(snapshot)

        unsubscribe = self.subscribe(put)
        try:
            seen = self.current()
            yield seen
            while True:
                snapshot = await latest.get()
                if snapshot.version > seen.version:
                    seen = snapshot
                    yield snapshot
        finally:
            unsubscribe()

    def _deliver(self) -> None:
        self._delivery = None
        snapshot = self.current()
        for callback in list(self._subscribers):
            try:
                callback(snapshot)
            except Exception:
                log.exception("state subscriber %r failed", callback)
