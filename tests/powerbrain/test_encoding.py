"""Register encoding round trips (property tests) and the register table's consistency."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargebrain.powerbrain.registers import (
    LAYOUTS,
    REGISTERS,
    decode_int,
    decode_str,
    encode,
    encode_int,
    encode_str,
    int_max,
    int_min,
)

words = st.integers(0, 0xFFFF)


@given(st.integers(0, 0xFFFF))
def test_16_bit_unsigned_round_trip(value):
    assert encode_int(value, 1, signed=False) == [value]
    assert decode_int([value], signed=False) == value


@given(st.integers(-(1 << 15), (1 << 15) - 1))
def test_16_bit_signed_round_trip(value):
    regs = encode_int(value, 1, signed=True)
    assert 0 <= regs[0] <= 0xFFFF
    assert decode_int(regs, signed=True) == value


@given(st.integers(-(1 << 31), (1 << 31) - 1))
def test_32_bit_signed_round_trip_high_word_first(value):
    regs = encode_int(value, 2, signed=True)
    assert len(regs) == 2 and all(0 <= w <= 0xFFFF for w in regs)
    assert regs == [(value >> 16) & 0xFFFF, value & 0xFFFF]
    assert decode_int(regs, signed=True) == value


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_64_bit_signed_round_trip(value):
    regs = encode_int(value, 4, signed=True)
    assert len(regs) == 4
    assert int.from_bytes(b"".join(w.to_bytes(2, "big") for w in regs), "big",
                          signed=True) == value
    assert decode_int(regs, signed=True) == value


@given(st.lists(words, min_size=1, max_size=4))
def test_decode_then_encode_gives_the_registers_back(regs):
    size = len(regs)
    for signed in (False, True):
        assert encode_int(decode_int(regs, signed), size, signed) == regs


@given(st.integers(1, 4), st.booleans(), st.integers(-(1 << 70), 1 << 70))
def test_values_that_do_not_fit_are_refused(size, signed, value):
    if int_min(size, signed) <= value <= int_max(size, signed):
        assert decode_int(encode_int(value, size, signed), signed) == value
    else:
        with pytest.raises(ValueError):
            encode_int(value, size, signed)


# strings are UTF-8 (chargebrain.modbus.codec, the one encoding of server and clients)
text_no_nul = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                      max_size=32)


@given(text_no_nul, st.integers(1, 16))
def test_string_round_trip_nul_padded(text, size):
    if len(text.encode("utf-8")) > 2 * size:
        with pytest.raises(ValueError):
            encode_str(text, size)
        return
    regs = encode_str(text, size)
    assert len(regs) == size
    data = b"".join(w.to_bytes(2, "big") for w in regs)
    assert data == text.encode("utf-8").ljust(2 * size, b"\x00")  # high byte first, NUL pad
    assert decode_str(regs) == text


def test_seed_strings_and_vendor_id():
    assert encode_str("fcf5-c46d-310c", 8)[:4] == [26211, 26165, 11619, 13366]
    assert decode_int([0xCF05, 0], signed=True) == -821755904
    assert encode_int(16777216, 2, signed=False) == [256, 0]


def test_strings_with_nul_or_too_long_in_utf8_are_refused():
    with pytest.raises(ValueError):
        encode_str("a\x00b", 4)
    assert decode_str(encode_str("€", 2)) == "€"  # 3 bytes in UTF-8
    with pytest.raises(ValueError):
        encode_str("€€", 2)  # 6 bytes do not fit in 2 registers


def test_table_defaults_encode_and_fit_their_ranges():
    for reg in REGISTERS:
        for unit in reg.units:
            value = reg.default_for(unit)
            assert len(encode(reg, value)) == reg.size, reg.name
            if reg.writable and reg.kind == "int":
                assert reg.in_range(value), (reg.name, unit)


def test_every_unit_has_the_documented_blocks():
    evse = LAYOUTS["evse"]
    for unit in ("evse", "meter1", "meter2"):
        owner = LAYOUTS[unit].owner
        assert all(a in owner for a in [*range(8000, 8032), *range(8040, 8048)])
        assert not any(a in owner for a in range(8032, 8040))
        assert all(a in owner for a in range(8050, 8072))
        assert 8048 not in owner and 8049 not in owner and 8120 in owner
    assert all(a in evse.owner for a in (8080, 8085, 8088, 8090, 8096, 8110, 8113))
    assert 8089 not in evse.owner and 8080 not in LAYOUTS["meter1"].owner
    assert evse.by_name["energy"].access == "r"
    assert LAYOUTS["meter1"].by_name["energy"].access == "rw"


def test_volatile_registers_are_exactly_the_vendor_list():
    writable = {r.name for r in REGISTERS if r.writable and not r.persisted}
    volatile = {"charging_cur_limit", "fixed_current", "charging_enable", "disconnect_cp",
                "relay_select", "relay2", "reset_pulses", "reset_energy"}  # resets are commands
    assert writable == volatile
