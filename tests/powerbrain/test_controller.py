"""The controller's register model: reads, checked writes, persistence, restarts (real SQLite)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargebrain.powerbrain import PowerBrain, RegisterError, WriteOp
from chargebrain.powerbrain.controller import CONTROLLER_NS
from chargebrain.powerbrain.registers import REGISTERS, encode
from chargebrain.store.db import Store

SEED_METER2_ALL = {
    "8000d": -821755904, "8002": 1, "8003": 257, "8004": 16777216, "8006": 256, "8007": 0,
    "8008s": "fcf5-c46d-310c", "8016s": "cFos Power Brain", "8040": 41, "8041": 1,
    "8042d": 1000, "8044": 1, "8045": 230, "8046": 230, "8047": 230, "8050q": 0, "8054d": 0,
    "8056": 0, "8057": 0, "8058q": 0, "8062d": -1, "8064d": 0, "8066d": 0, "8068d": 0,
    "8070": 0, "8071": 0, "8120d": 0}


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def pb(store):
    brain = PowerBrain(store)
    brain.start(0.0)
    return brain


def test_fresh_meter_read_all_is_the_seed(pb):
    assert pb.read_all("meter2") == SEED_METER2_ALL
    assert list(pb.read_all("meter2")) == list(SEED_METER2_ALL)  # same key order


def test_typed_reads(pb):
    assert pb.read_value("meter1", 8002) == 1
    assert pb.read_value("meter1", 8062, "d") == -1
    assert pb.read_value("meter1", 8016, "s") == "cFos Power Brain"
    assert pb.read_value("evse", 8004) == pb.read_value("evse", 8004, "d") == 16777216
    assert pb.read_value("evse", 8005) == 0  # product_build, inside 8004
    assert pb.read_raw("meter1", 8002, 10) == [1, 257, 256, 0, 256, 0, 26211, 26165, 11619,
                                               13366]
    assert pb.read_value("evse", 8070) == 0  # write-only reads 0


@pytest.mark.parametrize(("unit", "address", "suffix", "message", "code"), [
    ("evse", 8048, "", "unknown modbus register: 8048", 2),
    ("meter1", 8093, "", "unknown modbus register: 8093", 2),
    ("evse", 8044, "d", "bad modbus register size", 2),
    ("evse", 8042, "", "bad modbus register size", 2),
    ("evse", 8043, "", "bad modbus register size", 2),  # inside a 2-register field
    ("evse", 8016, "", "bad modbus register size", 2),
    ("evse", 8058, "d", "bad modbus register size", 2),
    ("evse", 8016, "q", "bad modbus register size", 2),
])
def test_read_errors(pb, unit, address, suffix, message, code):
    with pytest.raises(RegisterError) as err:
        pb.read_value(unit, address, suffix)
    assert (err.value.message, err.value.exc_code) == (message, code)


def test_raw_read_over_a_gap_is_refused(pb):
    with pytest.raises(RegisterError) as err:
        pb.read_raw("evse", 8030, 4)
    assert err.value.message == "unknown modbus register: 8032"


def test_seed_writes(pb):
    pb.write("evse", [WriteOp(8044, value=7)], 1.0)
    assert pb.read_value("evse", 8044) == 7
    pb.write("evse", [WriteOp(8050, "q", value=1)], 1.0)
    assert pb.read_value("evse", 8050, "q") == 1
    pb.write("evse", [WriteOp(8044, values=(7, 231, 232, 233))], 1.0)
    assert pb.read_raw("evse", 8044, 4) == [7, 231, 232, 233]


@pytest.mark.parametrize(("op", "start"), [
    (WriteOp(8093, value=59), "value out of range: 8093 charging_cur_limit takes 60 to 630"),
    (WriteOp(8093, value=631), "value out of range"),
    (WriteOp(8091, value=30), "value out of range: 8091 fixed_current takes 0, 60 to 630"),
    (WriteOp(8094, value=2), "value out of range"),
    (WriteOp(8092, value=1), "register is read-only: 8092 charge_pilot_state"),
    (WriteOp(8058, "q", value=5), "register is read-only: 8058 energy"),
    (WriteOp(8016, "s", value="x"), "register is read-only: 8016 name"),
    (WriteOp(8005, value=1), "register is read-only: 8005 product_build"),
    (WriteOp(8044, "d", value=1), "bad modbus register size"),
    (WriteOp(8048, value=1), "unknown modbus register: 8048"),
    (WriteOp(8044, values=(7, 230, 230, 230, 0)), "unknown modbus register: 8048"),
    (WriteOp(8090, values=(1, 320)), "register is read-only: 8090 cable_current"),
    (WriteOp(8042, values=(0, 0)), "value out of range: 8042 pulsesperkwh"),
    (WriteOp(8044, values=(70000,)), "values must be 16-bit registers"),
])
def test_refused_writes_change_nothing(pb, store, op, start):
    before = {u: pb.read_all(u) for u in ("evse", "meter1", "meter2")}
    stored = store.kv_all("reg:evse")
    with pytest.raises(RegisterError) as err:
        pb.write("evse", [WriteOp(8081, value=100), op], 1.0)  # a good op first
    assert err.value.message.startswith(start)
    assert {u: pb.read_all(u) for u in ("evse", "meter1", "meter2")} == before
    assert store.kv_all("reg:evse") == stored


def test_modbus_exception_codes(pb):
    with pytest.raises(RegisterError) as err:
        pb.write_raw("evse", 8093, [700], 1.0)
    assert err.value.exc_code == 3
    with pytest.raises(RegisterError) as err:
        pb.write_raw("evse", 8092, [1], 1.0)
    assert err.value.exc_code == 2


def test_ops_are_checked_in_order_each_seeing_the_previous(pb):
    # the first op sets the high word of pulsesperkwh, the second the low word: only the
    # combination (0x0001_86A0 = 100000) is in range
    pb.write("meter1", [WriteOp(8042, values=(1,)), WriteOp(8043, values=(0x86A0,))], 1.0)
    assert pb.read_value("meter1", 8042, "d") == 100000
    pb.write("meter1", [WriteOp(8044, value=3), WriteOp(8044, value=5)], 1.0)
    assert pb.read_value("meter1", 8044) == 5


def test_partial_raw_write_keeps_the_other_word(pb):
    pb.write("meter1", [WriteOp(8042, "d", value=0x0001_0010)], 1.0)
    pb.write_raw("meter1", 8043, [0x0020], 1.0)
    assert pb.read_value("meter1", 8042, "d") == 0x0001_0020


def test_reset_commands(pb):
    pb.write("meter1", [WriteOp(8050, "q", value=77), WriteOp(8058, "q", value=55)], 1.0)
    pb.write("meter1", [WriteOp(8070, value=0)], 1.0)  # 0 does nothing
    assert pb.read_value("meter1", 8050, "q") == 77
    pb.write("meter1", [WriteOp(8070, value=1)], 1.0)
    assert pb.read_value("meter1", 8050, "q") == 0
    assert pb.read_value("meter1", 8058, "q") == 55
    pb.write("meter1", [WriteOp(8071, value=1)], 1.0)
    assert pb.read_value("meter1", 8058, "q") == 0
    assert pb.read_value("meter1", 8071) == 0


def test_count_restart_is_one_value_for_the_controller(pb, store):
    pb.write("meter2", [WriteOp(8120, "d", value=42)], 1.0)
    assert [pb.read_value(u, 8120, "d") for u in ("evse", "meter1", "meter2")] == [42, 42, 42]
    assert store.kv_get(CONTROLLER_NS, "count_restart") == 42


def test_restarts_are_counted(store):
    counts = []
    for _ in range(3):
        brain = PowerBrain(store)
        brain.start(0.0)
        counts.append(brain.read_value("meter2", 8120, "d"))
    assert counts == [0, 1, 2]


def test_flash_survives_and_volatile_comes_back_from_defaults(store):
    pb = PowerBrain(store)
    pb.start(0.0)
    pb.write("evse", [WriteOp(8093, value=100), WriteOp(8094, value=0), WriteOp(8087, value=1),
                      WriteOp(8088, value=1), WriteOp(8091, value=200), WriteOp(8086, value=30),
                      WriteOp(8081, value=250), WriteOp(8080, value=130), WriteOp(8085, value=0),
                      WriteOp(8083, "d", value=120), WriteOp(8040, value=9)], 1.0)
    pb.write("meter1", [WriteOp(8042, "d", value=800), WriteOp(8044, value=7),
                        WriteOp(8058, "q", value=1234)], 1.0)
    assert pb.read_value("evse", 8086) == 30
    again = PowerBrain(store)
    again.start(5.0)
    evse = again.read_all("evse")
    assert evse["8093"] == 250 and evse["8081"] == 250  # from def_charg_cur_limit
    assert evse["8091"] == 130 and evse["8080"] == 130  # from def_fixed_current
    assert evse["8094"] == 1  # def_charging_enable stayed 1
    assert (evse["8086"], evse["8087"], evse["8088"]) == (0, 0, 0)
    assert (evse["8085"], evse["8083d"], evse["8040"]) == (0, 120, 9)
    meter1 = again.read_all("meter1")
    assert (meter1["8042d"], meter1["8044"], meter1["8058q"]) == (800, 7, 1234)
    assert again.read_all("meter2") == {**SEED_METER2_ALL, "8120d": 1}


def test_def_charging_enable_0_boots_disabled(store):
    pb = PowerBrain(store)
    pb.start(0.0)
    pb.write("evse", [WriteOp(8082, value=0)], 1.0)
    assert pb.read_value("evse", 8094) == 1  # the running value is untouched
    again = PowerBrain(store)
    assert again.read_value("evse", 8094) == 0


def test_stored_values_that_no_longer_fit_fall_back_to_defaults(store):
    store.kv_set_many("reg:evse", {"def_charg_cur_limit": 5, "slave_id": "x", "phases": 3})
    pb = PowerBrain(store)
    assert pb.read_value("evse", 8081) == 160 and pb.read_value("evse", 8040) == 1
    assert pb.read_value("evse", 8044) == 3


def test_volatile_writes_do_not_touch_the_store(pb, store):
    before = store.kv_all("reg:evse")
    pb.write("evse", [WriteOp(8093, value=100), WriteOp(8094, value=0)], 1.0)
    assert store.kv_all("reg:evse") == before


def test_without_a_store_nothing_is_persisted():
    pb = PowerBrain(None)
    pb.start(0.0)
    pb.write("evse", [WriteOp(8081, value=100)], 1.0)
    assert pb.read_value("evse", 8081) == 100


WRITABLE_INTS = [r for r in REGISTERS if r.writable and r.readable and r.kind == "int"]


@st.composite
def field_and_value(draw):
    reg = draw(st.sampled_from(WRITABLE_INTS))
    lo, hi = draw(st.sampled_from(reg.allowed))
    return reg, sorted(reg.units)[0], draw(st.integers(lo, hi))


@given(field_and_value())
def test_typed_write_reads_back_raw_and_typed(case):
    reg, unit, value = case
    pb = PowerBrain(None)
    pb.start(0.0)
    pb.write(unit, [WriteOp(reg.address, reg.suffix, value=value)], 1.0)
    assert pb.read_value(unit, reg.address, reg.suffix) == value
    assert pb.read_raw(unit, reg.address, reg.size) == encode(reg, value)


@given(field_and_value())
def test_raw_write_reads_back_typed(case):
    reg, unit, value = case
    pb = PowerBrain(None)
    pb.start(0.0)
    pb.write_raw(unit, reg.address, encode(reg, value), 1.0)
    assert pb.read_value(unit, reg.address, reg.suffix) == value


@given(st.sampled_from(WRITABLE_INTS), st.integers(-(1 << 64), 1 << 64))
def test_values_outside_the_range_are_refused(reg, value):
    pb = PowerBrain(None)
    pb.start(0.0)
    unit = sorted(reg.units)[0]
    before = pb.read_all(unit)
    if reg.in_range(value):
        pb.write(unit, [WriteOp(reg.address, reg.suffix, value=value)], 1.0)
        assert pb.read_value(unit, reg.address, reg.suffix) == value
    else:
        with pytest.raises(RegisterError) as err:
            pb.write(unit, [WriteOp(reg.address, reg.suffix, value=value)], 1.0)
        assert err.value.exc_code == 3
        assert pb.read_all(unit) == before
