"""SunSpec inverters and meters (`meter_sunspec`): the model chain is discovered, not fixed.

A SunSpec device starts with the marker "SunS" (0x5375 0x6E53) at register 40000 (else 0, else
50000, as pysunspec2 tries them), followed by models back to back as `[ID, L, L registers]`,
ended by ID 0xFFFF. The driver walks that chain once (again after a COM error), reads the
common model 1 once for the model string (manufacturer Mn, model Md, version Vr, serial SN),
and then each read fetches one whole model: the first meter model (201–204) if there is one,
else the first inverter model (101–103). Values are `raw × 10^sf` with the model's int16 scale
factors, decoded by the one codec; "not implemented" markers (int16 0x8000, uint16 0xFFFF,
scale factor 0x8000) count as absent.

Signs: a SunSpec meter's power is positive for import (as chargebrain's meters); an
inverter's power is its production, positive, with its lifetime energy as `import_wh` (the
original's rule for unidirectional meters). Currents take the sign of their phase's power.
Offsets below are relative to the model's ID register (research/protocols.md §2.5).
"""

from __future__ import annotations

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
METER_MODELS = (201, 202, 203, 204)
INVERTER_MODELS = (101, 102, 103)
NOT_IMPLEMENTED = {DataType.S16: 0x8000, DataType.U16: 0xFFFF}

# name → (offset, type, offset of its scale factor) per model family; target units V, mA, W, Wh
METER_POINTS = {
    "current_l1": (3, DataType.S16, 6), "current_l2": (4, DataType.S16, 6),
    "current_l3": (5, DataType.S16, 6),
    "voltage_l1": (8, DataType.S16, 15), "voltage_l2": (9, DataType.S16, 15),
    "voltage_l3": (10, DataType.S16, 15),
    "power_w": (18, DataType.S16, 22), "power_w_l1": (19, DataType.S16, 22),
    "power_w_l2": (20, DataType.S16, 22), "power_w_l3": (21, DataType.S16, 22),
    "export_wh": (38, DataType.U32, 54), "import_wh": (46, DataType.U32, 54),
}
INVERTER_POINTS = {
    "current_l1": (3, DataType.U16, 6), "current_l2": (4, DataType.U16, 6),
    "current_l3": (5, DataType.U16, 6),
    "voltage_l1": (10, DataType.U16, 13), "voltage_l2": (11, DataType.U16, 13),
    "voltage_l3": (12, DataType.U16, 13),
    "power_w": (14, DataType.S16, 15), "import_wh": (24, DataType.U32, 26),
}
MILLI = {"current_l1", "current_l2", "current_l3"}
SUNSPEC = MeterDefinition(name="meter_sunspec", rtype=0, label="SunSpec")  # for meter_reading


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
        self._identity: dict[str, Value] = {}

    @property
    def model(self) -> Model | None:
        """The model read each time (None until discovered)."""
        return self._device

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
        if self._device is None:
            await self._discover()
        device = self._device
        assert device is not None
        try:
            words = await self._read(device.address, device.length + 2)
        except DeviceError:
            self._device = None  # walk the chain again: the device may have been replaced
            raise
        if words[0] != device.model_id:
            self._device = None
            raise DeviceError(f"model {device.model_id} moved: the SunSpec chain changed")
        points = METER_POINTS if device.model_id in METER_MODELS else INVERTER_POINTS
        values: dict[str, Value] = dict(self._identity)
        for name, (offset, kind, sf_offset) in points.items():
            value = _point(words, offset, kind, sf_offset)
            if value is not None:
                values[name] = value * 1000 if name in MILLI else value
        return meter_reading(SUNSPEC, values, self.voltage_v)

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
        if device is None:
            found = ", ".join(str(m.model_id) for m in models) or "none"
            raise DeviceError(f"no SunSpec meter or inverter model (models: {found})")
        common = next((m for m in models if m.model_id == COMMON), None)
        self._identity = await self._read_common(common) if common is not None else {}
        self._device = device

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


def _point(words: list[int], offset: int, kind: DataType, sf_offset: int) -> float | None:
    """`raw × 10^sf`, or None when the point or its scale factor is not implemented."""
    size = 2 if kind is DataType.U32 else 1
    if offset + size > len(words) or sf_offset >= len(words):
        return None
    raw_words = words[offset:offset + size]
    if kind in NOT_IMPLEMENTED and raw_words[0] == NOT_IMPLEMENTED[kind]:
        return None
    if words[sf_offset] == 0x8000:
        return None
    scale = int(decode([words[sf_offset]], DataType.S16))
    if abs(scale) > 10:
        return None
    value = decode(raw_words, kind, scale=scale)
    assert not isinstance(value, str)
    return float(value)
