"""`modbus_get` / `modbus_set`: read or write registers of any Modbus TCP device (admin).

`addr=IP:port&func=3|4 (get) or 6|16 (set)&id=<unit>&reg=<decimal or 0x…>[&val=…]
[&type=w|d|f|q|s][&cnt=<registers of a string>][&order=hl|lh]`. Reads answer the value (a
number, or a string for `s`), writes answer "ok". A failing device is HTTP 400
`"modbus error: …"` (never a 5xx). Encoding and I/O are chargebrain.modbus (codec, shared
client); this module maps the API's type letters onto the codec's types.
- `w` one register: reads unsigned, writes −32768…65535 (two's complement);
- `d` 32-bit over 2 registers, `q` 64-bit over 4: read signed, written signed or unsigned;
- `f` float32 over 2 registers; `s` a UTF-8 string over `cnt` registers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import ApiError, bad_request
from chargebrain.modbus import codec
from chargebrain.modbus.address import DEFAULT_PORT, AddressError, Endpoint, parse_host_port
from chargebrain.modbus.batch import MAX_READ_REGISTERS
from chargebrain.modbus.client import (
    MAX_WRITE_REGISTERS,
    READ_HOLDING,
    READ_INPUT,
    WRITE_MULTIPLE,
    WRITE_SINGLE,
    ModbusError,
    shared_pool,
)
from chargebrain.modbus.codec import DataType, WordOrder

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain


READ_FUNCTIONS = (READ_HOLDING, READ_INPUT)
WRITE_FUNCTIONS = (WRITE_SINGLE, WRITE_MULTIPLE)
TYPES = {"w": DataType.U16, "d": DataType.S32, "f": DataType.F32, "q": DataType.S64,
         "s": DataType.STR}  # the type a read decodes
UNSIGNED = {"w": DataType.U16, "d": DataType.U32, "q": DataType.U64}  # writes above signed max
SIGNED = {"w": DataType.S16, "d": DataType.S32, "q": DataType.S64}
FLOAT32_MAX = 3.4028234663852886e38


def _target(req: ApiRequest) -> Endpoint:
    try:
        return parse_host_port(req.required_text("addr"), DEFAULT_PORT)
    except AddressError as err:
        if err.problem == "serial":
            raise bad_request(str(err)) from None
        if err.problem == "port":
            raise bad_request(f"bad addr: {err}") from None
        raise bad_request("bad addr: use IP:port") from None


def _register(req: ApiRequest) -> int:
    raw = req.required_text("reg").strip()
    try:
        value = int(raw, 16) if raw[:2].lower() == "0x" else int(raw, 10)
    except ValueError:
        raise bad_request("reg must be a register number (decimal or 0x…)") from None
    if not 0 <= value <= 0xFFFF:
        raise bad_request("reg must be 0 to 65535")
    return value


def _kind(req: ApiRequest) -> str:
    kind = (req.text("type", "w") or "w").strip().lower()
    if kind not in TYPES:
        raise bad_request("type must be w, d, f, q or s")
    return kind


def _order(req: ApiRequest) -> WordOrder:
    order = (req.text("order", "hl") or "hl").strip().lower()
    if order not in ("hl", "lh"):
        raise bad_request("order must be hl or lh")
    return WordOrder(order)


def _cnt(req: ApiRequest, kind: str, most: int) -> int | None:
    cnt = req.integer("cnt")
    if cnt is None:
        return None
    if kind != "s":
        if cnt != 1:
            raise bad_request("cnt is the length of a string (type=s); omit it or use 1")
        return None
    if not 1 <= cnt <= most:
        raise bad_request(f"cnt must be 1 to {most}")
    return cnt


def _func(req: ApiRequest, allowed: tuple[int, ...], default: int, verb: str) -> int:
    func = req.integer("func", default)
    assert func is not None
    if func not in allowed:
        raise bad_request(f"{verb}: func must be {' or '.join(map(str, allowed))}")
    return func


def _value(req: ApiRequest, kind: str) -> int | float | str:
    raw = req.text("val")
    if raw is None:
        raise bad_request("missing parameter val")
    if kind == "s":
        return raw
    text = raw.strip()
    if kind == "f":
        try:
            number = float(text)
        except ValueError:
            raise bad_request("val must be a number") from None
        if not math.isfinite(number):
            raise bad_request("val must be a finite number")
        return number
    if text[:2].lower() == "0x" or text[:3].lower() == "-0x":
        try:
            return int(text, 16)
        except ValueError:
            raise bad_request("val must be a whole number") from None
    try:
        number = float(text) if any(c in text for c in ".eE") else int(text, 10)
    except ValueError:
        raise bad_request("val must be a whole number") from None
    if isinstance(number, float):
        if not math.isfinite(number) or number != int(number):
            raise bad_request("val must be a whole number")
        number = int(number)
    return number


def _unit_id(req: ApiRequest) -> int:
    unit_id = req.integer("id", 1, lo=0, hi=255)
    assert unit_id is not None
    return unit_id


def _write_type(kind: str, value: int | float | str) -> DataType:
    """The codec type a write of `value` uses; 400 when the API's range refuses it."""
    if kind in ("s", "f"):
        if kind == "f" and (not math.isfinite(value) or abs(value) > FLOAT32_MAX):  # type: ignore[arg-type]
            raise bad_request("val must be a finite number that fits a 32-bit float")
        return TYPES[kind]
    lo = codec.int_range(SIGNED[kind])[0]
    hi = codec.int_range(UNSIGNED[kind])[1]
    if not isinstance(value, int) or not lo <= value <= hi:
        raise bad_request(f"val out of range for type {kind}: {lo} to {hi}")
    return SIGNED[kind] if value < 0 else UNSIGNED[kind]


def _string_length(value: str, cnt: int | None) -> int:
    size = len(value.encode("utf-8"))
    length = codec.string_length(value) if cnt is None else cnt
    if size > length * 2:
        raise bad_request(f"val does not fit in {length} registers")
    if length > MAX_WRITE_REGISTERS:
        raise bad_request(f"a string may span at most {MAX_WRITE_REGISTERS} registers")
    return length


def _fits(address: int, count: int) -> None:
    if address + count > 0x10000:
        raise bad_request("reg + registers exceed 65535")


async def modbus_get(app: ChargeBrain, req: ApiRequest) -> Any:
    """Read one typed value from a Modbus TCP device."""
    target = _target(req)
    func = _func(req, READ_FUNCTIONS, READ_HOLDING, "modbus_get reads")
    kind = _kind(req)
    order = _order(req)
    address = _register(req)
    unit_id = _unit_id(req)
    count = codec.register_count(TYPES[kind], _cnt(req, kind, MAX_READ_REGISTERS) or 1)
    _fits(address, count)
    try:
        async with shared_pool().lease(target) as conn:
            words = await conn.read(unit_id, address, count, func=func)
    except ModbusError as err:
        raise ApiError(f"modbus error: {err}", 400) from None
    value = codec.decode(words, TYPES[kind], order)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


async def modbus_set(app: ChargeBrain, req: ApiRequest) -> str:
    """Write one typed value to a Modbus TCP device."""
    target = _target(req)
    kind = _kind(req)
    func = _func(req, WRITE_FUNCTIONS, WRITE_SINGLE if kind == "w" else WRITE_MULTIPLE,
                 "modbus_set writes")
    order = _order(req)
    address = _register(req)
    unit_id = _unit_id(req)
    cnt = _cnt(req, kind, MAX_WRITE_REGISTERS)
    value = _value(req, kind)
    data_type = _write_type(kind, value)
    length = _string_length(value, cnt) if isinstance(value, str) else None
    count = codec.register_count(data_type, length)
    if func == WRITE_SINGLE and count != 1:
        raise bad_request(f"func 6 writes one register; type {kind} needs {count}: "
                          "use func=16")
    _fits(address, count)
    try:
        words = codec.encode(value, data_type, order, length=length)
    except codec.CodecError as err:  # a NUL inside a string
        raise bad_request(f"val: {err}") from None
    try:
        async with shared_pool().lease(target) as conn:
            await conn.write(unit_id, address, words, func=func)
    except ModbusError as err:
        raise ApiError(f"modbus error: {err}", 400) from None
    return "ok"


COMMANDS: dict[str, Command] = {
    "modbus_get": Command(modbus_get, Access.ADMIN),
    "modbus_set": Command(modbus_set, Access.ADMIN),
}
