"""The codec on its own: round trips over every type, both word orders and scale factors, the
documented layouts, and clear errors for bad input."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from chargebrain.modbus import codec
from chargebrain.modbus.codec import CodecError, DataType, WordOrder
from tests.modbus.strategies import Typed, floats, integers, typed_values, word_orders, words


@given(typed_values)
def test_value_encode_decode_round_trip(typed: Typed):
    registers = typed.encode()
    assert len(registers) == codec.register_count(typed.kind, typed.length)
    assert all(0 <= w <= 0xFFFF for w in registers)
    assert typed.same(typed.decode(registers))


@pytest.mark.parametrize("kind", list(DataType))
@pytest.mark.parametrize("order", list(WordOrder))
def test_the_shared_strategy_covers_every_type_and_word_order(kind, order):
    found = find(typed_values, lambda t: t.kind is kind and t.word_order is order,
                 settings=settings(database=None, max_examples=2000))
    assert found.kind is kind


@given(st.sampled_from(list(codec.INT_TYPES)), word_orders, st.data())
def test_registers_decode_encode_round_trip_integers(kind, order, data):
    regs = data.draw(st.lists(words, min_size=codec.register_count(kind),
                              max_size=codec.register_count(kind)))
    scale = data.draw(st.integers(0, 6))  # exact: the value is an int
    assert codec.encode(codec.decode(regs, kind, order, scale), kind, order, scale) == regs


@given(st.sampled_from([DataType.F32, DataType.F64]), word_orders, st.data())
def test_registers_decode_encode_round_trip_floats(kind, order, data):
    regs = data.draw(st.lists(words, min_size=codec.register_count(kind),
                              max_size=codec.register_count(kind)))
    value = codec.decode(regs, kind, order)
    assert isinstance(value, float)
    if not math.isnan(value):  # NaN payloads are not kept
        assert codec.encode(value, kind, order) == regs


@given(integers(), st.sampled_from(list(WordOrder)))
def test_lh_is_hl_with_the_registers_reversed(typed: Typed, other):
    hl = codec.encode(typed.value, typed.kind, WordOrder.HIGH_FIRST, typed.scale)
    lh = codec.encode(typed.value, typed.kind, WordOrder.LOW_FIRST, typed.scale)
    assert lh == hl[::-1]


@given(floats())
def test_float_word_order_reverses_registers(typed: Typed):
    hl = codec.encode(typed.value, typed.kind, WordOrder.HIGH_FIRST)
    assert codec.encode(typed.value, typed.kind, WordOrder.LOW_FIRST) == hl[::-1]


def test_documented_layouts():
    assert codec.encode(0x12345678, "u32") == [0x1234, 0x5678]
    assert codec.encode(0x12345678, "u32", "lh") == [0x5678, 0x1234]
    assert codec.encode(-2, "s16") == [0xFFFE]
    assert codec.decode([0xFFFF, 0xFFFE], "s32") == -2
    assert codec.decode([0xFFFF, 0xFFFE], "u32") == 0xFFFFFFFE
    assert codec.encode(-5, "s64") == [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFB]
    assert codec.encode(1.5, "f32") == [0x3FC0, 0]
    assert codec.encode(1.5, "f64") == [0x3FF8, 0, 0, 0]
    assert codec.encode("AB", "str", length=2) == [0x4142, 0]
    assert codec.encode("AB", "str", "lh", length=2) == [0x4241, 0]
    assert codec.encode("é", "str") == [0xC3A9]  # UTF-8, two bytes
    assert codec.decode([0x4142, 0x4300, 0x4444], "str") == "ABC"  # up to the first NUL
    assert codec.decode([0xFF41], "str") == "\ufffdA"  # not UTF-8: replaced, never an error


def test_scale_factor_is_value_times_ten_to_the_scale():
    assert codec.encode(230.5, "u16", scale=-1) == [2305]
    assert codec.decode([2305], "u16", scale=-1) == 230.5
    assert codec.encode(12000, "s32", scale=3) == [0, 12]
    assert codec.decode([0, 12], "s32", scale=3) == 12000
    assert codec.encode(1250, "u16", scale=2) == [12]  # 12.5 steps: nearest, ties to even
    assert codec.encode(1350, "u16", scale=2) == [14]
    assert codec.encode(-0.25, "s16", scale=-1) == [0xFFFE]  # -2.5 → -2


def test_float32_reads_are_the_shortest_decimal():
    assert codec.decode(codec.encode(0.1, "f32"), "f32") == 0.1
    assert math.isclose(codec.decode([0x7F7F, 0xFFFF], "f32"), 3.4028235e38)
    assert math.isnan(codec.decode([0x7FC0, 0], "f32"))
    assert codec.decode([0xFF80, 0], "f32") == -math.inf
    assert struct.pack(">f", codec.shortest_float32(1 / 3)) == struct.pack(">f", 1 / 3)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: codec.encode(65536, "u16"), "does not fit in u16"),
    (lambda: codec.encode(-1, "u32"), "does not fit in u32"),
    (lambda: codec.encode(2**63, "s64"), "does not fit in s64"),
    (lambda: codec.encode(7000, "u16", scale=-1), "does not fit in u16 with scale -1"),
    (lambda: codec.encode(1.5, "s16"), "whole numbers"),
    (lambda: codec.encode(math.nan, "s32", scale=-1), "cannot hold nan"),
    (lambda: codec.encode(True, "u16"), "must be a number"),
    (lambda: codec.encode("7", "u16"), "must be a number"),
    (lambda: codec.encode(7, "str"), "must be text"),
    (lambda: codec.encode(1e39, "f32"), "too large for f32"),
    (lambda: codec.encode(1.0, "f32", scale=1), "integer types only"),
    (lambda: codec.encode(1, "u16", scale=21), "scale must be"),
    (lambda: codec.encode(1, "u16", length=2), "length is for strings only"),
    (lambda: codec.encode("a\0b", "str", length=4), "cannot contain NUL"),
    (lambda: codec.encode("abcde", "str", length=2), "5 bytes does not fit in 2 registers"),
    (lambda: codec.encode(1, "u8"), "unknown type 'u8'"),
    (lambda: codec.encode(1, "u16", "ba"), "unknown word order 'ba'"),
    (lambda: codec.decode([1], "u32"), "u32 spans 2 registers, got 1"),
    (lambda: codec.decode([70000], "u16"), "registers must be integers 0 to 65535"),
    (lambda: codec.decode([-1], "s16"), "registers must be integers 0 to 65535"),
    (lambda: codec.decode([], "str"), "at least 1 register"),
    (lambda: codec.register_count(DataType.STR), "at least 1 register"),
    (lambda: codec.encode_int(8, 1, signed=False) and codec.decode_int([], False),
     "at least 1 register"),
])
def test_bad_input_is_a_clear_codec_error(call, message):
    with pytest.raises(CodecError, match=message):
        call()


def test_codec_error_is_a_value_error():
    assert issubclass(CodecError, ValueError)
