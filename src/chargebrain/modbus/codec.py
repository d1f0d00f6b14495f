"""The one Modbus register codec: typed values ↔ 16-bit registers.

Pure functions, no I/O. Used by the Power Brain register bank (server side), the remote Power
Brain driver and `modbus_get`/`modbus_set` (client side). See docs/modbus.md.

- Types: `u16 s16 u32 s32 u64 s64` (two's complement for the signed ones), `f32 f64` (IEEE 754),
  `str`. Integers and floats span 1, 2 or 4 registers; a string spans `length` registers.
- Word order: `hl` (default) puts the most significant register first (Modbus' own big-endian
  convention); `lh` puts the least significant register first. Inside every register the high
  byte comes first, as on the wire.
- Strings are UTF-8, two bytes per register, NUL-padded to `length` registers and read up to the
  first NUL. `hl` puts the first byte in each register's high byte, `lh` in its low byte (the
  byte-swapped strings some devices use). A NUL inside a string cannot round-trip and is
  refused; bytes that are not UTF-8 decode as U+FFFD (a device may hold anything).
- Scale: integer types only; the value is `raw × 10^scale` (SunSpec's scale factor). With
  `scale >= 0` a decoded value is an int, with `scale < 0` a float; encoding rounds to the
  nearest step (ties to even) and refuses what no raw value represents.
- A decoded `f32` is the shortest decimal that is the same float32 (`0.1`, not
  `0.10000000149011612`), so it encodes back to the same registers.
"""

from __future__ import annotations

import contextlib
import math
import struct
from enum import StrEnum
from fractions import Fraction


class DataType(StrEnum):
    U16 = "u16"
    S16 = "s16"
    U32 = "u32"
    S32 = "s32"
    U64 = "u64"
    S64 = "s64"
    F32 = "f32"
    F64 = "f64"
    STR = "str"


class WordOrder(StrEnum):
    HIGH_FIRST = "hl"
    LOW_FIRST = "lh"


class CodecError(ValueError):
    """A value or register list that the requested type cannot carry."""


INT_TYPES: dict[DataType, tuple[int, bool]] = {  # registers, signed
    DataType.U16: (1, False), DataType.S16: (1, True),
    DataType.U32: (2, False), DataType.S32: (2, True),
    DataType.U64: (4, False), DataType.S64: (4, True),
}
FLOAT_TYPES: dict[DataType, tuple[int, str]] = {DataType.F32: (2, ">f"), DataType.F64: (4, ">d")}
MAX_SCALE = 20  # |scale|: SunSpec uses -10…10; more is a configuration mistake


def int_bounds(size: int, signed: bool) -> tuple[int, int]:
    """The (lowest, highest) integer `size` registers hold."""
    bits = 16 * size
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def int_range(kind: DataType) -> tuple[int, int]:
    """The raw values (lowest, highest) an integer type holds."""
    return int_bounds(*INT_TYPES[kind])


def encode_int(raw: int, size: int, signed: bool,
               word_order: WordOrder = WordOrder.HIGH_FIRST) -> list[int]:
    """A raw integer as `size` registers (two's complement when signed); any size ≥ 1."""
    lo, hi = int_bounds(size, signed)
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise CodecError(f"{raw} does not fit in {size} registers "
                         f"({'signed' if signed else 'unsigned'})")
    raw &= (1 << (16 * size)) - 1
    return _order([(raw >> (16 * (size - 1 - i))) & 0xFFFF for i in range(size)], word_order)


def decode_int(registers: list[int], signed: bool,
               word_order: WordOrder = WordOrder.HIGH_FIRST) -> int:
    """The raw integer held by `registers` (any count ≥ 1)."""
    words = _checked(registers)
    if not words:
        raise CodecError("an integer needs at least 1 register")
    raw_bytes = b"".join(w.to_bytes(2, "big") for w in _order(words, word_order))
    return int.from_bytes(raw_bytes, "big", signed=signed)


def register_count(kind: DataType, length: int | None = None) -> int:
    """How many registers a value of `kind` spans (`length` is a string's register count)."""
    kind = _parse(kind, WordOrder.HIGH_FIRST)[0]
    if kind is DataType.STR:
        if length is None or length < 1:
            raise CodecError("a string needs a length of at least 1 register")
        return length
    if kind in INT_TYPES:
        return INT_TYPES[kind][0]
    return FLOAT_TYPES[kind][0]


def string_length(text: str) -> int:
    """The fewest registers that hold `text` (at least one)."""
    return max(1, (len(text.encode("utf-8")) + 1) // 2)


def encode(value: int | float | str, kind: DataType, word_order: WordOrder = WordOrder.HIGH_FIRST,
           scale: int = 0, *, length: int | None = None) -> list[int]:
    """The registers that carry `value`; CodecError if it does not fit.

    `length` (registers) is for strings only; without it a string takes `string_length`."""
    kind, word_order = _parse(kind, word_order)
    _check_scale(kind, scale)
    if kind is DataType.STR:
        if not isinstance(value, str):
            raise CodecError("a string value must be text")
        return _encode_str(value, length or string_length(value), word_order)
    if length is not None:
        raise CodecError("length is for strings only")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodecError(f"a {kind} value must be a number")
    if kind in FLOAT_TYPES:
        fmt = FLOAT_TYPES[kind][1]
        try:
            raw_bytes = struct.pack(fmt, float(value))
        except OverflowError:
            raise CodecError(f"{value} is too large for {kind}") from None
        return _order(_words(raw_bytes), word_order)
    raw = _unscale(value, scale, kind)
    lo, hi = int_range(kind)
    if not lo <= raw <= hi:
        raise CodecError(f"{value} does not fit in {kind}" +
                         (f" with scale {scale}" if scale else ""))
    return encode_int(raw, *INT_TYPES[kind], word_order)


def decode(registers: list[int] | tuple[int, ...], kind: DataType,
           word_order: WordOrder = WordOrder.HIGH_FIRST, scale: int = 0) -> int | float | str:
    """The value held by `registers`; CodecError for a wrong count or a word over 16 bits."""
    kind, word_order = _parse(kind, word_order)
    _check_scale(kind, scale)
    words = _checked(registers)
    if kind is DataType.STR:
        if not words:
            raise CodecError("a string needs at least 1 register")
        return _decode_str(words, word_order)
    size = register_count(kind)
    if len(words) != size:
        raise CodecError(f"{kind} spans {size} registers, got {len(words)}")
    if kind in FLOAT_TYPES:
        raw_bytes = b"".join(w.to_bytes(2, "big") for w in _order(words, word_order))
        number = struct.unpack(FLOAT_TYPES[kind][1], raw_bytes)[0]
        return shortest_float32(number) if kind is DataType.F32 else number
    raw = decode_int(words, INT_TYPES[kind][1], word_order)
    if scale >= 0:
        return raw * 10**scale
    return raw / 10**-scale


def shortest_float32(number: float) -> float:
    """The shortest decimal that is the same float32 (NaN and infinities unchanged)."""
    if not math.isfinite(number):
        return number
    packed = struct.pack(">f", number)
    for digits in range(1, 10):
        candidate = float(f"{number:.{digits}g}")
        with contextlib.suppress(OverflowError):  # rounded up past the largest float32
            if struct.pack(">f", candidate) == packed:
                return candidate
    return number


def _parse(kind: str, word_order: str) -> tuple[DataType, WordOrder]:
    try:
        data_type = DataType(kind)
    except ValueError:
        raise CodecError(f"unknown type {kind!r}: use {', '.join(DataType)}") from None
    try:
        return data_type, WordOrder(word_order)
    except ValueError:
        raise CodecError(f"unknown word order {word_order!r}: use hl or lh") from None


def _check_scale(kind: DataType, scale: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or abs(scale) > MAX_SCALE:
        raise CodecError(f"scale must be a whole number from -{MAX_SCALE} to {MAX_SCALE}")
    if scale and kind not in INT_TYPES:
        raise CodecError(f"scale applies to integer types only, not {kind}")


def _unscale(value: int | float, scale: int, kind: DataType) -> int:
    """The raw integer for `value = raw × 10^scale`, rounded to the nearest (ties to even)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CodecError(f"{kind} cannot hold {value}")
        if scale == 0 and value != int(value):
            raise CodecError(f"{kind} holds whole numbers, not {value}")
    if scale == 0:
        return int(value)
    return round(Fraction(value) / Fraction(10) ** scale)


def _checked(registers: list[int] | tuple[int, ...]) -> list[int]:
    words = list(registers)
    if any(isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 0xFFFF
           for w in words):
        raise CodecError("registers must be integers 0 to 65535")
    return words


def _words(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def _order(words: list[int], word_order: WordOrder) -> list[int]:
    """`hl`: most significant register first (as computed); `lh`: reversed."""
    return words if word_order is WordOrder.HIGH_FIRST else words[::-1]


def _byte_order(word_order: WordOrder) -> str:
    return "big" if word_order is WordOrder.HIGH_FIRST else "little"


def _encode_str(text: str, length: int, word_order: WordOrder) -> list[int]:
    data = text.encode("utf-8")
    if b"\0" in data:
        raise CodecError("strings cannot contain NUL")
    if len(data) > 2 * length:
        raise CodecError(f"string of {len(data)} bytes does not fit in {length} registers")
    data = data.ljust(2 * length, b"\0")
    order = _byte_order(word_order)
    return [int.from_bytes(data[i:i + 2], order) for i in range(0, len(data), 2)]  # type: ignore[arg-type]


def _decode_str(words: list[int], word_order: WordOrder) -> str:
    order = _byte_order(word_order)
    data = b"".join(w.to_bytes(2, order) for w in words)  # type: ignore[arg-type]
    return data.split(b"\0", 1)[0].decode("utf-8", errors="replace")
