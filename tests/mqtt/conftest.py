from __future__ import annotations

import pytest

from tests.support.mosquitto import Listener, Mosquitto
from tests.support.server import running_app


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto of our own on a free loopback port."""
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def cb(tmp_path, broker):
    """A running chargebrain (250 ms cycle) connected to `broker`."""
    async with running_app(tmp_path / "data", modbus=False, cycle_ms=250) as running:
        assert await running.client.post("set_params", {"mqtt_url": broker.url}) == (200, "ok")
        await wait_connected(running.app, 1)
        yield running


@pytest.fixture
async def listener(broker):
    async with Listener(broker.port) as listener:
        yield listener


async def wait_connected(app, connects: int, timeout_s: float = 15.0) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout_s
    while app.mqtt.connects < connects:
        assert asyncio.get_running_loop().time() < deadline, "MQTT did not connect"
        await asyncio.sleep(0.05)
