"""SunSpec meters and inverters against real pymodbus servers holding a SunSpec image: the
marker, the common model, a meter (203) or inverter (103) model with scale factors, the end
marker. Offsets are the SunSpec models' (research/protocols.md §2.5), written out here."""

from __future__ import annotations

import pytest
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData

from chargebrain.modbus.codec import DataType, encode
from tests.devices.meter_support import add_meter, dev_info, meter_server, read, write
from tests.devices.support import stop_cycle
from tests.support.server import running_app


@pytest.fixture
async def cb(tmp_path):
    async with running_app(tmp_path / "cb", modbus=False) as running:
        await stop_cycle(running)  # the tests read by hand
        yield running


def s16(v: int) -> int:
    return v & 0xFFFF


def common_model() -> list[int]:
    body = [0] * 66
    body[0:16] = encode("Fronius", DataType.STR, length=16)
    body[16:32] = encode("Smart Meter 63A", DataType.STR, length=16)
    body[40:48] = encode("1.7.3", DataType.STR, length=8)
    body[48:64] = encode("SN4711", DataType.STR, length=16)
    return [1, 66, *body]


def meter_203() -> list[int]:
    m = [203, 105, *([0] * 105)]
    m[3:6] = [1050, 825, 50]            # AphA..C, A_SF -2 → 10.50 A …
    m[6] = s16(-2)
    m[8:11] = [2301, 2314, 2296]        # PhVphA..C, V_SF -1
    m[15] = s16(-1)
    m[18:22] = [s16(420), s16(242), s16(190), s16(-12)]  # W, WphA..C, W_SF 1 → ×10 W
    m[22] = 1
    m[38:40] = encode(3215, DataType.U32)    # TotWhExp, TotWh_SF 2 → ×100 Wh
    m[46:48] = encode(123456, DataType.U32)  # TotWhImp
    m[54] = 2
    m[16] = 0x8000  # Hz not implemented: ignored
    return m


def inverter_103() -> list[int]:
    m = [103, 50, *([0] * 50)]
    m[3:6] = [87, 86, 0xFFFF]           # AphA, AphB, AphC not implemented; A_SF -1
    m[6] = s16(-1)
    m[10:13] = [230, 231, 229]          # PhVphA..C, V_SF 0
    m[14] = 4000                        # W, W_SF 0
    m[24:26] = encode(9_876_543, DataType.U32)  # WH, WH_SF 0
    return m


def image(base: int, models: list[list[int]]) -> list[SimData]:
    words = [0x5375, 0x6E53]
    for model in models:
        words += model
    words += [0xFFFF, 0]
    return [SimData(base, values=words, datatype=SimType.REGISTERS)]


async def test_sunspec_meter_203_values_and_scale_factors(cb):
    async with meter_server(image(40000, [common_model(), meter_203()])) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}",
                                 id=1)
        reading = await read(cb, dev_id)
        assert reading is not None, cb.app.devices.get(dev_id).status.last_error
        info = await dev_info(cb, dev_id)
        assert {k: info[k] for k in ("current_l1", "current_l2", "current_l3", "voltage_l1",
                                     "voltage_l2", "voltage_l3", "power_w", "import",
                                     "export")} == {
            "current_l1": 10500, "current_l2": 8250, "current_l3": -500,
            "voltage_l1": 230, "voltage_l2": 231, "voltage_l3": 230,
            "power_w": 4200, "import": 12_345_600, "export": 321_500}
        assert info["model"] == "Fronius Smart Meter 63A,1.7.3,SN4711"
        driver = cb.app.devices.get(dev_id).driver
        assert driver.model.model_id == 203 and driver.model.address == 40070
        # the scale factor changes: the next read applies it
        await write(port, 40070 + 22, [0])
        reading = await read(cb, dev_id)
        assert reading is not None and reading.power_w == 420


async def test_sunspec_inverter_found_at_base_50000(cb):
    async with meter_server(image(50000, [common_model(), inverter_103()])) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}")
        reading = await read(cb, dev_id)
        assert reading is not None, cb.app.devices.get(dev_id).status.last_error
        assert reading.power_w == 4000 and reading.import_wh == 9_876_543
        assert reading.currents_ma == (8700, 8600, 0)
        assert reading.voltages_v == (230, 231, 229)


async def test_no_sunspec_marker_is_a_com_error(cb):
    plain = [SimData(40000, values=[1, 2, 3, 4], datatype=SimType.REGISTERS)]
    async with meter_server(plain) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}")
        assert await read(cb, dev_id) is None
        assert "no SunSpec marker" in cb.app.devices.get(dev_id).status.last_error
