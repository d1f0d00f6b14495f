"""A running chargebrain with its OCPP server on a free loopback port, cycles on demand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp

from chargebrain.app import ChargeBrain, Settings
from chargebrain.ocpp import CentralSystem
from chargebrain.params import Params
from chargebrain.sim.ocpp_box import SimBox
from chargebrain.store.db import Store
from tests.control.helpers import IDLE_PERIOD_MS, Clocked, FakeClock
from tests.support.ports import free_port
from tests.support.server import ADMIN_PASSWORD, Client, start_on_free_ports


@dataclass
class OcppSite(Clocked):
    @property
    def central(self) -> CentralSystem:
        assert self.app.ocpp is not None
        return self.app.ocpp

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.central.port}"

    async def box(self, box_id: str, *, connectors: int = 1, boot: bool = True,
                  phase_switching: bool = False) -> SimBox:
        """A simulated box connected (and booted, set up) to this chargebrain."""
        box = await SimBox.connect(self.url, box_id, connectors=connectors,
                                   phase_switching=phase_switching)
        if boot:
            assert await box.boot() == "Accepted"
            link = self.central.link(box_id)
            assert link is not None
            await until(lambda: link.ready)
        return box


async def until(predicate: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Wait until `predicate()` is true (real time: the boxes talk over real sockets)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def ocpp_site(data_dir: Path, *, hold_s: int = 60, password: str | None = None,
                    tls_cert: Path | None = None, tls_key: Path | None = None,
                    ocpp_port: int | Literal["free"] | None = "free",
                    tls_mode: int | None = None, params: dict[str, Any] | None = None):
    """`ocpp_port` as the command line gives it (default: a free port; None = not given);
    `params` are stored before chargebrain starts (as an earlier run would have)."""
    if params:
        data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.open(data_dir)
        Params(store).apply(params)
        store.close()
    clock = FakeClock()

    def make() -> ChargeBrain:
        settings = Settings(data_dir=data_dir, host="127.0.0.1", port=0, modbus_port=0,
                            admin_password=ADMIN_PASSWORD, cycle_ms=IDLE_PERIOD_MS,
                            ocpp_port=free_port() if ocpp_port == "free" else ocpp_port,
                            ocpp_password=password, ocpp_tls_cert=tls_cert,
                            ocpp_tls_key=tls_key, ocpp_tls_mode=tls_mode)
        app = ChargeBrain(settings)
        if app.ocpp is not None:
            app.ocpp.hold_s = hold_s
            app.ocpp.response_timeout_s = 2.0
        app.devices.clock = clock
        app.cycle.clock = clock
        app.cycle.start_delay_s = IDLE_PERIOD_MS / 1000
        return app

    app = await start_on_free_ports(make)
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(f"http://127.0.0.1:{app.http_port}", session)
            yield OcppSite(app, client, 0, clock)
    finally:
        await app.stop()
