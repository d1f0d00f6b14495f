"""SunSpec inverters and meters (`meter_sunspec`): the model chain is discovered, not fixed.

A SunSpec device starts with the marker "SunS" (0x5375 0x6E53) at register 40000 (else 0, else
50000, as pysunspec2 tries them), followed by models back to back as `[ID, L, L registers]`,
ended by ID 0xFFFF. The driver walks that chain once (again after a COM error), reads the
common model 1 once for the model string (manufacturer Mn, model Md, version Vr, serial SN),
and then each read fetches whole models: the first meter model (201–204 integer + scale factor,
211–214 float) if there is one, else the first inverter model (101–103, 111–113 float), and the
storage model 124 if there is one, else the battery model 802 (124's ChaState or 802's SoC is
the reading's `soc`, ChaSt the driver's `charge_state`; a battery with only such a model is
read for its state of charge). Integer values
are `raw × 10^sf` with the model's int16 scale factors, float models' values are float32 as
they are, all decoded by the one codec; "not implemented" markers (int16 0x8000, uint16
0xFFFF, scale factor 0x8000, float32 NaN) count as absent.

Signs: a SunSpec meter's power is positive for import (as chargebrain's meters); an
inverter's power is its production, positive, with its lifetime energy as `import_wh` (the
original's rule for unidirectional meters). Currents take the sign of their phase's power.
Offsets below are relative to the model's ID register (research/protocols.md §2.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chargebrain.devices.base import DeviceError, MeterReading
from chargebrain.devices.definitions import MeterDefinition
from chargebrain.devices.drivers.defined import Value, meter_reading
from chargebrain.modbus.address import AnyEndpoint
from chargebrain.modbus.batch import Span
from chargebrain.modbus.client import (
    Connection,
    ModbusDeviceError,
    ModbusError,
    ModbusPool,
    shared_pool,
)
from chargebrain.modbus.codec import DataType, decode

MARKER = [0x5375, 0x6E53]  # "SunS"
BASES = (40000, 0, 50000)
END_ID = 0xFFFF
MAX_MODELS = 64
COMMON = 1
STORAGE = 124
BATTERY = 802
INT_METER_MODELS = (201, 202, 203, 204)
FLOAT_METER_MODELS = (211, 212, 213, 214)
INT_INVERTER_MODELS = (101, 102, 103)
FLOAT_INVERTER_MODELS = (111, 112, 113)
METER_MODELS = INT_METER_MODELS + FLOAT_METER_MODELS
INVERTER_MODELS = INT_INVERTER_MODELS + FLOAT_INVERTER_MODELS
NOT_IMPLEMENTED = {DataType.S16: 0x8000, DataType.U16: 0xFFFF}
CHARGE_STATES = {1: "off", 2: "empty", 3: "discharging", 4: "charging", 5: "full",
                 6: "holding", 7: "testing"}  # model 124 ChaSt

# name → (offset, type, offset of its scale factor or None for float models); target units
# V, mA, W, Wh; offsets from the model's ID register
Points = dict[str, tuple[int, DataType, int | None]]
INT_METER_POINTS: Points = {
    "current_l1": (3, DataType.S16, 6), "current_l2": (4, DataType.S16, 6),
    "current_l3": (5, DataType.S16, 6),
    "voltage_l1": (8, DataType.S16, 15), "voltage_l2": (9, DataType.S16, 15),
    "voltage_l3": (10, DataType.S16, 15),
    "power_w": (18, DataType.S16, 22), "power_w_l1": (19, DataType.S16, 22),
    "power_w_l2": (20, DataType.S16, 22), "power_w_l3": (21, DataType.S16, 22),
    "export_wh": (38, DataType.U32, 54), "import_wh": (46, DataType.U32, 54),
}
FLOAT_METER_POINTS: Points = {  # 211–214: every point a float32, no scale factors
    "current_l1": (4, DataType.F32, None), "current_l2": (6, DataType.F32, None),
    "current_l3": (8, DataType.F32, None),
    "voltage_l1": (12, DataType.F32, None), "voltage_l2": (14, DataType.F32, None),
    "voltage_l3": (16, DataType.F32, None),
    "power_w": (28, DataType.F32, None), "power_w_l1": (30, DataType.F32, None),
    "power_w_l2": (32, DataType.F32, None), "power_w_l3": (34, DataType.F32, None),
    "export_wh": (60, DataType.F32, None), "import_wh": (68, DataType.F32, None),
}
INT_INVERTER_POINTS: Points = {
    "current_l1": (3, DataType.U16, 6), "current_l2": (4, DataType.U16, 6),
    "current_l3": (5, DataType.U16, 6),
    "voltage_l1": (10, DataType.U16, 13), "voltage_l2": (11, DataType.U16, 13),
    "voltage_l3": (12, DataType.U16, 13),
    "power_w": (14, DataType.S16, 15), "import_wh": (24, DataType.U32, 26),
}
FLOAT_INVERTER_POINTS: Points = {  # 111–113
    "current_l1": (4, DataType.F32, None), "current_l2": (6, DataType.F32, None),
    "current_l3": (8, DataType.F32, None),
    "voltage_l1": (16, DataType.F32, None), "voltage_l2": (18, DataType.F32, None),
    "voltage_l3": (20, DataType.F32, None),
    "power_w": (22, DataType.F32, None), "import_wh": (32, DataType.F32, None),
}
STORAGE_POINTS: Points = {"soc": (8, DataType.U16, 22)}  # 124 ChaState, % of capacity
BATTERY_POINTS: Points = {"soc": (11, DataType.U16, 56)}  # 802 SoC, %
STATE_OFFSET = {STORAGE: 11, BATTERY: 16}  # ChaSt (enum16), the same values in both
MILLI = {"current_l1", "current_l2", "current_l3"}
SUNSPEC = MeterDefinition(name="meter_sunspec", rtype=0, label="SunSpec")  # for meter_reading


def points_of(model_id: int) -> Points:
    """The points read from a meter or inverter model."""
    if model_id in INT_METER_MODELS:
        return INT_METER_POINTS
    if model_id in FLOAT_METER_MODELS:
        return FLOAT_METER_POINTS
    if model_id in INT_INVERTER_MODELS:
        return INT_INVERTER_POINTS
    return FLOAT_INVERTER_POINTS


@dataclass(frozen=True, slots=True)
class Model:
    """One model of the chain: its ID, the address of its ID register, its length L."""

    model_id: int
    address: int
    length: int


class SunSpecMeter:
    """A SunSpec inverter or meter over Modbus TCP."""

    def __init__(self, endpoint: AnyEndpoint, unit: int, timeout_s: float, *, voltage_v: int,
                 pool: ModbusPool | None = None) -> None:
        self.endpoint, self.unit, self.timeout_s = endpoint, unit, timeout_s
        self.voltage_v = voltage_v
        self._pool = pool
        self._conn: Connection | None = None
        self._device: Model | None = None
        self._storage: Model | None = None
        self._identity: dict[str, Value] = {}
        self.charge_state: str | None = None  # model 124 ChaSt ("charging", …), when read

    @property
    def model(self) -> Model | None:
        """The meter or inverter model read each time (None until discovered)."""
        return self._device

    @property
    def storage(self) -> Model | None:
        """The storage (124) or battery (802) model read each time, if the device has one."""
        return self._storage

    def _connection(self) -> Connection:
        if self._pool is None:
            self._pool = shared_pool()
        if self._conn is None:
            self._conn = self._pool.acquire(self.endpoint)
        return self._conn

    async def _read(self, address: int, count: int) -> list[int]:
        try:
            (words,) = await self._connection().read_spans(
                self.unit, [Span(address, count)], timeout_s=self.timeout_s)
        except ModbusError as err:
            raise DeviceError(str(err)) from None
        return words

    async def read(self, now_s: float) -> MeterReading:
        if self._device is None and self._storage is None:
            await self._discover()
        values: dict[str, Value] = dict(self._identity)
        try:
            for model in (self._device, self._storage):
                if model is not None:
                    values.update(self._values(model, await self._model_words(model)))
        except DeviceError:
            # walk the chain again next time: the device may have been replaced
            self._device = self._storage = None
            raise
        return meter_reading(SUNSPEC, values, self.voltage_v)

    async def _model_words(self, model: Model) -> list[int]:
        words = await self._read(model.address, model.length + 2)
        if words[0] != model.model_id:
            raise DeviceError(f"model {model.model_id} moved: the SunSpec chain changed")
        return words

    def _values(self, model: Model, words: list[int]) -> dict[str, Value]:
        if model.model_id in STATE_OFFSET:
            offset = STATE_OFFSET[model.model_id]
            state = words[offset] if len(words) > offset else 0
            self.charge_state = CHARGE_STATES.get(state)
            points = STORAGE_POINTS if model.model_id == STORAGE else BATTERY_POINTS
        else:
            points = points_of(model.model_id)
        values: dict[str, Value] = {}
        for name, (offset, kind, sf_offset) in points.items():
            value = _point(words, offset, kind, sf_offset)
            if value is not None:
                values[name] = value * 1000 if name in MILLI else value
        return values

    async def _discover(self) -> None:
        base = await self._find_base()
        models: list[Model] = []
        address = base + 2
        for _ in range(MAX_MODELS):
            model_id, length = await self._read(address, 2)
            if model_id == END_ID:
                break
            models.append(Model(model_id, address, length))
            address += 2 + length
            if address > 0xFFFF:
                break
        device = next((m for m in models if m.model_id in METER_MODELS), None) or next(
            (m for m in models if m.model_id in INVERTER_MODELS), None)
        storage = next((m for m in models if m.model_id == STORAGE), None) or next(
            (m for m in models if m.model_id == BATTERY), None)
        if device is None and storage is None:
            found = ", ".join(str(m.model_id) for m in models) or "none"
            raise DeviceError(f"no SunSpec meter, inverter or storage model (models: {found})")
        common = next((m for m in models if m.model_id == COMMON), None)
        self._identity = await self._read_common(common) if common is not None else {}
        self._device, self._storage = device, storage

    async def _find_base(self) -> int:
        for base in BASES:
            try:
                words = await self._connection().read(self.unit, base, 2,
                                                      timeout_s=self.timeout_s)
            except ModbusDeviceError:
                continue  # no registers there: try the next base
            except ModbusError as err:
                raise DeviceError(str(err)) from None
            if words == MARKER:
                return base
        raise DeviceError("no SunSpec marker at 40000, 0 or 50000")

    async def _read_common(self, common: Model) -> dict[str, Value]:
        words = await self._read(common.address, min(common.length, 66) + 2)

        def text(offset: int, length: int) -> str:
            chunk = words[offset:offset + length]
            return str(decode(chunk, DataType.STR)).strip() if len(chunk) == length else ""

        maker, model = text(2, 16), text(18, 16)
        out: dict[str, Value] = {"type_designation": f"{maker} {model}".strip()}
        if text(42, 8):
            out["version"] = text(42, 8)
        if text(50, 16):
            out["serial"] = text(50, 16)
        return out

    async def close(self) -> None:
        if self._conn is not None and self._pool is not None:
            self._pool.release(self._conn)
            self._conn = None


def _point(words: list[int], offset: int, kind: DataType, sf_offset: int | None
           ) -> float | None:
    """`raw × 10^sf` (a float32 as it is), or None when the point or its scale factor is not
    implemented (float32: NaN)."""
    size = {DataType.U32: 2, DataType.F32: 2}.get(kind, 1)
    if offset + size > len(words) or (sf_offset is not None and sf_offset >= len(words)):
        return None
    raw_words = words[offset:offset + size]
    if kind in NOT_IMPLEMENTED and raw_words[0] == NOT_IMPLEMENTED[kind]:
        return None
    if sf_offset is None:
        value = decode(raw_words, kind)
        assert not isinstance(value, str)
        return float(value) if math.isfinite(value) else None
    if words[sf_offset] == 0x8000:
        return None
    scale = int(decode([words[sf_offset]], DataType.S16))
    if abs(scale) > 10:
        return None
    value = decode(raw_words, kind, scale=scale)
    assert not isinstance(value, str)
    return float(value)
