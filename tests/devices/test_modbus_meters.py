"""Modbus meters from definitions against real pymodbus TCP servers on loopback.

Each server is loaded from the vendor's register table written out here (addresses, types and
word order from research/protocols.md §2, not from our definition files), so a wrong address,
type, word order or resolution in a shipped definition makes these tests fail."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData

from chargebrain.modbus.codec import DataType, WordOrder, encode
from tests.devices.meter_support import add_meter, dev_info, meter_server, read, write
from tests.devices.support import stop_cycle
from tests.modbus.loopback import silent_server
from tests.modbus.serial_pair import pty_pair, rtu_server, silent_absent_units
from tests.support.server import running_app

Table = dict[int, tuple[str, float | int | str]]  # address → (codec type, value), high word first


def registers(table: Table, order: str = "hl") -> dict[int, int]:
    out: dict[int, int] = {}
    for address, (kind, value) in table.items():
        length = 8 if kind == "str" else None
        words = encode(value, DataType(kind), WordOrder(order), length=length)
        out.update(zip(range(address, address + len(words)), words, strict=True))
    return out


def blocks(words: dict[int, int], ranges: list[tuple[int, int]]) -> list[SimData]:
    """Register blocks [start, end) zero-filled, with `words` placed; addresses outside every
    block do not exist on the device (exception 2, as on a real meter)."""
    return [SimData(start, values=[words.get(a, 0) for a in range(start, end)],
                    datatype=SimType.REGISTERS) for start, end in ranges]


# -- the vendors' tables, with known values -----------------------------------------------------

SDM630: Table = {  # function 4, float32
    0x00: ("f32", 230.1), 0x02: ("f32", 231.4), 0x04: ("f32", 229.6),
    0x06: ("f32", 10.5), 0x08: ("f32", 8.25), 0x0A: ("f32", 0.5),
    0x0C: ("f32", 2415.0), 0x0E: ("f32", 1900.0), 0x10: ("f32", -115.0),
    0x34: ("f32", 4200.0), 0x48: ("f32", 12345.678), 0x4A: ("f32", 321.5),
}
SDM630_EXPECTED = {"voltage_l1": 230, "voltage_l2": 231, "voltage_l3": 230,
                   "current_l1": 10500, "current_l2": 8250, "current_l3": -500,
                   "power_w": 4200, "import": 12345678, "export": 321500}
SDM72: Table = {0x34: ("f32", -1234.5), 0x48: ("f32", 99.125), 0x4A: ("f32", 7.5)}
SDM72_EXPECTED = {"power_w": -1234, "import": 99125, "export": 7500}
ABB: Table = {  # function 3, integers
    0x5B00: ("u32", 2301), 0x5B02: ("u32", 2314), 0x5B04: ("u32", 2296),  # 0.1 V
    0x5B0C: ("u32", 1050), 0x5B0E: ("u32", 825), 0x5B10: ("u32", 50),  # 0.01 A
    0x5B14: ("s32", 420000), 0x5B16: ("s32", 241500), 0x5B18: ("s32", 190000),
    0x5B1A: ("s32", -11500),  # 0.01 W
    0x5000: ("u64", 1234567), 0x5004: ("u64", 0xFFFFFFFFFFFFFFFF),  # 0.01 kWh; all ones: n/a
}
ABB_EXPECTED = {**SDM630_EXPECTED, "import": 12345670, "export": 0}
JANITZA: Table = {  # function 3, float32
    19000: ("f32", 230.1), 19002: ("f32", 231.4), 19004: ("f32", 229.6),
    19012: ("f32", 10.5), 19014: ("f32", 8.25), 19016: ("f32", 0.5),
    19020: ("f32", 2415.0), 19022: ("f32", 1900.0), 19024: ("f32", -115.0),
    19026: ("f32", 4200.0), 19068: ("f32", 5_000_000.0), 19076: ("f32", 1250.0),
}
JANITZA_EXPECTED = {**SDM630_EXPECTED, "import": 5_000_000, "export": 1250}

METERS = {
    "meter_sdm630": (SDM630, [(0, 0x50)], SDM630_EXPECTED, "Eastron"),
    "meter_sdm72dm": (SDM72, [(0, 0x50)], SDM72_EXPECTED, "Eastron"),
    "meter_abb_b23_b24": (ABB, [(0x5B00, 0x5B30), (0x5000, 0x5010)], ABB_EXPECTED, "ABB"),
    "meter_janitza_umg96rm": (JANITZA, [(19000, 19100)], JANITZA_EXPECTED, "Janitza"),
}


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
async def cb(tmp_path):
    async with running_app(tmp_path / "cb", modbus=False) as running:
        await stop_cycle(running)  # the tests read by hand
        yield running


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dev_type", sorted(METERS))
async def test_shipped_definition_reads_the_vendor_table_exactly(cb, dev_type):
    table, ranges, expected, maker = METERS[dev_type]
    async with meter_server(blocks(registers(table), ranges)) as (port, _):
        dev_id = await add_meter(cb, dev_type=dev_type, address=f"127.0.0.1:{port}", id=1)
        reading = await read(cb, dev_id)
        assert reading is not None, cb.app.devices.get(dev_id).status.last_error
        info = await dev_info(cb, dev_id)
    assert {k: info[k] for k in expected} == expected
    assert info["com_err"] is False and info["model"].startswith(maker)


async def test_reads_are_batched_and_a_changed_value_shows_in_the_next_read(cb):
    async with meter_server(blocks(registers(SDM630), [(0, 0x50)])) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sdm630", address=f"127.0.0.1:{port}")
        assert await read(cb, dev_id) is not None
        driver = cb.app.devices.get(dev_id).driver
        # 0x00–0x35 in one request (gaps allowed, ≤ 60 registers), 0x48–0x4B in another
        assert driver.requests == 2
        await write(port, 0x34, encode(-2500.0, DataType.F32))
        reading = await read(cb, dev_id)
        assert reading is not None and reading.power_w == -2500 and driver.requests == 4
        assert (await dev_info(cb, dev_id))["power_w"] == -2500


async def test_stopped_server_is_a_com_error_within_the_timeout_and_recovers(cb):
    words = registers(SDM630)
    async with meter_server(blocks(words, [(0, 0x50)])) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sdm630", address=f"127.0.0.1:{port}",
                                 com_timeout_ms=1000)
        assert await read(cb, dev_id) is not None
    start = time.monotonic()
    assert await read(cb, dev_id) is None
    assert time.monotonic() - start < 1.5
    info = await dev_info(cb, dev_id)
    assert info["com_err"] is True and info["com_errors"] == 1 and info["last_error"]
    async with meter_server(blocks(words, [(0, 0x50)]), port=port):
        deadline = time.monotonic() + 10
        reading = None
        while reading is None and time.monotonic() < deadline:  # past the connect back-off
            await asyncio.sleep(0.2)
            reading = await read(cb, dev_id)
        assert reading is not None and reading.power_w == 4200
        assert (await dev_info(cb, dev_id))["com_err"] is False


async def test_silent_device_times_out_as_a_com_error(cb):
    async with silent_server() as (port, accepted):
        dev_id = await add_meter(cb, dev_type="meter_abb_b23_b24",
                                 address=f"127.0.0.1:{port}", com_timeout_ms=300)
        start = time.monotonic()
        assert await read(cb, dev_id) is None
        assert time.monotonic() - start < 1.0 and accepted
        status = cb.app.devices.get(dev_id).status
        assert status.com_err and "within 0.3 s" in status.last_error


USER_DEFINITION = """// a user's meter: low word first, a string, 32-bit integers, no gaps
{
  "name": "Garage meter", "manufacturer": "ACME", "modbus_read": 3,
  "modbus_allow_gaps": %s, "reserved": [-1],
  "type_designation": {"address": 100, "type": "string", "length": 8},
  "power_w":    {"address": 0x10, "type": "int32", "order": "lh", "resolution": -1},
  "import_wh":  {"address": 0x12, "type": "uint32", "order": "lh", "resolution": 1},
  "export_wh":  {"address": 0x20, "type": "int32", "order": "lh", "resolution": 1},
  "soc":        {"fixed": "55"}
}"""


def user_server_blocks() -> list[SimData]:
    table: Table = {0x10: ("s32", 70000), 0x12: ("u32", 4_000_000), 0x20: ("s32", -1)}
    words = {**registers(table, "lh"), **registers({100: ("str", "G-1000")})}
    return blocks(words, [(0x10, 0x14), (0x20, 0x22), (100, 108)])  # 0x14–0x1F missing


async def test_user_definition_low_word_first_strings_and_reserved(tmp_path):
    (tmp_path / "cb" / "meter_defs").mkdir(parents=True)
    (tmp_path / "cb" / "meter_defs" / "meter_garage.json").write_text(USER_DEFINITION % "false")
    async with running_app(tmp_path / "cb", modbus=False) as running, \
            meter_server(user_server_blocks()) as (port, _):
        await stop_cycle(running)
        _, dev_types = await running.client.get("get_dev_types")
        assert "meter_garage" in str(dev_types)
        dev_id = await add_meter(running, dev_type="meter_garage", address=f"127.0.0.1:{port}",
                                 id=7)
        reading = await read(running, dev_id)
        assert reading is not None, running.app.devices.get(dev_id).status.last_error
        assert (reading.power_w, reading.import_wh, reading.export_wh, reading.soc) == (
            -70000, 4_000_000, 0, 55)
        assert reading.model == "ACME G-1000"


async def test_reading_across_a_missing_gap_fails_only_when_gaps_are_allowed(tmp_path):
    (tmp_path / "cb" / "meter_defs").mkdir(parents=True)
    (tmp_path / "cb" / "meter_defs" / "meter_garage.json").write_text(USER_DEFINITION % "true")
    async with running_app(tmp_path / "cb", modbus=False) as running, \
            meter_server(user_server_blocks()) as (port, _):
        await stop_cycle(running)
        dev_id = await add_meter(running, dev_type="meter_garage", address=f"127.0.0.1:{port}")
        assert await read(running, dev_id) is None
        status = running.app.devices.get(dev_id).status
        assert status.com_err and "exception 2" in status.last_error


async def test_bad_address_is_refused_and_a_missing_one_is_a_com_error(cb):
    status, body = await cb.client.post("set_device", {"devices": [
        {"dev_type": "meter_sdm630", "address": "meter.local"}]})
    assert status == 400 and "address must be host:port or a serial port" in str(body)
    dev_id = await add_meter(cb, dev_type="meter_sdm630")
    assert await read(cb, dev_id) is None
    assert cb.app.devices.get(dev_id).status.last_error == "no address configured"


# -- Modbus RTU over a serial port (a pseudo-terminal pair, a pymodbus RTU server) ---------------


async def test_meters_on_one_rtu_bus_read_the_vendor_tables(cb, tmp_path):
    sdm, abb = METERS["meter_sdm630"], METERS["meter_abb_b23_b24"]
    async with pty_pair(tmp_path) as (client_end, server_end), \
            rtu_server(blocks(registers(sdm[0]), sdm[1]), server_end, baudrate=19200):
        first = await add_meter(cb, dev_type="meter_sdm630", address=f"{client_end},19200,8N1",
                                id=1)
        second = await add_meter(cb, dev_type="meter_sdm630", address=f"{client_end},19200,8N1",
                                 id=2)
        for dev_id in (first, second):
            reading = await read(cb, dev_id)
            assert reading is not None, cb.app.devices.get(dev_id).status.last_error
            info = await dev_info(cb, dev_id)
            assert {k: info[k] for k in sdm[2]} == sdm[2]
        drivers = [cb.app.devices.get(d).driver for d in (first, second)]
        assert drivers[0]._conn is drivers[1]._conn and drivers[0]._conn.connects == 1
    async with pty_pair(tmp_path) as (client_end, server_end), \
            rtu_server(blocks(registers(abb[0]), abb[1]), server_end):
        dev_id = await add_meter(cb, dev_type="meter_abb_b23_b24", address=client_end, id=5)
        assert await read(cb, dev_id) is not None, cb.app.devices.get(dev_id).status.last_error
        info = await dev_info(cb, dev_id)
        assert {k: info[k] for k in abb[2]} == abb[2]


async def test_stopped_rtu_server_is_a_com_error_within_the_timeout_and_recovers(cb, tmp_path):
    words = registers(SDM630)
    async with pty_pair(tmp_path) as (client_end, server_end):
        async with rtu_server(blocks(words, [(0, 0x50)]), server_end):
            dev_id = await add_meter(cb, dev_type="meter_sdm630",
                                     address=f"{client_end},9600,8N1", com_timeout_ms=800)
            assert await read(cb, dev_id) is not None
        start = time.monotonic()
        assert await read(cb, dev_id) is None
        assert time.monotonic() - start < 1.3
        info = await dev_info(cb, dev_id)
        assert info["com_err"] is True and "within 0.8 s" in info["last_error"]
        assert await read(cb, dev_id) is None  # not asked again during its back-off
        assert "asked again in" in (await dev_info(cb, dev_id))["last_error"]
        words.update(registers({0x34: ("f32", -900.0)}))
        async with rtu_server(blocks(words, [(0, 0x50)]), server_end):
            deadline = time.monotonic() + 10
            reading = None
            while reading is None and time.monotonic() < deadline:  # past the back-off
                await asyncio.sleep(0.2)
                reading = await read(cb, dev_id)
            assert reading is not None and reading.power_w == -900
            assert (await dev_info(cb, dev_id))["com_err"] is False


@pytest.mark.parametrize(("address", "message"), [
    ("/dev/ttyUSB0,9601,8N1", "baud rate"), ("/dev/ttyUSB0,9600,8Q1", "frame")])
async def test_bad_serial_address_is_refused(cb, address, message):
    status, body = await cb.client.post("set_device", {"devices": [
        {"dev_type": "meter_sdm630", "address": address}]})
    assert status == 400 and message in str(body)
    assert not any(d.config.address == address for d in cb.app.devices.all())


TYPES_DEFINITION = """// every width and both word orders, with resolutions
{
  "name": "Types meter", "modbus_read": 3, "modbus_allow_gaps": true,
  "power_w":    {"address": 0, "type": "float", "order": "lh"},
  "import_wh":  {"address": 2, "type": "double", "resolution": 1000},
  "export_wh":  {"address": 6, "type": "int64", "order": "lh"},
  "voltage_l1": {"address": 10, "type": "uint16", "resolution": 0.1},
  "current_l1": {"address": 11, "type": "int16", "resolution": 10},
  "current_l2": {"address": 12, "type": "uint32"},
  "current_l3": {"address": 14, "type": "int32", "order": "lh"},
  "voltage_l2": {"address": 16, "type": "float"},
  "voltage_l3": {"address": 18, "type": "uint64", "order": "lh", "resolution": 0.001}
}"""


async def test_every_width_and_both_word_orders(tmp_path):
    (tmp_path / "cb" / "meter_defs").mkdir(parents=True)
    (tmp_path / "cb" / "meter_defs" / "meter_types.json").write_text(TYPES_DEFINITION)
    words = {**registers({10: ("u16", 2318), 11: ("s16", -1234),
                          12: ("u32", 70_000), 16: ("f32", 229.4)}),
             **registers({2: ("f64", 98_765.4321)}),
             **registers({0: ("f32", -2345.5), 6: ("s64", 2**40 + 7), 14: ("s32", -65_537),
                          18: ("u64", 231_000)}, "lh")}
    async with running_app(tmp_path / "cb", modbus=False) as running, \
            meter_server(blocks(words, [(0, 22)])) as (port, _):
        await stop_cycle(running)
        dev_id = await add_meter(running, dev_type="meter_types", address=f"127.0.0.1:{port}")
        reading = await read(running, dev_id)
        assert reading is not None, running.app.devices.get(dev_id).status.last_error
        info = await dev_info(running, dev_id)
    assert {k: info[k] for k in ("power_w", "import", "export", "voltage_l1", "voltage_l2",
                                 "voltage_l3", "current_l1", "current_l2", "current_l3")} == {
        "power_w": -2346, "import": 98_765_432, "export": 2**40 + 7,
        "voltage_l1": 232, "voltage_l2": 229, "voltage_l3": 231,
        # currents take the sign of their phase's power only when it is read: here as read
        "current_l1": -12_340, "current_l2": 70_000, "current_l3": -65_537}


EXPR_DEFINITION = """// a meter that reports currents and voltages only: powers are formulas
{
  "name": "Formula meter", "modbus_read": 3,
  "current_l1": {"address": 0x00, "type": "uint16", "resolution": 10},
  "current_l2": {"address": 0x01, "type": "uint16", "resolution": 10},
  "current_l3": {"address": 0x02, "type": "uint16", "resolution": 10},
  "voltage_l1": {"address": 0x10, "type": "uint16", "resolution": 0.1},
  "voltage_l2": {"address": 0x11, "type": "uint16", "resolution": 0.1},
  "voltage_l3": {"address": 0x12, "type": "uint16", "resolution": 0.1},
  "flags":      {"address": 0x20, "type": "uint16"},
  "power_w_l1": {"expr": "current_l1 * voltage_l1 / 1000"},
  "power_w_l2": {"expr": "current_l2 * voltage_l2 / 1000"},
  "power_w_l3": {"expr": "(flags & 0x1 ? -1 : 1) * current_l3 * voltage_l3 / 1000"},
  "power_w":    {"expr": "power_w_l1 + power_w_l2 + power_w_l3"},
  "import_wh":  {"expr": "flags / (flags & 0x2)", "resolution": 1000}
}"""


async def test_expr_variables_are_computed_and_a_failing_one_is_left_out(tmp_path):
    (tmp_path / "cb" / "meter_defs").mkdir(parents=True)
    (tmp_path / "cb" / "meter_defs" / "meter_formula.json").write_text(EXPR_DEFINITION)
    words = {0x00: 1000, 0x01: 500, 0x02: 250, 0x10: 2300, 0x11: 2310, 0x12: 2290,
             0x20: 0b11}
    async with running_app(tmp_path / "cb", modbus=False) as running, \
            meter_server(blocks(words, [(0, 3), (0x10, 0x13), (0x20, 0x21)])) as (port, _):
        await stop_cycle(running)
        dev_id = await add_meter(running, dev_type="meter_formula",
                                 address=f"127.0.0.1:{port}")
        reading = await read(running, dev_id)
        assert reading is not None, running.app.devices.get(dev_id).status.last_error
        # 10 A × 230 V + 5 A × 231 V − 2.5 A × 229 V (flag bit 0: L3 feeds in)
        assert reading.power_w == round(2300 + 1155 - 572.5)
        assert reading.currents_ma == (10_000, 5_000, -2_500)
        assert reading.import_wh == 1500  # 3 / (3 & 2) = 1.5 kWh
        info = await dev_info(running, dev_id)
        assert info["last_error"] == "" and info["com_err"] is False
        # bit 1 clears: import_wh divides by zero: it is missing, nothing else is disturbed
        await write(port, 0x20, [0b01])
        reading = await read(running, dev_id)
        assert reading is not None and reading.power_w == round(2300 + 1155 - 572.5)
        assert reading.import_wh == 0
        info = await dev_info(running, dev_id)
        assert info["com_err"] is False and info["com_errors"] == 0
        assert info["last_error"] == ("import_wh: cannot compute 'flags / (flags & 0x2)' "
                                      "(formula: division by zero at 6)")


async def test_a_dead_meter_on_an_rtu_bus_does_not_hold_up_the_others(cb, tmp_path,
                                                                      monkeypatch):
    silent_absent_units(monkeypatch)
    sdm = METERS["meter_sdm630"]
    async with pty_pair(tmp_path) as (client_end, server_end), \
            rtu_server(blocks(registers(sdm[0]), sdm[1]), server_end, units=(1,)):
        good = await add_meter(cb, dev_type="meter_sdm630", address=client_end, id=1,
                               com_timeout_ms=1500)
        dead = await add_meter(cb, dev_type="meter_sdm630", address=client_end, id=9,
                               com_timeout_ms=1500)  # no unit 9 on the bus
        rounds = []
        for _ in range(2):  # the second within the dead unit's first back-off (0.5 s)
            start = time.monotonic()
            results = await asyncio.gather(read(cb, dead), read(cb, good))
            rounds.append((results, time.monotonic() - start))
        assert all(dead_result is None for (dead_result, _), _ in rounds)
        (_, good_result), took_s = rounds[1]  # after the dead unit's first timeout
        assert good_result is not None and good_result.power_w == 4200
        assert took_s < 1.0  # the good meter's two requests, no 1.5 s wait for unit 9
        info = await dev_info(cb, dead)
        assert info["com_err"] is True and "asked again in" in info["last_error"]
