"""Modbus RTU over a serial port: the address parser and the pooled client against a real
pymodbus RTU server on the other end of a pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData

from chargebrain.modbus.address import (
    AddressError,
    Endpoint,
    SerialEndpoint,
    parse_address,
    parse_host_port,
    parse_serial,
)
from chargebrain.modbus.batch import Span
from chargebrain.modbus.client import ModbusConnectError, ModbusPool, ModbusTimeoutError
from tests.modbus.serial_pair import pty_pair, rtu_server, silent_absent_units


@pytest.mark.parametrize(("text", "expected"), [
    ("/dev/ttyUSB0,9600,8N1", SerialEndpoint("/dev/ttyUSB0", 9600, 8, "N", 1)),
    ("/dev/ttyAMA0,19200,8E1", SerialEndpoint("/dev/ttyAMA0", 19200, 8, "E", 1)),
    ("/dev/ttyUSB1, 38400, 7o2", SerialEndpoint("/dev/ttyUSB1", 38400, 7, "O", 2)),
    ("/dev/serial/by-id/usb-FTDI_1-if00", SerialEndpoint("/dev/serial/by-id/usb-FTDI_1-if00")),
    ("com3,115200", SerialEndpoint("COM3", 115200)),
    ("10.0.0.5:502", Endpoint("10.0.0.5", 502)),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected
    if isinstance(expected, SerialEndpoint):
        assert parse_serial(str(expected)) == expected  # str() is a valid address again


@pytest.mark.parametrize(("text", "message"), [
    ("/dev/ttyUSB0,9601,8N1", "baud rate"),
    ("/dev/ttyUSB0,9600,8X1", "frame"),
    ("/dev/ttyUSB0,9600,9N1", "frame"),
    ("/dev/ttyUSB0,9600,8N1,extra", "serial port"),
    ("/dev/../etc/passwd", "serial port"),
    ("/dev/tty USB0", "serial port"),
    ("COM0", "serial port"),
])
def test_bad_serial_addresses_are_refused(text, message):
    with pytest.raises(AddressError, match=message):
        parse_address(text)


def test_tcp_only_callers_still_refuse_serial_ports():
    with pytest.raises(AddressError) as err:
        parse_host_port("/dev/ttyUSB0,9600,8N1")
    assert err.value.problem == "serial"


def holding(values: list[int]) -> list[SimData]:
    return [SimData(0, values=values, datatype=SimType.REGISTERS)]


async def test_reads_and_writes_over_rtu_share_one_bus_connection(tmp_path):
    async with pty_pair(tmp_path) as (client_end, server_end), \
            rtu_server(holding(list(range(200))), server_end, baudrate=19200):
        # (a pseudo terminal refuses parity bits: 8N1 here, 8E1 only in the parser tests)
        pool = ModbusPool(timeout_s=1.0)
        first = pool.acquire(parse_serial(f"{client_end},19200,8N1"))
        second = pool.acquire(parse_serial(f"{client_end},19200"))
        assert first is second and len(pool) == 1  # one bus, one connection
        words = await asyncio.gather(first.read(1, 10, 4), second.read(7, 100, 3),
                                     first.read_spans(3, [Span(0, 2), Span(2, 3), Span(150, 2)]))
        assert words == [[10, 11, 12, 13], [100, 101, 102], [[0, 1], [2, 3, 4], [150, 151]]]
        await first.write(1, 20, [4711, 815])
        assert await second.read(1, 20, 2) == [4711, 815]
        assert first.connects == 1
        pool.release(first)
        pool.release(second)
        assert len(pool) == 0


async def test_a_stopped_rtu_server_times_out_and_a_restarted_one_answers(tmp_path):
    values = list(range(50))
    async with pty_pair(tmp_path) as (client_end, server_end):
        pool = ModbusPool(timeout_s=0.5)
        conn = pool.acquire(parse_serial(f"{client_end},9600,8N1"))
        async with rtu_server(holding(values), server_end):
            assert await conn.read(1, 5, 2) == [5, 6]
        start = time.monotonic()
        with pytest.raises(ModbusTimeoutError, match=r"within 0\.5 s"):
            await conn.read(1, 5, 2)
        assert time.monotonic() - start < 1.0
        # the silent unit is not asked again until its back-off ends (0.5 s, then doubling)
        retry_at = conn.unit_retry_at_s(1)
        assert retry_at is not None and 0 < retry_at - time.monotonic() <= 0.5
        with pytest.raises(ModbusTimeoutError, match="did not answer; asked again in"):
            await conn.read(1, 5, 2)
        async with rtu_server(holding(values), server_end):
            await asyncio.sleep(max(0.0, retry_at - time.monotonic()))
            assert await conn.read(1, 7, 1) == [7]
            assert conn.unit_retry_at_s(1) is None
        pool.release(conn)


async def test_a_silent_unit_does_not_hold_up_the_others_on_its_bus(tmp_path, monkeypatch):
    """Units 1 and 3 answer, unit 2 is not on the bus. After its first timeout unit 2 is
    skipped for its back-off, so a round of reads over the bus takes what the answering units
    need, not unit 2's timeout."""
    silent_absent_units(monkeypatch)
    async with pty_pair(tmp_path) as (client_end, server_end), \
            rtu_server(holding([7] * 10), server_end, units=(1, 3)):
        pool = ModbusPool(timeout_s=1.5, backoff_initial_s=30)
        conn = pool.acquire(parse_serial(client_end))

        async def round_of_reads() -> tuple[list[object], float]:
            start = time.monotonic()
            answers = await asyncio.gather(*(conn.read(unit, 0, 2) for unit in (1, 2, 3)),
                                           return_exceptions=True)
            return answers, time.monotonic() - start

        first, _ = await round_of_reads()
        assert first[0] == [7, 7] and first[2] == [7, 7]
        assert isinstance(first[1], ModbusTimeoutError)
        for _ in range(3):
            answers, took_s = await round_of_reads()
            assert answers[0] == [7, 7] and answers[2] == [7, 7]
            assert isinstance(answers[1], ModbusTimeoutError)
            assert "did not answer; asked again" in str(answers[1])
            assert took_s < 1.0  # two short answers at 9600 baud, no 1.5 s wait for unit 2
        pool.release(conn)


async def test_a_missing_serial_port_is_a_connect_error_with_back_off(tmp_path):
    pool = ModbusPool(timeout_s=0.5)
    conn = pool.acquire(parse_serial(f"{tmp_path}/ttyUSB9,9600,8N1"))
    start = time.monotonic()
    with pytest.raises(ModbusConnectError, match=r"cannot connect to .*ttyUSB9,9600,8N1"):
        await conn.read(1, 0, 1)
    assert time.monotonic() - start < 1.5 and conn.retry_at_s is not None
    with pytest.raises(ModbusConnectError):  # in the back-off: at once, no new open
        await conn.read(1, 0, 1)
    pool.release(conn)
