"""Run a real chargebrain, in-process (fast) or as a subprocess (restart and kill -9 tests)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from chargebrain.app import ChargeBrain, Settings
from tests.support.ports import free_port, free_port_block

ADMIN_PASSWORD = "test-admin-pw"


def basic(user: str, password: str) -> str:
    """An HTTP Basic `Authorization` header value."""
    return aiohttp.encode_basic_auth(user, password)


ADMIN_AUTH = basic("admin", ADMIN_PASSWORD)


@dataclass
class Client:
    """A small HTTP client for `/cnf`. `get` returns (status, decoded JSON or text).

    `auth` is an Authorization header value (see `basic`), None for none; every call may
    override it with `auth=`."""

    base_url: str
    session: aiohttp.ClientSession
    auth: str | None = ADMIN_AUTH

    async def raw(self, method: str, path_qs: str, *, body: Any = None,
                  auth: str | None = "default") -> tuple[int, Any]:
        use_auth = self.auth if auth == "default" else auth
        data = None
        headers = {"Authorization": use_auth} if use_auth else {}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base_url + path_qs, data=data,
                                        headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def get(self, cmd: str, auth: Any = "default", **params: Any) -> tuple[int, Any]:
        return await self.call("GET", cmd, auth=auth, **params)

    async def post(self, cmd: str, body: Any, auth: Any = "default", **params: Any
                   ) -> tuple[int, Any]:
        return await self.call("POST", cmd, body=body, auth=auth, **params)

    async def call(self, method: str, cmd: str, *, body: Any = None, auth: Any = "default",
                   **params: Any) -> tuple[int, Any]:
        query = "&".join([f"cmd={cmd}"] + [f"{k}={_q(v)}" for k, v in params.items()])
        return await self.raw(method, f"/cnf?{query}", body=body, auth=auth)


def _q(value: Any) -> str:
    from urllib.parse import quote

    return quote(str(value), safe=",[]")


@dataclass
class Running:
    app: ChargeBrain
    client: Client
    modbus_base: int


async def start_on_free_ports(make: Callable[[], ChargeBrain], attempts: int = 5
                             ) -> ChargeBrain:
    """Start the app `make()` builds; when another test process took one of its ports between
    the check and the bind, build a fresh one (new ports) and try again."""
    for attempt in range(attempts):
        app = make()
        try:
            await app.start()
            return app
        except OSError:
            await app.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@asynccontextmanager
async def running_app(data_dir: Path, *, modbus: bool = True, demo: bool = False,
                      cycle_ms: int = 3000):
    """Start a chargebrain in this event loop on free loopback ports.

    Another test process may take a port between our check and the bind: then it is tried again
    on fresh ports."""
    base = 0

    def make() -> ChargeBrain:
        nonlocal base
        base = free_port_block(3) if modbus else 0
        return ChargeBrain(Settings(data_dir=data_dir, host="127.0.0.1", port=0,
                                    modbus_port=base, admin_password=ADMIN_PASSWORD,
                                    cycle_ms=cycle_ms, demo=demo))

    app = await start_on_free_ports(make)
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(f"http://127.0.0.1:{app.http_port}", session)
            yield Running(app, client, base)
    finally:
        await app.stop()


class ServerProcess:
    """chargebrain as a child process (`python -m chargebrain serve`)."""

    def __init__(self, data_dir: Path, *, modbus: bool = True, extra: list[str] | None = None,
                 password: str | None = ADMIN_PASSWORD) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.modbus_base = free_port_block(3) if modbus else 0
        self.extra = extra or []
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        args = [sys.executable, "-m", "chargebrain", "serve", "--data-dir", str(self.data_dir),
                "--port", str(self.port), "--modbus-port", str(self.modbus_base),
                "--ocpp-port", "0", *self.extra]  # 19520 would clash between parallel tests
        if self.password is not None:
            args += ["--admin-password", self.password]
        env = {k: v for k, v in os.environ.items() if k != "CHARGEBRAIN_ADMIN_PASSWORD"}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                import urllib.request

                with urllib.request.urlopen(self.base_url + "/cnf?cmd=get_dev_info", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not answer in time")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else 0


async def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.02) -> None:
    """Poll an async predicate until it is true (for state that settles asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError("condition not met in time")
