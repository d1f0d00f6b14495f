"""A real Mosquitto broker on a free loopback port, and a small listening client."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

from tests.support.ports import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """`mosquitto` as a child process, no persistence: a restart forgets retained messages."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.work_dir = work_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = work_dir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        log = open(self.work_dir / "mosquitto.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.work_dir / 'mosquitto.log')}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Listener:
    """An MQTT client that records every message on `topics` (default `#`; topic →
    payloads, in order)."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), **client_kw: Any) -> None:
        """`client_kw` go to aiomqtt.Client (e.g. `protocol`, `tls_context`)."""
        self.client = aiomqtt.Client("127.0.0.1", port, **client_kw)
        self.topics = topics
        self.messages: list[tuple[str, bytes, bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._new = asyncio.Event()

    async def __aenter__(self) -> Listener:
        await self.client.__aenter__()
        for topic in self.topics:
            await self.client.subscribe(topic, qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self.client.__aexit__(None, None, None)

    async def _collect(self) -> None:
        async for message in self.client.messages:
            self._record(message)
            self._new.set()

    def _record(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        self.messages.append((message.topic.value, payload, bool(message.retain)))

    def payloads(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == topic]

    def latest(self) -> dict[str, bytes]:
        """Topic → newest payload."""
        return {t: p for t, p, _ in self.messages}

    async def wait_for(self, topic: str, predicate: Any = None, *, timeout_s: float = 10.0,
                       after: int = 0) -> Any:
        """The first decoded payload (see `_decode`) on `topic`, from message index `after`
        on, that satisfies `predicate`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        index = after
        while True:
            while index < len(self.messages):
                t, payload, _ = self.messages[index]
                index += 1
                if t != topic:
                    continue
                value = _decode(payload)
                if predicate is None or predicate(value):
                    return value
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"nothing matching on {topic}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        await self.client.publish(topic, payload, qos=qos)


def _decode(payload: bytes) -> Any:
    """JSON when it is JSON, else the raw bytes (`online`); None for an empty payload."""
    if not payload:
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
