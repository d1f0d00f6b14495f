"""`modbus_get` / `modbus_set`: read or write registers of any Modbus TCP device (admin).

`addr=IP:port&func=3|4 (get) or 6|16 (set)&id=<unit>&reg=<decimal or 0x…>[&val=…]
[&type=w|d|f|q|s][&cnt=<registers of a string>][&order=hl|lh]`. Reads answer the value (a
number, or a string for `s`), writes answer "ok". A failing device is HTTP 400
`"modbus error: …"` (never a 5xx). Encoding and I/O live in chargebrain/modbus_generic.py.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import ApiError, bad_request
from chargebrain.modbus_generic import (
    MAX_READ_REGS,
    MAX_WRITE_REGS,
    READ_FUNCTIONS,
    TYPES,
    WRITE_FUNCTIONS,
    ModbusAccessError,
    ReadRequest,
    Target,
    WriteRequest,
    check_value,
    decode,
    encode,
    parse_target,
    read_registers,
    register_count,
    write_registers,
)

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain


def _target(req: ApiRequest) -> Target:
    try:
        return parse_target(req.required_text("addr"))
    except ModbusAccessError as err:
        raise bad_request(str(err)) from None


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


def _order(req: ApiRequest) -> str:
    order = (req.text("order", "hl") or "hl").strip().lower()
    if order not in ("hl", "lh"):
        raise bad_request("order must be hl or lh")
    return order


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


def _fits(address: int, count: int) -> None:
    if address + count > 0x10000:
        raise bad_request("reg + registers exceed 65535")


async def modbus_get(app: ChargeBrain, req: ApiRequest) -> Any:
    """Read one typed value from a Modbus TCP device."""
    target = _target(req)
    func = _func(req, READ_FUNCTIONS, 3, "modbus_get reads")
    kind = _kind(req)
    order = _order(req)
    address = _register(req)
    unit_id = _unit_id(req)
    count = register_count(kind, _cnt(req, kind, MAX_READ_REGS) or 1)
    _fits(address, count)
    try:
        words = await read_registers(ReadRequest(target, unit_id, func, address, count))
    except ModbusAccessError as err:
        raise ApiError(str(err), 400) from None
    return decode(kind, words, order=order)


async def modbus_set(app: ChargeBrain, req: ApiRequest) -> str:
    """Write one typed value to a Modbus TCP device."""
    target = _target(req)
    kind = _kind(req)
    func = _func(req, WRITE_FUNCTIONS, 6 if kind == "w" else 16, "modbus_set writes")
    order = _order(req)
    address = _register(req)
    unit_id = _unit_id(req)
    cnt = _cnt(req, kind, MAX_WRITE_REGS)
    value = _value(req, kind)
    try:
        count = check_value(kind, value, cnt)
    except ModbusAccessError as err:
        raise bad_request(str(err)) from None
    if func == 6 and count != 1:
        raise bad_request(f"func 6 writes one register; type {kind} needs {count}: "
                          "use func=16")
    _fits(address, count)
    words = encode(kind, value, order=order, cnt=count)
    try:
        await write_registers(WriteRequest(target, unit_id, func, address, tuple(words)))
    except ModbusAccessError as err:
        raise ApiError(str(err), 400) from None
    return "ok"


COMMANDS: dict[str, Command] = {
    "modbus_get": Command(modbus_get, Access.ADMIN),
    "modbus_set": Command(modbus_set, Access.ADMIN),
}
