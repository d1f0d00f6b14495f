"""modbus_get / modbus_set: a chargebrain pointed at its own Power Brain Modbus TCP server (and,
for types the Power Brain has no writable register for, a plain pymodbus server), all over
loopback; plus the pure encoding with round-trip properties."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from chargebrain.modbus.address import AddressError, Endpoint, parse_host_port
from chargebrain.modbus.client import shared_pool
from chargebrain.modbus.codec import decode, encode, shortest_float32
from tests.devices.support import stop_cycle
from tests.modbus.loopback import silent_server
from tests.support.ports import free_port

METER2_OFFSET = 2  # S0 meter 2: pulses (8050, q) is writable and nothing counts on it


def _evse(cb) -> str:
    return f"127.0.0.1:{cb.modbus_base}"


def _meter2(cb) -> str:
    return f"127.0.0.1:{cb.modbus_base + METER2_OFFSET}"


async def _local(cb, device: str, read: str):
    status, value = await cb.client.get("modbus", device=device, read=read)
    assert status == 200
    return value


# -- reads from the Power Brain ---------------------------------------------------------------

async def test_reads_every_numeric_type_and_string(cb):
    c = cb.client
    assert await c.get("modbus_get", addr=_evse(cb), func=3, id=1, reg=8093) == (200, 160)
    assert await c.get("modbus_get", addr=_evse(cb), reg=8000, type="d") == (200, -821755904)
    assert await c.get("modbus_get", addr=_evse(cb), reg=8058, type="q") == (200, 0)
    assert await c.get("modbus_get", addr=_evse(cb), reg=8016, type="s", cnt=16) \
        == (200, "cFos Power Brain")
    assert await c.get("modbus_get", addr=_evse(cb), reg=8016, type="s") == (200, "cF")


async def test_hex_register_and_function_4(cb):
    assert await cb.client.get("modbus_get", addr=_evse(cb), reg="0x1F9D", func=4) \
        == (200, 160)


async def test_word_order_lh_reverses_the_registers(cb):
    # vendor id 0xcf05 in the high word: read low word first it is 0x0000cf05
    assert await cb.client.get("modbus_get", addr=_evse(cb), reg=8000, type="d",
                               order="lh") == (200, 0xCF05)


# -- writes to the Power Brain, read back through cmd=modbus ----------------------------------

async def test_write_single_register_is_read_back_through_cmd_modbus(cb):
    assert await cb.client.get("modbus_set", addr=_evse(cb), func=6, id=1, reg=8093,
                               val=100) == (200, "ok")
    assert await _local(cb, "evse", "8093") == 100
    assert await cb.client.get("modbus_set", addr=_evse(cb), reg=8093, val="120.0") \
        == (200, "ok")
    assert await _local(cb, "evse", "8093") == 120


async def test_write_32_and_64_bit(cb):
    assert await cb.client.get("modbus_set", addr=_evse(cb), reg=8083, type="d", val=600) \
        == (200, "ok")
    assert await _local(cb, "evse", "8083d") == 600
    big = 2**40 + 12345
    assert await cb.client.get("modbus_set", addr=_meter2(cb), reg=8050, type="q",
                               val=big) == (200, "ok")
    assert await _local(cb, "meter2", "8050q") == big
    assert await cb.client.get("modbus_get", addr=_meter2(cb), reg=8050, type="q") \
        == (200, big)


async def test_float_written_and_read_in_both_orders(cb):
    for order in ("hl", "lh"):
        assert await cb.client.get("modbus_set", addr=_meter2(cb), reg=8050, type="f",
                                   val="1.5", order=order) == (200, "ok")
        assert await cb.client.get("modbus_get", addr=_meter2(cb), reg=8050, type="f",
                                   order=order) == (200, 1.5)
    # lh wrote [0x0000, 0x3fc0]: the high words of the 64-bit counter
    assert await cb.client.get("modbus", device="meter2", read="8050", count=2) \
        == (200, [0, 0x3FC0])


async def test_device_exception_is_a_400_and_nothing_changes(cb):
    status, answer = await cb.client.get("modbus_set", addr=_evse(cb), reg=8093, val=5)
    assert status == 400
    assert answer.startswith("modbus error: exception 3 (illegal data value)")
    assert await _local(cb, "evse", "8093") == 160
    status, answer = await cb.client.get("modbus_get", addr=_evse(cb), reg=9000)
    assert status == 400
    assert answer.startswith("modbus error: exception 2 (illegal data address)")


# -- unreachable and misbehaving hosts --------------------------------------------------------

async def test_closed_port_is_a_modbus_error(cb):
    port = free_port()  # nothing listens there
    status, answer = await cb.client.get("modbus_get", addr=f"127.0.0.1:{port}", reg=1)
    assert (status, answer) == (400, f"modbus error: cannot connect to 127.0.0.1:{port}")


async def test_silent_host_is_a_modbus_error_not_a_hang(cb):
    async with silent_server() as (port, _):
        status, answer = await cb.client.get("modbus_get", addr=f"127.0.0.1:{port}", reg=1)
        assert status == 400
        assert answer.startswith(f"modbus error: no answer from 127.0.0.1:{port}"), answer
        # the server stays responsive for everyone else meanwhile
        assert (await cb.client.get("get_dev_info"))[0] == 200


async def test_modbus_get_shares_the_connection_of_a_configured_device(cb):
    await stop_cycle(cb)
    status, _ = await cb.client.post("set_device", {"devices": [
        {"dev_type": "evse_powerbrain", "address": _evse(cb), "id": 1}]})
    assert status == 200
    registry = cb.app.devices
    device = registry.all()[-1]
    assert await registry.read(device, registry.clock()) is not None
    conn = shared_pool().connection(Endpoint("127.0.0.1", cb.modbus_base))
    assert conn is not None and conn.connects == 1
    requests = conn.requests
    assert await cb.client.get("modbus_get", addr=_evse(cb), reg=8093) == (200, 160)
    assert conn.requests == requests + 1 and conn.connects == 1  # the same TCP connection
    assert conn.connected  # the device still holds its lease


# -- refused parameters -----------------------------------------------------------------------

BAD = [
    ("modbus_get", {"addr": "COM3,9600,8,N,1", "reg": 1}, "serial ports are not supported"),
    ("modbus_set", {"addr": "com1", "reg": 1, "val": 1}, "serial ports are not supported"),
    ("modbus_get", {"reg": 1}, "missing parameter addr"),
    ("modbus_get", {"addr": "1.2.3.4:99999", "reg": 1}, "port must be 1 to 65535"),
    ("modbus_get", {"addr": "1.2.3.4:x", "reg": 1}, "port must be"),
    ("modbus_get", {"addr": "bad host!:502", "reg": 1}, "bad addr"),
    ("modbus_get", {"addr": "[::1:502", "reg": 1}, "bad addr"),
    ("modbus_get", {"addr": "@", "reg": 1}, "bad addr"),
    ("modbus_get", {"addr": "h:1"}, "missing parameter reg"),
    ("modbus_get", {"addr": "h:1", "reg": "0xZZ"}, "reg must be a register number"),
    ("modbus_get", {"addr": "h:1", "reg": "70000"}, "reg must be 0 to 65535"),
    ("modbus_get", {"addr": "h:1", "reg": "-1"}, "reg must be 0 to 65535"),
    ("modbus_get", {"addr": "h:1", "reg": "65535", "type": "d"}, "exceed 65535"),
    ("modbus_get", {"addr": "h:1", "reg": 1, "func": 6}, "func must be 3 or 4"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": 1, "func": 3}, "func must be 6 or 16"),
    ("modbus_get", {"addr": "h:1", "reg": 1, "func": "x"}, "func must be a number"),
    ("modbus_get", {"addr": "h:1", "reg": 1, "type": "z"}, "type must be w, d, f, q or s"),
    ("modbus_get", {"addr": "h:1", "reg": 1, "order": "ba"}, "order must be hl or lh"),
    ("modbus_get", {"addr": "h:1", "reg": 1, "cnt": 2}, "cnt is the length of a string"),
    ("modbus_get", {"addr": "h:1", "reg": 1, "type": "s", "cnt": 126}, "cnt must be 1 to 125"),
    ("modbus_get", {"addr": "h:1", "reg": 1, "id": 256}, "id must be at most 255"),
    ("modbus_set", {"addr": "h:1", "reg": 1}, "missing parameter val"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": "abc"}, "val must be a whole number"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": "1.5"}, "val must be a whole number"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": "nan"}, "val must be a whole number"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": 65536}, "out of range for type w"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": -32769}, "out of range for type w"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": 2**32, "type": "d"}, "out of range"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": 2**64, "type": "q"}, "out of range"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": "inf", "type": "f"}, "finite"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": "1e39", "type": "f"}, "32-bit float"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": 7, "type": "d", "func": 6}, "use func=16"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": "abcde", "type": "s", "cnt": 2},
     "does not fit in 2 registers"),
    ("modbus_set", {"addr": "h:1", "reg": 1, "val": "a\0b", "type": "s"},
     "val: strings cannot contain NUL"),
]


@pytest.mark.parametrize(("cmd", "params", "message"), BAD)
async def test_bad_parameters_are_400(cb, cmd, params, message):
    status, answer = await cb.client.get(cmd, **params)
    assert status == 400
    assert message in answer


@pytest.mark.parametrize("cmd", ["modbus_get", "modbus_set"])
async def test_admin_only(cb, cmd):
    status, _ = await cb.client.get(cmd, auth=None, addr=_evse(cb), reg=8093, val=100)
    assert status == 401
    assert await _local(cb, "evse", "8093") == 160


# -- a plain Modbus device with free registers (strings, NaN) ---------------------------------

@pytest.fixture
async def plain_device():
    """A pymodbus TCP server with 200 writable holding registers from address 0."""
    port = free_port()
    device = SimDevice(id=0, simdata=[SimData(0, values=[0] * 200,
                                              datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.shutdown()


async def test_string_write_and_read(cb, plain_device):
    c = cb.client
    assert await c.get("modbus_set", addr=plain_device, reg=10, type="s", val="Wallbox 7",
                       cnt=8) == (200, "ok")
    assert await c.get("modbus_get", addr=plain_device, reg=10, type="s", cnt=8) \
        == (200, "Wallbox 7")
    assert await c.get("modbus_get", addr=plain_device, reg=10, type="w") \
        == (200, ord("W") << 8 | ord("a"))
    assert await c.get("modbus_set", addr=plain_device, reg=30, type="s", val="ab",
                       order="lh") == (200, "ok")
    assert await c.get("modbus_get", addr=plain_device, reg=30, type="w") \
        == (200, ord("b") << 8 | ord("a"))
    assert await c.get("modbus_get", addr=plain_device, reg=30, type="s", order="lh") \
        == (200, "ab")


async def test_nan_float_reads_as_null(cb, plain_device):
    assert await cb.client.get("modbus_set", addr=plain_device, reg=50, type="d",
                               val=0x7FC00000) == (200, "ok")
    assert await cb.client.get("modbus_get", addr=plain_device, reg=50, type="f") \
        == (200, None)


async def test_negative_values_are_twos_complement(cb, plain_device):
    c = cb.client
    assert await c.get("modbus_set", addr=plain_device, reg=60, val=-2) == (200, "ok")
    assert await c.get("modbus_get", addr=plain_device, reg=60) == (200, 0xFFFE)
    assert await c.get("modbus_set", addr=plain_device, reg=61, type="q", val=-5) \
        == (200, "ok")
    assert await c.get("modbus_get", addr=plain_device, reg=61, type="q") == (200, -5)
    assert await c.get("modbus_set", addr=plain_device, reg=70, type="d", val="0xFFFFFFFF") \
        == (200, "ok")
    assert await c.get("modbus_get", addr=plain_device, reg=70, type="d") == (200, -1)


# -- the pure encoding (chargebrain.modbus.codec; the API's d, q, f, s are s32, s64, f32, str) --

orders = st.sampled_from(["hl", "lh"])


@given(st.integers(-2**31, 2**31 - 1), orders)
def test_d_round_trip(value, order):
    words = encode(value, "s32", order)
    assert len(words) == 2 and all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, "s32", order) == value


@given(st.integers(-2**63, 2**63 - 1), orders)
def test_q_round_trip(value, order):
    assert decode(encode(value, "s64", order), "s64", order) == value


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), orders)
def test_f_round_trip(value, order):
    back = decode(encode(value, "f32", order), "f32", order)
    assert isinstance(back, float)
    assert struct.pack(">f", back) == struct.pack(">f", value) or (back == 0 and value == 0)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
               max_size=40), orders)
def test_s_round_trip(text, order):
    size = len(text.encode("utf-8"))
    cnt = max(1, (size + 1) // 2)
    assert decode(encode(text, "str", order, length=cnt), "str", order) == text


def test_high_word_first_is_the_default():
    assert encode(0x12345678, "s32") == [0x1234, 0x5678]
    assert encode(0x12345678, "s32", "lh") == [0x5678, 0x1234]
    assert encode("AB", "str", length=2) == [0x4142, 0]
    assert encode(1.5, "f32") == [0x3FC0, 0]


def test_float_reads_are_the_shortest_decimal():
    assert shortest_float32(struct.unpack(">f", struct.pack(">f", 0.1))[0]) == 0.1
    assert math.isclose(shortest_float32(3.4028234663852886e38), 3.4028235e38)


@pytest.mark.parametrize(("addr", "target"), [
    ("192.168.2.10:502", Endpoint("192.168.2.10", 502)),
    ("10.0.0.1", Endpoint("10.0.0.1", 502)),
    ("meter.local:1502", Endpoint("meter.local", 1502)),
    ("[::1]:4701", Endpoint("::1", 4701)),
    (" 127.0.0.1:4701 ", Endpoint("127.0.0.1", 4701)),
])
def test_parse_target(addr, target):
    assert parse_host_port(addr, 502) == target


@pytest.mark.parametrize("addr", ["", "COM1", "/dev/ttyUSB0", "a:b:c", "host:0", "[::1]x",
                                  "-host:1", "host:"])
def test_parse_target_refuses(addr):
    with pytest.raises(AddressError):
        parse_host_port(addr, 502)
