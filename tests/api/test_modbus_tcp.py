"""The Modbus TCP server with a real pymodbus client over loopback."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from pymodbus.client import AsyncModbusTcpClient

from tests.support.server import running_app

EVSE, METER1, METER2 = 0, 1, 2  # port offsets


def port(cb, offset: int) -> int:
    return cb.modbus_base + offset


async def connect(cb, offset: int = EVSE) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port(cb, offset), timeout=5, retries=0)
    assert await client.connect()
    return client


@pytest.fixture
async def mb(cb):
    client = await connect(cb)
    yield client
    client.close()


async def read(client, address, count=1, device_id=1):
    rr = await client.read_holding_registers(address, count=count, device_id=device_id)
    assert not rr.isError(), rr
    return rr.registers


async def test_reads_match_http(cb, mb):
    regs = await read(mb, 8000, 32)
    status, body = await cb.client.get("modbus", device="evse", read="8000", count=32)
    assert status == 200 and regs == body
    assert regs[:8] == [0xCF05, 0, 1, 256, 256, 0, 256, 0]


async def test_each_port_serves_its_unit_with_any_unit_id(cb):
    for offset, slave_id, device_id in ((METER1, 2, 257), (METER2, 41, 257)):
        client = await connect(cb, offset)
        try:
            for unit_id in (0, 1, 2, 3, 200):
                assert await read(client, 8040, device_id=unit_id) == [slave_id]
                assert await read(client, 8003, device_id=unit_id) == [device_id]
            rr = await client.read_holding_registers(8093, count=1, device_id=1)
            assert rr.isError() and rr.exception_code == 2  # meters have no EVSE registers
        finally:
            client.close()


async def test_write_single_then_read_via_http_and_back(cb, mb):
    wr = await mb.write_register(8093, 100, device_id=1)
    assert not wr.isError() and wr.registers == [100]
    assert await cb.client.get("modbus", device="evse", read="8093") == (200, 100)
    assert await cb.client.get("modbus", device="evse", write="8093", value="130") == (200, "ok")
    assert await read(mb, 8093) == [130]


async def test_write_multiple_and_32_bit_values(cb, mb):
    wr = await mb.write_registers(8044, [7, 231, 232, 233], device_id=1)
    assert not wr.isError()
    assert await cb.client.get("modbus", device="evse", read="8044", count=4) == \
        (200, [7, 231, 232, 233])
    await mb.write_registers(8042, [0x0001, 0x86A0], device_id=1)  # 100000, high word first
    assert await cb.client.get("modbus", device="evse", read="8042d") == (200, 100000)
    status, _ = await cb.client.get("modbus", device="evse", write="8050q", value=2**40 + 5)
    assert status == 200
    assert await read(mb, 8050, 4) == [0, 0x100, 0, 5]


async def test_negative_32_bit_reads(cb):
    client = await connect(cb, METER1)
    try:
        assert await read(client, 8062, 2, device_id=2) == [0xFFFF, 0xFFFF]  # -1
    finally:
        client.close()


async def test_write_only_registers_reset_and_read_0(cb, mb):
    await cb.client.get("modbus", device="evse", write="8050q", value=99)
    wr = await mb.write_register(8070, 1, device_id=1)
    assert not wr.isError() and wr.registers == [1]  # the response echoes the request
    assert await read(mb, 8050, 4) == [0, 0, 0, 0]
    assert await read(mb, 8070, 2) == [0, 0]


async def test_exceptions_and_nothing_written(cb, mb):
    before = {u: cb.app.powerbrain.read_all(u) for u in ("evse", "meter1", "meter2")}
    for address, count in ((8048, 1), (8046, 4), (7999, 1), (8032, 1), (8122, 1), (0, 1)):
        rr = await mb.read_holding_registers(address, count=count, device_id=1)
        assert rr.isError() and rr.exception_code == 2, (address, rr)
    cases = [
        (mb.write_register(8093, 700, device_id=1), 3),  # out of range
        (mb.write_register(8093, 59, device_id=1), 3),
        (mb.write_register(8092, 1, device_id=1), 2),  # read-only
        (mb.write_register(8048, 1, device_id=1), 2),  # unknown
        (mb.write_registers(8044, [7, 230, 230, 230, 1], device_id=1), 2),  # runs into 8048
        (mb.write_registers(8093, [100, 5], device_id=1), 3),  # 8094 = 5 refused: 8093 too
        (mb.write_registers(8042, [0, 0], device_id=1), 3),  # pulsesperkwh 0
    ]
    for call, code in cases:
        rr = await call
        assert rr.isError() and rr.exception_code == code, rr
    assert {u: cb.app.powerbrain.read_all(u) for u in ("evse", "meter1", "meter2")} == before


async def test_read_write_multiple_registers(cb, mb):
    rr = await mb.readwrite_registers(read_address=8093, read_count=2, write_address=8093,
                                      values=[90, 0], device_id=1)
    assert not rr.isError() and rr.registers == [90, 0]
    assert await cb.client.get("modbus", device="evse", read="8094") == (200, 0)


async def test_input_registers_read_the_same_and_coils_are_refused(cb, mb):
    rr = await mb.read_input_registers(8002, count=2, device_id=1)
    assert not rr.isError() and rr.registers == [1, 256]
    rr = await mb.read_coils(8000, count=1, device_id=1)
    assert rr.isError() and rr.exception_code == 1


async def test_200_reads_with_one_connection_per_request(cb):
    values = []
    for i in range(200):
        client = AsyncModbusTcpClient("127.0.0.1", port=port(cb, i % 3), timeout=5, retries=0)
        assert await client.connect()
        rr = await client.read_holding_registers(8002, count=2, device_id=1)
        client.close()
        assert not rr.isError()
        values.append(rr.registers)
    assert values == [[1, 256 if i % 3 == 0 else 257] for i in range(200)]


async def test_20_concurrent_clients(cb):
    async def worker(n: int) -> list[int]:
        client = await connect(cb, n % 3)
        try:
            seen = []
            for _ in range(25):
                regs = await read(client, 8040, 8)
                seen.append(regs[0])
                if n % 3 == 0:
                    wr = await client.write_register(8093, 60 + n, device_id=1)
                    assert not wr.isError()
            return seen
        finally:
            client.close()

    results = await asyncio.gather(*(worker(n) for n in range(20)))
    for n, seen in enumerate(results):
        assert seen == [{0: 1, 1: 2, 2: 41}[n % 3]] * 25
    status, value = await cb.client.get("modbus", device="evse", read="8093")
    assert status == 200 and value in {60 + n for n in range(0, 20, 3)}


async def test_a_connection_kept_open_sees_later_changes(cb, mb):
    for limit in (60, 100, 160, 320):
        await cb.client.get("modbus", device="evse", write="8093", value=limit)
        assert await read(mb, 8093) == [limit]


async def test_modbus_traffic_to_the_evse_feeds_the_fail_safe(cb, mb):
    pb = cb.app.powerbrain
    pb.evse.last_traffic_s = -1e9  # long ago
    await read(mb, 8092)
    assert pb.evse.last_traffic_s > 0


async def test_one_log_line_per_listening_socket(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chargebrain")
    async with running_app(tmp_path / "data") as running:
        base = running.modbus_base
    lines = [r.getMessage() for r in caplog.records if "Modbus TCP" in r.getMessage()]
    assert lines == [f"Modbus TCP evse (unit 1) listening on 127.0.0.1:{base}",
                     f"Modbus TCP meter1 (unit 2) listening on 127.0.0.1:{base + 1}",
                     f"Modbus TCP meter2 (unit 3) listening on 127.0.0.1:{base + 2}"]


async def test_a_busy_port_is_a_clear_error_and_nothing_stays_open(tmp_path):
    from chargebrain.api.modbus_server import PowerBrainModbusServer
    from chargebrain.powerbrain import PowerBrain
    from tests.support.ports import free_port_block

    base = free_port_block(3)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base + 1))
    blocker.listen()
    try:
        server = PowerBrainModbusServer(PowerBrain(None), "127.0.0.1", base)
        with pytest.raises(OSError, match=f"meter1.*127.0.0.1:{base + 1}"):
            await server.start()
        assert server.servers == {}
        with socket.socket() as probe:  # the EVSE port opened first was closed again
            probe.bind(("127.0.0.1", base))
    finally:
        blocker.close()


async def test_modbus_port_0_disables_the_server(tmp_path):
    async with running_app(tmp_path / "data", modbus=False) as running:
        assert running.app.modbus_server is None
        status, body = await running.client.get("modbus", device="meter2", read="8040")
        assert (status, body) == (200, 41)
