"""Hypothesis strategies for typed Modbus values, shared by the codec, server and client tests."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from hypothesis import strategies as st

from chargebrain.modbus import codec
from chargebrain.modbus.codec import DataType, WordOrder

word_orders = st.sampled_from(list(WordOrder))
words = st.integers(0, 0xFFFF)
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                max_size=40)
scale_factors = st.integers(-6, 6)
SAFE_FLOAT_RAW = 2**50  # a raw value this small survives `raw × 10^-k` as a float


@dataclass(frozen=True)
class Typed:
    """A value with everything needed to encode it."""

    value: int | float | str
    kind: DataType
    word_order: WordOrder
    scale: int = 0
    length: int | None = None

    def encode(self) -> list[int]:
        return codec.encode(self.value, self.kind, self.word_order, self.scale,
                            length=self.length)

    def decode(self, registers: list[int]) -> int | float | str:
        return codec.decode(registers, self.kind, self.word_order, self.scale)

    def same(self, other: int | float | str) -> bool:
        """Equal, counting NaN as NaN and floats bit for bit (at their own width)."""
        if isinstance(self.value, float) and isinstance(other, float):
            if math.isnan(self.value):
                return math.isnan(other)
            fmt = ">f" if self.kind is DataType.F32 else ">d"
            return struct.pack(fmt, self.value) == struct.pack(fmt, other)
        return self.value == other and type(self.value) is type(other)


@st.composite
def integers(draw: st.DrawFn, kind: DataType | None = None,
             orders: st.SearchStrategy[WordOrder] = word_orders,
             scales: st.SearchStrategy[int] = scale_factors) -> Typed:
    kind = kind or draw(st.sampled_from(list(codec.INT_TYPES)))
    order = draw(orders)
    scale = draw(scales)
    lo, hi = codec.int_range(kind)
    if scale < 0:
        lo, hi = max(lo, -SAFE_FLOAT_RAW), min(hi, SAFE_FLOAT_RAW)
    raw = draw(st.integers(lo, hi))
    # what decode gives for `raw`: an int for scale >= 0, the nearest float otherwise
    value: int | float = raw * 10**scale if scale >= 0 else raw / 10**-scale
    return Typed(value, kind, order, scale)


@st.composite
def floats(draw: st.DrawFn, kind: DataType | None = None) -> Typed:
    kind = kind or draw(st.sampled_from([DataType.F32, DataType.F64]))
    width = 32 if kind is DataType.F32 else 64
    value = draw(st.floats(width=width))
    if kind is DataType.F32 and math.isfinite(value):
        value = codec.shortest_float32(value)  # what a float32 reads back as
    return Typed(value, kind, draw(word_orders))


@st.composite
def strings(draw: st.DrawFn, length: int | None = None,
            orders: st.SearchStrategy[WordOrder] = word_orders) -> Typed:
    """A text; with `length` (registers) one that fits in it."""
    if length is None:
        text = draw(texts)
        length = codec.string_length(text) + draw(st.integers(0, 4))
    else:
        text = draw(texts.filter(lambda t: len(t.encode("utf-8")) <= 2 * length))
    return Typed(text, DataType.STR, draw(orders), length=length)


typed_values = st.one_of(integers(), floats(), strings())
