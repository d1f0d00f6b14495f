"""The /cnf dispatcher: unknown commands, encodings, and the JSON error shape."""

from __future__ import annotations


async def test_unknown_command_is_400_json(cb):
    status, body = await cb.client.get("no_such_thing")
    assert (status, body) == (400, "unknown command")


async def test_missing_cmd(cb):
    status, body = await cb.client.raw("GET", "/cnf")
    assert (status, body) == (400, "missing parameter cmd")


async def test_percent_encoded_query_and_double_slash(cb):
    status, body = await cb.client.raw("GET", "/cnf?cmd%3Dget_dev_info")
    assert status == 200 and "params" in body
    status, body = await cb.client.raw("GET", "//cnf?cmd=get_dev_info")
    assert status == 200 and "params" in body


async def test_integers_beyond_64_bits_are_refused_not_crashing(cb):
    for value in ("9223372036854775808", "-9223372036854775809", "1e30"):
        status, body = await cb.client.get("get_transactions", **{"from": value})
        assert status == 400 and "out of range" in body
    status, _ = await cb.client.get("get_transactions", **{"from": "9223372036854775807"})
    assert status == 200
