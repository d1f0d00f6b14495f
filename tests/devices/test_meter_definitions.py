"""Meter definitions: the tolerant JSON, validation with clear errors, the catalog (shipped
files, user overrides, bad files left out), the query language and value derivation."""

from __future__ import annotations

import json

import pytest

from chargebrain.devices import types
from chargebrain.devices.definitions import (
    DefinitionCatalog,
    DefinitionError,
    install_catalog,
    load_definition,
    relaxed_json,
)
from chargebrain.devices.drivers.defined import meter_reading
from chargebrain.devices.json_query import QueryError, parse_query, run_query
from chargebrain.modbus.codec import DataType, WordOrder

SHIPPED = ["meter_abb_b23_b24", "meter_janitza_umg96rm", "meter_sdm630", "meter_sdm72dm",
           "meter_shelly_3em"]


def test_relaxed_json_takes_comments_and_hex_but_not_inside_strings():
    text = """// head
    {"a": 0x10, /* block
    comment */ "b": "0x10 // not a comment", "c": [0X1f, -1]}  // tail"""
    assert relaxed_json(text) == {"a": 16, "b": "0x10 // not a comment", "c": [31, -1]}


def test_every_shipped_definition_loads():
    catalog = DefinitionCatalog().load()
    assert sorted(catalog.definitions) == SHIPPED and catalog.errors == {}
    sdm = catalog.get("meter_sdm630")
    assert sdm is not None and sdm.modbus_read == 4 and sdm.allow_gaps
    current = sdm.variable("current_l1")
    assert current is not None and (current.address, current.kind, current.resolution,
                                    current.order) == (6, DataType.F32, 1000.0,
                                                       WordOrder.HIGH_FIRST)
    abb = catalog.get("meter_abb_b23_b24")
    assert abb is not None and abb.variable("import_wh").kind is DataType.U64  # type: ignore[union-attr]
    assert 0xFFFFFFFFFFFFFFFF in abb.reserved


@pytest.mark.parametrize(("text", "message"), [
    ('{"power_w": {"address": 1, "type": "float"', "not valid JSON (line 1"),
    ("[1, 2]", "one JSON object"),
    ('{"rtype": 2, "x": {"address": "t", "query": "a"}}', "MQTT) is not supported"),
    ('{"modbus_read": 6, "power_w": {"address": 1}}', "modbus_read must be"),
    ('{"modbus_read_max_registers": 200, "power_w": {"address": 1}}',
     "modbus_read_max_registers must be a whole number from 1 to 125"),
    ("{}", "defines no variables"),
    ('{"power_w": 5}', "unknown setting power_w"),
    ('{"power_w": {"address": 1, "type": "int8"}}', "variable power_w: type must be"),
    ('{"power_w": {"address": 70000}}', "address must be a register number"),
    ('{"power_w": {"address": 65535, "type": "int32"}}', "end past 65535"),
    ('{"power_w": {"address": 1, "resolution": 0}}', "resolution must be a number other"),
    ('{"power_w": {"address": 1, "order": "big"}}', "order must be hl or lh"),
    ('{"power_w": {"address": 1, "bits": 3}}', "unknown property bits"),
    ('{"power_w": {"type": "float"}}', "needs exactly one of fixed, expr or address"),
    ('{"power_w": {"address": 1, "fixed": "3"}}', "needs exactly one of"),
    ('{"serial": {"address": 1, "type": "string"}}', "a string needs its length"),
    ('{"bad-name": {"address": 1}}', "names are letters"),
    ('{"power_w": {"address": 1, "type": "float"}, "import_wh": {"address": 2}}',
     "variables power_w and import_wh share registers"),
    ('{"rtype": 1, "power_w": {"address": "/x"}}', "needs a query or a regex"),
    ('{"rtype": 1, "power_w": {"address": "/x", "query": "a..b"}}', "query has an empty name"),
    ('{"rtype": 1, "power_w": {"address": "/x", "regex": "(a"}}', "variable power_w: regex"),
    ('{"power_w": {"expr": "M1.power_w * 2"}}',
     "variable power_w: expr uses m1.power_w, which is no variable of this definition"),
    ('{"a": {"address": 1}, "power_w": {"expr": "a * (2 +"}}',
     "variable power_w: expr 'a * (2 +': formula: unexpected end of formula at 8"),
    ('{"a": {"address": 1}, "power_w": {"expr": "a ** 2"}}', "formula: unexpected '*' at 3"),
    ('{"power_w": {"expr": ""}}', "variable power_w: expr must be a formula"),
    ('{"power_w": {"expr": 5}}', "variable power_w: expr must be a formula"),
    ('{"a": {"address": 1}, "power_w": {"expr": "a", "type": "int16"}}',
     "variable power_w: type does not apply to an expr variable"),
    ('{"a": {"address": 1}, "power_w": {"expr": "a", "resolution": 0}}',
     "variable power_w: resolution must be a number other than 0"),
    ('{"x": {"expr": "y + 1"}, "y": {"expr": "z * 2"}, "z": {"expr": "x"}}',
     "expr variables use each other in a circle: x → y → z → x"),
    ('{"x": {"expr": "x + 1"}}', "in a circle: x → x"),
    ('{"sn": {"address": 1, "type": "string", "length": 4}, "x": {"expr": "sn * 2"}}',
     "variable x: expr uses sn, a string"),
])
def test_invalid_definitions_are_refused_with_a_clear_message(text, message):
    with pytest.raises(DefinitionError) as err:
        load_definition(text, "meter_test")
    assert str(err.value).startswith("meter_test: ") and message in str(err.value)


def test_expr_variables_are_computed_in_the_order_they_need():
    definition = load_definition("""{
      "power_w":    {"expr": "power_w_l1 + power_w_l2 + power_w_l3"},
      "power_w_l1": {"expr": "Current_L1 * voltage_l1 / 1000"},
      "power_w_l2": {"expr": "current_l2 * voltage_l2 / 1000"},
      "power_w_l3": {"expr": "(current_l3 & 0xFFFF) * voltage_l3 / 1000", "resolution": -1},
      "current_l1": {"address": 0}, "current_l2": {"address": 2}, "current_l3": {"address": 4},
      "voltage_l1": {"address": 6}, "voltage_l2": {"address": 8}, "voltage_l3": {"address": 10}
    }""", "meter_test")
    order = [v.name for v in definition.computed]
    assert order.index("power_w") > max(order.index(f"power_w_l{i}") for i in (1, 2, 3))
    assert len(order) == 4 and definition.variable("power_w_l3").resolution == -1.0


def test_a_bad_user_file_is_left_out_and_the_good_ones_and_the_shipped_ones_stay(tmp_path):
    (tmp_path / "meter_broken.json").write_text('{"power_w": {"address": "x"}}')
    (tmp_path / "meter_sdm630.json").write_text('{"power_w": {"address": 0x34}}')  # override
    (tmp_path / "meter_mine.json").write_text(
        '{"name": "My meter", "power_w": {"address": 7, "type": "int16"}}')
    (tmp_path / "Bad Name.json").write_text("{}")
    catalog = DefinitionCatalog(user_dir=tmp_path).load()
    assert "register number" in catalog.errors["meter_broken"]
    assert "meter_<name>.json" in catalog.errors["Bad Name"]
    assert "meter_broken" not in catalog.definitions
    sdm = catalog.get("meter_sdm630")
    assert sdm is not None and [v.name for v in sdm.variables] == ["power_w"]
    assert catalog.get("meter_abb_b23_b24") is not None and catalog.get("meter_mine") is not None


def test_installed_user_definitions_become_device_types(tmp_path):
    (tmp_path / "meter_roof_inverter.json").write_text(
        '{"name": "Roof inverter", "power_w": {"address": 7, "type": "int16"}}')
    install_catalog(tmp_path)
    info = types.get("meter_roof_inverter")
    assert info is not None and info.supported and info.family is types.Family.MODBUS_DEF
    assert types.labels()["meter_roof_inverter"] == "Roof inverter"


@pytest.mark.parametrize(("query", "expected"), [
    ("total_power", 4200),
    ("emeters[1].power", -20.5),
    ('emeters[{"id": "b", "ok": true}].power', -20.5),
    ('meta["a.b"]', "dot"),
    ("tuple[0][1]", 7),
])
def test_queries_find_their_value(query, expected):
    data = {"total_power": 4200, "meta": {"a.b": "dot"}, "tuple": [[6, 7]],
            "emeters": [{"id": "a", "power": 1}, {"id": "b", "ok": True, "power": -20.5}]}
    assert run_query(data, parse_query(query)) == expected


@pytest.mark.parametrize("query", ["", "a.", ".a", "a[", "a[x]", "a[true]"])
def test_malformed_queries_are_refused(query):
    with pytest.raises(QueryError):
        parse_query(query)


def test_a_query_that_finds_nothing_says_where():
    with pytest.raises(QueryError, match="no element matches"):
        run_query({"e": [{"id": 1}]}, parse_query('e[{"id": 2}].x'))
    with pytest.raises(QueryError, match=r"\[3\]: no such element"):
        run_query({"e": []}, parse_query("e[3]"))


def test_missing_values_are_derived():
    definition = load_definition(json.dumps({
        "manufacturer": "ACME", "type_designation": {"fixed": "P3"},
        "power_w_l1": {"address": 0}, "power_w_l2": {"address": 2},
        "power_w_l3": {"address": 4}, "voltage_l1": {"address": 6}}), "meter_acme")
    reading = meter_reading(definition, {"power_w_l1": 2300.0, "power_w_l2": -460.0,
                                         "power_w_l3": 0.0, "voltage_l1": 230.0,
                                         "type_designation": "P3"}, 230)
    assert reading.power_w == 1840 and reading.currents_ma == (10000, -2000, 0)
    assert reading.voltages_v == (230, 230, 230) and reading.model == "ACME P3"
    only_va = meter_reading(definition, {"power_va": 999.6}, 230)
    assert only_va.power_w == 1000 and only_va.is_va is True and only_va.currents_ma is None
