"""CM variables: set_cm_vars / set_cm_var / get_cm_vars over the real HTTP API, persistence in
the real SQLite store (restart = a second app on the same data dir), and the domain's
"write only when changed" rule measured on the SQLite connection."""

from __future__ import annotations

import pytest

from chargebrain.cmvars import MAX_VARS, CmVarError, CmVars, parse_text
from chargebrain.store.db import Store
from tests.support.server import running_app


async def _vars(client) -> dict[str, tuple[object, object]]:
    status, body = await client.get("get_cm_vars")
    assert status == 200
    return {v["name"]: (v["expr"], v["value"]) for v in body["vars"]}


async def test_get_form_sets_number_and_answers_ok(cb):
    assert await cb.client.get("set_cm_vars", name="var3", val="123") == (200, "ok")
    assert await cb.client.get("set_cm_var", name="half", val="1.5") == (200, "ok")
    status, body = await cb.client.get("get_cm_vars")
    assert status == 200
    assert body["vars"] == [{"name": "half", "expr": 1.5, "value": 1.5},
                            {"name": "var3", "expr": 123, "value": 123}]


async def test_post_body_of_the_documentation(cb):
    body = {"vars": [{"name": "tarif", "expr": 1}, {"name": "PWR", "expr": 70}]}
    assert await cb.client.post("set_cm_vars", body) == (200, "ok")
    assert await _vars(cb.client) == {"tarif": (1, 1), "PWR": (70, 70)}


async def test_formula_is_stored_and_evaluated_with_the_live_names(cb):
    assert await cb.client.get("set_cm_vars", name="a", val="2.5") == (200, "ok")
    assert await cb.client.get("set_cm_vars", name="lim", val="55000 * cm.A / 100") \
        == (200, "ok")
    assert await cb.client.post("set_cm_vars", {"vars": [{"name": "f", "expr": "CM.lim + 1"}]}) \
        == (200, "ok")
    assert await _vars(cb.client) == {"a": (2.5, 2.5), "lim": ("55000 * cm.A / 100", 1375),
                                      "f": ("CM.lim + 1", 1376)}
    # the value follows the variable it reads
    assert await cb.client.get("set_cm_vars", name="a", val="10", tmp=1) == (200, "ok")
    assert (await _vars(cb.client))["f"] == ("CM.lim + 1", 5501)


async def test_a_formula_that_fails_now_has_no_value_and_says_why(cb):
    body = {"vars": [{"name": "lim", "expr": "55000 * AVAIL / 100"},
                     {"name": "loop", "expr": "CM.loop + 1"},
                     {"name": "div", "expr": "1 / CM.zero"}, {"name": "zero", "expr": 0}]}
    assert await cb.client.post("set_cm_vars", body) == (200, "ok")
    _, answer = await cb.client.get("get_cm_vars")
    by_name = {v["name"]: v for v in answer["vars"]}
    assert by_name["lim"] == {"name": "lim", "expr": "55000 * AVAIL / 100", "value": None,
                              "error": "formula: unknown name avail at 8"}
    assert by_name["loop"]["value"] is None
    assert "cm.loop refers to itself" in by_name["loop"]["error"]
    assert by_name["div"]["error"] == "formula: division by zero at 2"
    assert by_name["zero"] == {"name": "zero", "expr": 0, "value": 0}


async def test_predefined_values_are_listed_and_read_only(cb):
    _, answer = await cb.client.get("get_cm_vars")
    predefined = {p["name"]: p for p in answer["predefined"]}
    assert set(predefined) == {"_num_charging", "_num_charging1", "_max_total_current",
                               "_max_total_evse_current", "_surplus", "_org_surplus",
                               "_max_total_current_prc", "_dt"}
    assert predefined["_num_charging1"]["value"] >= 1
    assert predefined["_max_total_current_prc"] == {"name": "_max_total_current_prc",
                                                    "value": 100, "writable": True}
    for name in ("_num_charging", "_NUM_CHARGING", "_dt", "_surplus"):
        status, body = await cb.client.get("set_cm_vars", name=name, val="3")
        assert status == 400 and "predefined and read-only" in body
    assert await _vars(cb.client) == {}


async def test_max_total_current_prc_is_the_param(cb):
    assert await cb.client.get("set_cm_vars", name="_max_total_current_prc", val="40") \
        == (200, "ok")
    assert cb.app.params["max_total_cur_prc"] == 40
    assert await _vars(cb.client) == {}  # not a stored variable
    _, answer = await cb.client.get("get_cm_vars")
    assert {p["name"]: p["value"] for p in answer["predefined"]}["_max_total_current_prc"] == 40
    for val, message in (("101", "at most 100"), ("CM.x", "must be a number"),
                         ("12.5", "whole number")):
        status, body = await cb.client.get("set_cm_vars", name="_max_total_current_prc",
                                           val=val)
        assert status == 400 and message in body, body
    assert cb.app.params["max_total_cur_prc"] == 40
    # in a body with a bad variable: all or nothing
    status, _ = await cb.client.post("set_cm_vars", {"vars": [
        {"name": "_max_total_current_prc", "expr": 70}, {"name": "bad", "expr": "1 +"}]})
    assert status == 400 and cb.app.params["max_total_cur_prc"] == 40


async def test_clear_deletes_everything_first(cb):
    await cb.client.post("set_cm_vars", {"vars": [{"name": "a", "expr": 1},
                                                  {"name": "b", "expr": 2}]})
    assert await cb.client.post("set_cm_vars", {"vars": [{"name": "c", "expr": 3}]},
                                clear=1) == (200, "ok")
    assert await _vars(cb.client) == {"c": (3, 3)}
    assert await cb.client.get("set_cm_vars", clear=1, name="d", val="4") == (200, "ok")
    assert await _vars(cb.client) == {"d": (4, 4)}
    assert await cb.client.get("set_cm_vars", clear=1) == (200, "ok")
    assert await _vars(cb.client) == {}


async def test_get_cm_vars_answer_is_accepted_as_a_body(cb):
    await cb.client.post("set_cm_vars", {"vars": [{"name": "a", "expr": 2.5},
                                                  {"name": "f", "expr": "CM.a * 2"}]})
    _, listing = await cb.client.get("get_cm_vars")
    assert await cb.client.post("set_cm_vars", listing, clear=1) == (200, "ok")
    _, again = await cb.client.get("get_cm_vars")
    assert again["vars"] == listing["vars"] == [
        {"name": "a", "expr": 2.5, "value": 2.5}, {"name": "f", "expr": "CM.a * 2", "value": 5}]


async def test_later_duplicate_in_one_body_wins(cb):
    body = {"vars": [{"name": "a", "expr": 1}, {"name": "a", "expr": 2}]}
    assert await cb.client.post("set_cm_vars", body) == (200, "ok")
    assert await _vars(cb.client) == {"a": (2, 2)}


async def test_persisted_across_restart_but_tmp_is_not(tmp_path):
    data = tmp_path / "data"
    async with running_app(data, modbus=False) as run:
        c = run.client
        assert await c.get("set_cm_vars", name="kept", val="1") == (200, "ok")
        assert await c.get("set_cm_vars", name="kept", val="2", tmp=1) == (200, "ok")
        assert await c.get("set_cm_vars", name="gone", val="9", tmp=1) == (200, "ok")
        assert await _vars(c) == {"kept": (2, 2), "gone": (9, 9)}
    async with running_app(data, modbus=False) as run:
        assert await _vars(run.client) == {"kept": (1, 1)}
        assert await run.client.get("set_cm_vars", clear=1, tmp=1) == (200, "ok")
        assert await _vars(run.client) == {}
    async with running_app(data, modbus=False) as run:
        assert await _vars(run.client) == {"kept": (1, 1)}
        assert await run.client.get("set_cm_vars", clear=1) == (200, "ok")
    async with running_app(data, modbus=False) as run:
        assert await _vars(run.client) == {}


@pytest.mark.parametrize("cmd", ["set_cm_vars", "set_cm_var", "get_cm_vars"])
async def test_admin_only(cb, cmd):
    status, body = await cb.client.get(cmd, auth=None, name="a", val="1")
    assert status == 401 and isinstance(body, str)
    assert await _vars(cb.client) == {}


BAD_GETS = [
    ({"name": "a b", "val": "1"}, "only letters, digits and underscore"),
    ({"name": "x" * 65, "val": "1"}, "longer than 64"),
    ({"name": "", "val": "1"}, "non-empty"),
    ({"name": "a"}, "missing parameter val"),
    ({"val": "1"}, "missing parameter name"),
    ({"name": "a", "val": "nan"}, "finite"),
    ({"name": "a", "val": "-inf"}, "finite"),
    ({"name": "a", "val": "1e400"}, "finite"),
    ({"name": "a", "val": "2e15"}, "between"),
    ({"name": "a", "val": "   "}, "number or a formula"),
    ({"name": "a", "val": "x" * 300}, "longer than 256"),
    ({"name": "a", "val": "1", "tmp": "maybe"}, "tmp must be 0 or 1"),
    ({"name": "ä", "val": "1"}, "only letters"),
    ({"name": "a", "val": "min(1,,2)"}, "a: formula: unexpected ',' at 6"),
    ({"name": "a", "val": "CM.x +"}, "a: formula: unexpected end of formula at 6"),
    ({"name": "a", "val": "foo(1)"}, "a: formula: unknown function foo at 0"),
]


@pytest.mark.parametrize(("params", "message"), BAD_GETS)
async def test_bad_get_form_is_refused_and_changes_nothing(cb, params, message):
    await cb.client.get("set_cm_vars", name="keep", val="7")
    status, body = await cb.client.get("set_cm_vars", **params)
    assert status == 400
    assert message in body
    assert await _vars(cb.client) == {"keep": (7, 7)}


BAD_BODIES = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"vars": {"name": "a"}}', "list"),
    (b'{"vars": [1]}', "list"),
    (b'{"vars": [{"name": "a"}]}', "needs an expr"),
    (b'{"vars": [{"expr": 1}]}', "needs a name"),
    (b'{"vars": [{"name": "a", "expr": true}]}', "number or a formula"),
    (b'{"vars": [{"name": "a", "expr": null}]}', "number or a formula"),
    (b'{"vars": [{"name": "a", "expr": [1]}]}', "number or a formula"),
    (b'{"vars": [{"name": "a", "expr": 1e400}]}', "finite"),
    (b'{"vars": [{"name": "a", "expr": NaN}]}', "not valid JSON"),
    (b'{"vars": [{"name": 5, "expr": 1}]}', "non-empty string"),
    (b'{"vars": [{"name": "a", "expr": 1, "colour": "red"}]}', "unknown key colour"),
    (b'{"vars": [], "extra": 1}', "unknown key extra"),
    (b'{"vars": [{"name": "ok", "expr": 1}, {"name": "b-d", "expr": 1}]}', "only letters"),
    (b'{"vars": [{"name": "ok", "expr": 1}, {"name": "f", "expr": "(1"}]}',
     "f: formula: unexpected end of formula at 2"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
async def test_bad_body_is_refused_and_changes_nothing(cb, body, message):
    await cb.client.get("set_cm_vars", name="keep", val="7")
    status, answer = await cb.client.post("set_cm_vars", body, clear=1)
    assert status == 400
    assert message in answer
    assert await _vars(cb.client) == {"keep": (7, 7)}


async def test_body_and_query_together_are_refused(cb):
    status, answer = await cb.client.post("set_cm_vars", {"vars": []}, name="a", val="1")
    assert (status, answer) == (400, "give the variables either in the body or as name/val, "
                                     "not both")


async def test_at_most_256_variables(cb):
    full = {"vars": [{"name": f"v{i}", "expr": i} for i in range(MAX_VARS)]}
    assert await cb.client.post("set_cm_vars", full) == (200, "ok")
    assert await cb.client.get("set_cm_vars", name="v0", val="-1") == (200, "ok")
    status, answer = await cb.client.get("set_cm_vars", name="one_more", val="1")
    assert (status, answer) == (400, "too many variables (at most 256)")
    listing = await _vars(cb.client)
    assert len(listing) == MAX_VARS and "one_more" not in listing and listing["v0"] == (-1, -1)
    # clear=1 makes room: the new set replaces the old one
    assert await cb.client.get("set_cm_vars", clear=1, name="one_more", val="1") == (200, "ok")
    assert await _vars(cb.client) == {"one_more": (1, 1)}


async def test_name_of_64_characters_is_fine(cb):
    name = "A_9" + "z" * 61
    assert await cb.client.get("set_cm_vars", name=name, val="-0.25") == (200, "ok")
    assert await _vars(cb.client) == {name: (-0.25, -0.25)}


# -- the domain on a real SQLite file ---------------------------------------------------------

def _changes(store: Store) -> int:
    return store.conn.total_changes


def test_store_is_written_only_when_the_value_changes(tmp_path):
    store = Store.open(tmp_path)
    try:
        cm = CmVars(store)
        before = _changes(store)
        assert cm.apply(cm.prepare([("a", 1), ("b", "M1.power_w")])) == 2
        assert _changes(store) - before == 2
        before = _changes(store)
        assert cm.apply(cm.prepare([("a", 1.0), ("b", "M1.power_w")])) == 0  # same values
        assert cm.apply(cm.prepare([("a", "1")], from_text=True)) == 0
        assert _changes(store) - before == 0
        assert cm.apply(cm.prepare([("a", 2)])) == 1
        assert _changes(store) - before == 1
        before = _changes(store)
        assert cm.apply(cm.prepare([("a", 5)], persist=False)) == 0  # tmp
        assert _changes(store) - before == 0
        assert cm.expr("a") == 5 and store.kv_get("cm_vars", "a") == 2
        # back to the stored value: memory changes, the store already has it
        assert cm.apply(cm.prepare([("a", 2)])) == 0
        assert cm.expr("a") == 2
    finally:
        store.close()


def test_clear_deletes_rows_in_the_same_transaction(tmp_path):
    store = Store.open(tmp_path)
    try:
        cm = CmVars(store)
        cm.apply(cm.prepare([("a", 1), ("b", 2), ("c", 3)]))
        cm.apply(cm.prepare([("b", 2), ("d", 4)], clear=True))
        assert store.kv_all("cm_vars") == {"b": 2, "d": 4}
        assert CmVars(store).as_list() == [{"name": "b", "expr": 2, "value": 2},
                                           {"name": "d", "expr": 4, "value": 4}]
    finally:
        store.close()


def test_damaged_rows_are_skipped_on_load(tmp_path):
    store = Store.open(tmp_path)
    try:
        store.kv_set_many("cm_vars", {"good": 1, "bad name": 2, "nothing": None, "t": True,
                                      "old": "1 +"})
        # a stored formula that no longer compiles is kept (and fails when evaluated)
        assert CmVars(store).as_list() == [{"name": "good", "expr": 1, "value": 1},
                                           {"name": "old", "expr": "1 +", "value": None}]
    finally:
        store.close()


def test_attached_evaluator_gives_formula_values(tmp_path):
    store = Store.open(tmp_path)
    try:
        cm = CmVars(store, evaluate=lambda text: 42.0 if text == "x" else float("nan"))
        cm.apply(cm.prepare([("a", "x"), ("b", "y")]))
        assert [v["value"] for v in cm.as_list()] == [42.0, None]
    finally:
        store.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("42", 42), (" -3 ", -3), ("1.5", 1.5), ("16000.0", 16000.0), ("-3e2", -300.0),
    ("CM.a + 1", "CM.a + 1"), ("abs(M1.power)", "abs(M1.power)")])
def test_query_text_is_a_number_when_it_reads_as_one(text, expected):
    value = parse_text("v", text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1e999"])
def test_query_text_never_takes_non_finite_numbers(text):
    with pytest.raises(CmVarError):
        parse_text("v", text)
