"""The pooled client against real pymodbus TCP servers on loopback: one shared connection per
host:port, reconnect with back-off after the server restarts, timeouts, the batching cap,
device exceptions. Back-off is checked with an injected clock, never by waiting."""

from __future__ import annotations

import asyncio
import re

import pytest

from chargebrain.modbus.address import Endpoint
from chargebrain.modbus.batch import Span
from chargebrain.modbus.client import (
    ModbusConnectError,
    ModbusDeviceError,
    ModbusError,
    ModbusPool,
    ModbusTimeoutError,
    shared_pool,
)
from tests.modbus.loopback import plain_server, silent_server
from tests.support.ports import free_port


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
async def device():
    port = free_port()
    server = await plain_server(port)
    try:
        yield server, Endpoint("127.0.0.1", port)
    finally:
        await server.shutdown()


async def test_devices_behind_one_gateway_share_one_connection(device):
    server, endpoint = device
    pool = ModbusPool()
    leases = [pool.acquire(endpoint) for _ in range(5)]  # five devices, unit ids 1…5
    assert all(conn is leases[0] for conn in leases) and len(pool) == 1
    conn = leases[0]
    for unit_id in range(1, 6):
        await conn.write(unit_id, unit_id * 10, [unit_id])
    answers = await asyncio.gather(*(conn.read(u, u * 10, 1) for u in range(1, 6)
                                     for _ in range(4)))
    assert answers == [[u] for u in range(1, 6) for _ in range(4)]
    assert conn.connects == 1
    assert len(server.active_connections) == 1
    for lease in leases[:-1]:
        pool.release(lease)
    assert conn.connected and len(pool) == 1  # still one device using it
    pool.release(leases[-1])
    assert not conn.connected and len(pool) == 0  # the last lease closes it


async def test_different_ports_get_different_connections(device):
    _, endpoint = device
    pool = ModbusPool()
    other = Endpoint(endpoint.host, free_port())
    assert pool.acquire(endpoint) is not pool.acquire(other)
    assert len(pool) == 2


async def test_reconnects_after_the_server_restarts(device):
    server, endpoint = device
    clock = FakeClock()
    pool = ModbusPool(timeout_s=1.0, backoff_initial_s=0.5, clock=clock)
    conn = pool.acquire(endpoint)
    await conn.write(1, 5, [42])
    assert await conn.read(1, 5, 1) == [42]
    await server.shutdown()
    for _ in range(2):  # the cut connection, then the refused reconnect
        with pytest.raises(ModbusError):
            await conn.read(1, 5, 1)
    retry_at_s = conn.retry_at_s
    assert retry_at_s is not None
    restarted = await plain_server(endpoint.port)
    try:
        # still backing off: no attempt yet, although the server is back
        with pytest.raises(ModbusConnectError, match=re.escape(f"cannot connect to {endpoint}")):
            await conn.read(1, 5, 1)
        clock.now_s = retry_at_s
        assert await conn.read(1, 5, 1) == [0]  # a fresh server: registers start at 0
        assert conn.connects == 2 and conn.retry_at_s is None
    finally:
        await restarted.shutdown()
    pool.release(conn)


async def test_backoff_doubles_up_to_the_maximum():
    clock = FakeClock()
    pool = ModbusPool(backoff_initial_s=0.5, backoff_max_s=4.0, clock=clock)
    conn = pool.acquire(Endpoint("127.0.0.1", free_port()))  # nothing listens there
    delays = []
    for _ in range(6):
        with pytest.raises(ModbusConnectError):
            await conn.read(1, 0, 1)
        assert conn.retry_at_s is not None
        delays.append(conn.retry_at_s - clock.now_s)
        clock.now_s = conn.retry_at_s
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert conn.connects == 0


async def test_silent_device_times_out_and_the_socket_is_dropped():
    pool = ModbusPool()
    async with silent_server() as (port, accepted):
        conn = pool.acquire(Endpoint("127.0.0.1", port))
        for attempt in (1, 2):
            with pytest.raises(ModbusTimeoutError, match=re.escape(
                    f"no answer from 127.0.0.1:{port} within 0.2 s")):
                await conn.read(1, 0, 1, timeout_s=0.2)
            assert not conn.connected  # a late answer cannot be taken for the next one
            assert conn.connects == attempt == len(accepted)  # the next request reconnects
        assert conn.retry_at_s is None  # a silent device is no reason to back off
        pool.release(conn)


async def test_batched_reads_stay_under_the_cap(device):
    _, endpoint = device
    pool = ModbusPool()
    conn = pool.acquire(endpoint)
    for start in range(0, 320, 80):
        await conn.write(1, start, list(range(start, start + 80)))
    before = conn.requests
    # 0…309 in one run (cut at 125: pymodbus refuses longer reads), 350… apart
    spans = [Span(0, 100), Span(100, 200), Span(300, 10), Span(350, 5), Span(50, 10)]
    out = await conn.read_spans(1, spans)
    assert out == [list(range(s.address, s.end)) if s.end <= 320 else
                   [a if a < 320 else 0 for a in range(s.address, s.end)] for s in spans]
    assert conn.requests - before == 4  # 125 + 125 + 60, and 5
    with pytest.raises(ValueError, match="1 to 125"):
        await conn.read(1, 0, 126)
    pool.release(conn)


async def test_device_exception_names_the_code(device):
    _, endpoint = device
    async with ModbusPool().lease(endpoint) as conn:
        with pytest.raises(ModbusDeviceError, match="exception 2 \\(illegal data address\\)"
                           ) as info:
            await conn.read(1, 1000, 2)
        assert info.value.code == 2
        assert await conn.read(1, 0, 1) == [0]  # the connection survives an exception answer
        assert conn.connects == 1


async def test_writes_check_function_and_size(device):
    _, endpoint = device
    async with ModbusPool().lease(endpoint) as conn:
        await conn.write(1, 3, [7], func=6)
        assert await conn.read(1, 3, 1, func=3) == [7]
        with pytest.raises(ValueError):
            await conn.write(1, 3, [7, 8], func=6)
        with pytest.raises(ValueError):
            await conn.write(1, 3, [0] * 124)
        with pytest.raises(ValueError):
            await conn.read(1, 3, 1, func=6)


async def test_shared_pool_is_one_per_event_loop():
    assert shared_pool() is shared_pool()
