"""The codec property shared by the server side and the client side:
- server: the Power Brain register bank stores every table field through the codec, and its
  raw registers are what `codec.encode` gives; chargebrain's own Modbus TCP server hands them
  to a client that decodes them with the same codec;
- client: any typed value written by the pooled client to a real pymodbus server and read
  back decodes to the value, for every type, word order and scale factor."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargebrain.api.modbus_server import PowerBrainModbusServer
from chargebrain.modbus.address import Endpoint
from chargebrain.modbus.client import ModbusPool
from chargebrain.modbus.codec import DataType, WordOrder
from chargebrain.powerbrain import PowerBrain
from chargebrain.powerbrain.bank import RegisterBank
from chargebrain.powerbrain.registers import LAYOUTS, Register
from chargebrain.store.db import Store
from tests.modbus.loopback import BackgroundLoop, plain_server
from tests.modbus.strategies import Typed, integers, strings, typed_values
from tests.support.ports import free_port, free_port_block

LOOPBACK = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def table_type(reg: Register) -> DataType:
    if reg.kind == "str":
        return DataType.STR
    return {(1, False): DataType.U16, (1, True): DataType.S16, (2, False): DataType.U32,
            (2, True): DataType.S32, (4, False): DataType.U64, (4, True): DataType.S64
            }[(reg.size, reg.signed)]


EVSE_FIELDS = [r for r in LAYOUTS["evse"].fields if r.readable]


@st.composite
def field_values(draw: st.DrawFn) -> tuple[Register, Typed]:
    """A readable field of the EVSE table and a value of its type (the table is `hl`)."""
    reg = draw(st.sampled_from(EVSE_FIELDS))
    hl = st.just(WordOrder.HIGH_FIRST)
    if reg.kind == "str":
        return reg, draw(strings(length=reg.size, orders=hl))
    return reg, draw(integers(table_type(reg), orders=hl, scales=st.just(0)))


@pytest.fixture(scope="module")
def background():
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def powerbrain_server(background, tmp_path_factory):
    """chargebrain's Power Brain Modbus TCP server on loopback, and a pooled client to it."""
    store = Store.open(tmp_path_factory.mktemp("pb") / "data")
    brain = PowerBrain(store)
    brain.start(0.0)
    server = PowerBrainModbusServer(brain, "127.0.0.1", free_port_block(3))
    background.run(server.start())
    pool = ModbusPool()
    conn = pool.acquire(Endpoint("127.0.0.1", server.port_of("evse")))
    yield brain, conn
    pool.release(conn)
    background.run(server.stop())
    brain.close()
    store.close()


@given(field_values())
def test_register_bank_stores_fields_through_the_codec(field):
    reg, typed = field
    bank = RegisterBank(LAYOUTS["evse"])
    bank.store(reg, typed.value)
    assert bank.read_raw(reg.address, reg.size) == typed.encode()
    assert typed.same(bank.get(reg.name))


@LOOPBACK
@given(field=field_values())
def test_server_bank_and_client_codec_agree(powerbrain_server, background, field):
    brain, conn = powerbrain_server
    reg, typed = field
    brain.bank("evse").store(reg, typed.value)
    words = background.run(conn.read(1, reg.address, reg.size))
    assert words == typed.encode()
    assert typed.same(typed.decode(words))


@pytest.fixture(scope="module")
def plain_device(background):
    port = free_port()
    server = background.run(plain_server(port))
    pool = ModbusPool()
    conn = pool.acquire(Endpoint("127.0.0.1", port))
    yield conn
    pool.release(conn)
    background.run(server.shutdown())


@LOOPBACK
@given(typed=typed_values, address=st.integers(0, 300))
def test_client_writes_and_reads_back_every_type(plain_device, background, typed, address):
    words = typed.encode()
    background.run(plain_device.write(7, address, words))
    back = background.run(plain_device.read(7, address, len(words)))
    assert back == words
    assert typed.same(typed.decode(back))
