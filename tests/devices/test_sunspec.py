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


# what the meter models 203 and 213 of these tests hold, as get_dev_info shows it
METER_VALUES = {"current_l1": 10500, "current_l2": 8250, "current_l3": -500,
                "voltage_l1": 230, "voltage_l2": 231, "voltage_l3": 230,
                "power_w": 4200, "import": 12_345_600, "export": 321_500}


async def test_sunspec_meter_203_values_and_scale_factors(cb):
    async with meter_server(image(40000, [common_model(), meter_203()])) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}",
                                 id=1)
        reading = await read(cb, dev_id)
        assert reading is not None, cb.app.devices.get(dev_id).status.last_error
        info = await dev_info(cb, dev_id)
        assert {k: info[k] for k in METER_VALUES} == METER_VALUES
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


# -- float models and storage, in a real model chain --------------------------------------------


def f32(value: float) -> list[int]:
    return encode(value, DataType.F32)


def filler(model_id: int, length: int) -> list[int]:
    """A model the driver walks past (nameplate, settings, status, controls, MPPT)."""
    return [model_id, length, *([0] * length)]


def inverter_113() -> list[int]:
    m = [113, 60, *([0] * 60)]
    m[2:4] = f32(26.1)                   # A (total, not used)
    m[4:10] = [*f32(8.7), *f32(8.6), *f32(8.8)]             # AphA..C
    m[16:22] = [*f32(230.4), *f32(231.6), *f32(229.2)]      # PhVphA..C
    m[22:24] = f32(6012.5)               # W
    m[24:26] = f32(50.01)                # Hz
    m[32:34] = f32(12_345_678.0)         # WH
    m[48] = 4                            # St: MPPT
    return m


def storage_124(cha_state: int, cha_state_sf: int, cha_st: int) -> list[int]:
    m = [124, 24, *([0] * 24)]
    m[2] = 5000                          # WChaMax
    m[8] = cha_state                     # ChaState
    m[10] = 512                          # InBatV
    m[11] = cha_st                       # ChaSt
    m[18] = 0                            # WChaMax_SF
    m[22] = s16(cha_state_sf)            # ChaState_SF
    m[24] = s16(-1)                      # InBatV_SF
    return m


def meter_213() -> list[int]:
    m = [213, 124, *([0] * 124)]
    m[2:4] = f32(19.25)
    m[4:10] = [*f32(10.5), *f32(8.25), *f32(0.5)]           # AphA..C
    m[12:18] = [*f32(230.1), *f32(231.4), *f32(229.6)]      # PhVphA..C
    m[26:28] = f32(49.98)
    m[28:36] = [*f32(4200.0), *f32(2415.0), *f32(1900.0), *f32(-115.0)]  # W, WphA..C
    m[60:62] = f32(321_500.0)            # TotWhExp
    m[68:70] = f32(12_345_600.0)         # TotWhImp
    m[76:78] = [0x7FC0, 0]               # TotVAhExp: NaN, not implemented
    return m


def hybrid_chain(cha_state: int = 5432, sf: int = -2, cha_st: int = 4) -> list[list[int]]:
    """A hybrid inverter in float mode, as Fronius/SMA lay it out: common, inverter 113,
    nameplate 120, settings 121, status 122, controls 123, storage 124, MPPT 160."""
    return [common_model(), inverter_113(), filler(120, 26), filler(121, 30),
            filler(122, 44), filler(123, 24), storage_124(cha_state, sf, cha_st),
            filler(160, 48)]


async def test_float_inverter_113_with_storage_124_in_a_hybrid_chain(cb):
    async with meter_server(image(40000, hybrid_chain())) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}",
                                 role=6)
        reading = await read(cb, dev_id)
        assert reading is not None, cb.app.devices.get(dev_id).status.last_error
        assert reading.currents_ma == (8700, 8600, 8800)
        assert reading.voltages_v == (230, 232, 229)
        assert reading.power_w == 6012 and reading.import_wh == 12_345_678
        assert reading.soc == 54  # 5432 × 10^-2 %
        driver = cb.app.devices.get(dev_id).driver
        assert (driver.model.model_id, driver.model.address) == (113, 40070)
        assert (driver.storage.model_id, driver.storage.address) == (124, 40070 + 62 + 28 + 32
                                                                     + 46 + 26)
        assert driver.charge_state == "charging"
        info = await dev_info(cb, dev_id)
        assert info["power_w"] == 6012 and info["model"].startswith("Fronius")
        # the battery's state changes: the next read shows it
        storage = driver.storage.address
        await write(port, storage + 8, [870])
        await write(port, storage + 11, [3])
        await write(port, storage + 22, [s16(-1)])
        reading = await read(cb, dev_id)
        assert reading is not None and reading.soc == 87 and driver.charge_state == "discharging"


async def test_float_meter_213_preferred_over_the_inverter(cb):
    chain = [common_model(), inverter_113(), filler(120, 26), meter_213()]
    async with meter_server(image(40000, chain)) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}")
        reading = await read(cb, dev_id)
        assert reading is not None, cb.app.devices.get(dev_id).status.last_error
        info = await dev_info(cb, dev_id)
        assert {k: info[k] for k in METER_VALUES} == METER_VALUES
        driver = cb.app.devices.get(dev_id).driver
        assert driver.model.model_id == 213 and driver.storage is None
        # a model of 126 registers is more than one request carries: read in two
        await write(port, driver.model.address + 28, f32(-3000.0))
        reading = await read(cb, dev_id)
        assert reading is not None and reading.power_w == -3000


async def test_a_battery_with_storage_model_only_reports_its_state_of_charge(cb):
    chain = [common_model(), storage_124(65, 0, 6)]
    async with meter_server(image(0, chain)) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}")
        reading = await read(cb, dev_id)
        assert reading is not None, cb.app.devices.get(dev_id).status.last_error
        assert reading.soc == 65 and reading.power_w == 0
        assert cb.app.devices.get(dev_id).driver.charge_state == "holding"


async def test_a_chain_without_usable_models_names_what_it_found(cb):
    chain = [common_model(), filler(120, 26), filler(160, 48)]
    async with meter_server(image(40000, chain)) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}")
        assert await read(cb, dev_id) is None
        assert "(models: 1, 120, 160)" in cb.app.devices.get(dev_id).status.last_error


def battery_802(soc: int, soc_sf: int, cha_st: int) -> list[int]:
    m = [802, 62, *([0] * 62)]
    m[2] = 1000                          # AHRtg
    m[3] = 5000                          # WHRtg
    m[11] = soc                          # SoC
    m[16] = cha_st                       # ChaSt
    m[34] = 518                          # V
    m[56] = s16(soc_sf)                  # SoC_SF
    return m


async def test_battery_model_802_when_there_is_no_storage_model(cb):
    chain = [common_model(), inverter_113(), filler(120, 26), filler(160, 48),
             battery_802(755, -1, 3)]
    async with meter_server(image(40000, chain)) as (port, _):
        dev_id = await add_meter(cb, dev_type="meter_sunspec", address=f"127.0.0.1:{port}",
                                 role=6)
        reading = await read(cb, dev_id)
        assert reading is not None, cb.app.devices.get(dev_id).status.last_error
        assert reading.soc == 76 and reading.power_w == 6012  # 75.5 % rounds to 76
        driver = cb.app.devices.get(dev_id).driver
        assert driver.storage.model_id == 802 and driver.charge_state == "discharging"
