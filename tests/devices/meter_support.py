"""Helpers for the meter tests: a pymodbus server from register blocks, and adding, reading
and showing a device of a running chargebrain by hand."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice

from chargebrain.modbus.address import Endpoint
from chargebrain.modbus.client import ModbusPool
from tests.support.ports import free_port


@contextlib.asynccontextmanager
async def meter_server(simdata: list[SimData], port: int | None = None
                       ) -> AsyncIterator[tuple[int, ModbusTcpServer]]:
    port = port or free_port()
    server = ModbusTcpServer(SimDevice(id=0, simdata=simdata), address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield port, server
    finally:
        await server.shutdown()


async def add_meter(running, **config) -> str:
    status, body = await running.client.post("set_device", {"devices": [config]})
    assert (status, body) == (200, "ok")
    return running.app.devices.all()[-1].dev_id


async def read(running, dev_id):
    registry = running.app.devices
    return await registry.read(registry.get(dev_id), registry.clock())


async def dev_info(running, dev_id):
    running.app.state.mark_changed()  # the snapshot follows cycles; these tests read by hand
    status, body = await running.client.get("get_dev_info")
    assert status == 200
    return next(d for d in body["devices"] if d["dev_id"] == dev_id)


async def write(port: int, address: int, words: list[int]) -> None:
    pool = ModbusPool()
    async with pool.lease(Endpoint("127.0.0.1", port)) as conn:
        await conn.write(1, address, words)
