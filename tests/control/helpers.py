"""Helpers for control-cycle tests: a clock the test advances, an app driven by it, and
small API shortcuts. The cycle runs through `app.cycle.run_once()` (its test hook); the
periodic loop is set to its longest period so it never runs on its own during a test."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from chargebrain.app import ChargeBrain, Settings
from chargebrain.sim.vehicle import VirtualCar
from tests.support.server import ADMIN_PASSWORD, Client, Running

IDLE_PERIOD_MS = 60000  # the longest period: the loop's first cycle comes after the test


class FakeClock:
    """Unix seconds that only move when the test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Clocked(Running):
    clock: FakeClock


@asynccontextmanager
async def clocked_app(data_dir: Path, *, modbus: bool = False):
    """A running chargebrain whose registry and cycle use a FakeClock; cycles only on demand."""
    from tests.support.ports import free_port_block

    base = free_port_block(3) if modbus else 0
    settings = Settings(data_dir=data_dir, host="127.0.0.1", port=0, modbus_port=base,
                        admin_password=ADMIN_PASSWORD, cycle_ms=IDLE_PERIOD_MS)
    app = ChargeBrain(settings)
    clock = FakeClock()
    app.devices.clock = clock
    app.cycle.clock = clock
    app.cycle.start_delay_s = IDLE_PERIOD_MS / 1000  # cycles only through run_once()
    await app.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(f"http://127.0.0.1:{app.http_port}", session)
            yield Clocked(app, client, base, clock)
    finally:
        await app.stop()


async def add(running: Running, **config: Any) -> str:
    """Create or update one device through the API; returns its dev_id."""
    status, body = await running.client.post("set_device", {"devices": [config]})
    assert (status, body) == (200, "ok"), body
    return str(config.get("dev_id") or running.app.devices.all()[-1].dev_id)


async def set_params(running: Running, **params: Any) -> None:
    status, body = await running.client.post("set_params", params)
    assert (status, body) == (200, "ok"), body


async def dev_info(running: Running) -> dict[str, Any]:
    status, body = await running.client.get("get_dev_info")
    assert status == 200
    return body


async def device(running: Running, dev_id: str) -> dict[str, Any]:
    body = await dev_info(running)
    return next(d for d in body["devices"] if d["dev_id"] == dev_id)


def plug_sim(running: Running, dev_id: str, **car: Any) -> None:
    """Plug a virtual car into an `evse_sim` wallbox (its simulated hardware)."""
    driver = running.app.devices.get(dev_id).driver
    driver.car = VirtualCar(plugged=True, **car)


async def push_meter(running: Running, dev_id: str, currents: tuple[int, int, int],
                     **extra: Any) -> None:
    body = {"current": list(currents), **extra}
    status, answer = await running.client.post("set_ajax_meter", body, dev_id=dev_id)
    assert (status, answer) == (200, "ok"), answer


async def push_evse(running: Running, dev_id: str, state: int,
                    currents: tuple[int, int, int] = (0, 0, 0), **extra: Any) -> dict[str, Any]:
    body = {"state": state, "current": list(currents), **extra}
    status, answer = await running.client.post("set_ajax_evse", body, dev_id=dev_id)
    assert status == 200, answer
    return answer


class WriteCounter:
    """Counts the setpoints that reach a device's real driver (wraps its `apply`)."""

    def __init__(self, running: Running, dev_id: str) -> None:
        driver = running.app.devices.get(dev_id).driver
        self.calls: list[Any] = []
        inner = driver.apply

        async def counting_apply(setpoint: Any) -> None:
            self.calls.append(setpoint)
            await inner(setpoint)

        driver.apply = counting_apply

    @property
    def count(self) -> int:
        return len(self.calls)
