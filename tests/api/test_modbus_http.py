"""`cmd=modbus` against a running server: every seed example, byte for byte, and bad input."""

from __future__ import annotations

import random

import pytest

from tests.support.server import basic

SEED_METER2_ALL = (
    '{"8000d":-821755904,"8002":1,"8003":257,"8004":16777216,"8006":256,"8007":0,'
    '"8008s":"fcf5-c46d-310c","8016s":"cFos Power Brain","8040":41,"8041":1,"8042d":1000,'
    '"8044":1,"8045":230,"8046":230,"8047":230,"8050q":0,"8054d":0,"8056":0,"8057":0,'
    '"8058q":0,"8062d":-1,"8064d":0,"8066d":0,"8068d":0,"8070":0,"8071":0,"8120d":0}')

# (request exactly as the seed writes it, status, response text exactly as the seed shows)
SEED_EXAMPLES = [
    ("/cnf?cmd=modbus&device=meter1&read=8002", 200, "1"),
    ("/cnf?cmd=modbus&device=meter1&read=8062d", 200, "-1"),
    ("/cnf?cmd=modbus&device=meter1&read=8016s", 200, '"cFos Power Brain"'),
    ("/cnf?cmd=modbus&device=meter1&read=8002&count=10", 200,
     "[1,257,256,0,256,0,26211,26165,11619,13366]"),
    ("/cnf?cmd=modbus&device=meter2&read=all", 200, SEED_METER2_ALL),
    ("/cnf?cmd=modbus&device=evse&write=8044&value=7", 200, '"ok"'),
    ('/cnf?cmd=modbus&device=evse&write=8050q&value=1"', 200, '"ok"'),
    ('/cnf?cmd=modbus&device=evse&write=8044d&value=1"', 400, '"bad modbus register size"'),
    ("/cnf?cmd=modbus&device=evse&write=8044&values=[7,230,230,230 ]", 200, '"ok"'),
]


async def raw_text(cb, path_qs, auth="admin"):
    headers = {"Authorization": cb.client.auth} if auth == "admin" else {}
    async with cb.client.session.get(cb.client.base_url + path_qs, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.text()


async def snapshot(cb):
    out = {}
    for unit in ("evse", "meter1", "meter2"):
        status, body = await cb.client.get("modbus", device=unit, read="all")
        assert status == 200
        out[unit] = body
    return out


def registers(cb):
    """Every unit's registers, read in-process (no traffic)."""
    return {u: cb.app.powerbrain.read_all(u) for u in ("evse", "meter1", "meter2")}


@pytest.mark.parametrize(("path_qs", "status", "text"), SEED_EXAMPLES)
async def test_seed_example_byte_for_byte(cb, path_qs, status, text):
    got = await raw_text(cb, path_qs)
    assert got == (status, "application/json", text)


async def test_seed_writes_are_read_back(cb):
    for path_qs, _, _ in SEED_EXAMPLES[5:]:
        await raw_text(cb, path_qs)
    status, body = await cb.client.get("modbus", device="evse", read="8044", count=4)
    assert (status, body) == (200, [7, 230, 230, 230])
    assert await cb.client.get("modbus", device="evse", read="8050q") == (200, 1)


async def test_whole_query_percent_encoded(cb):
    status, body = await cb.client.raw("GET", "/cnf?cmd%3Dmodbus%26device%3Dmeter2%26read%3Dall")
    assert status == 200 and body["8040"] == 41


async def test_reads_are_public_writes_need_admin(cb):
    assert await cb.client.get("modbus", auth=None, device="meter1", read="8002") == (200, 1)
    before = await snapshot(cb)
    status, body = await cb.client.get("modbus", auth=None, device="evse", write="8093",
                                       value="100")
    assert (status, body) == (401, "authentication required")
    status, _ = await cb.client.get("modbus", auth=basic("admin", "wrong"), device="evse",
                                    write="8093", value="100")
    assert status == 401
    assert await snapshot(cb) == before


async def test_reads_need_admin_when_api_read_needs_auth(cb):
    cb.app.params.apply({"api_read_needs_auth": True})
    status, _ = await cb.client.get("modbus", auth=None, device="meter1", read="8002")
    assert status == 401
    assert await cb.client.get("modbus", device="meter1", read="8002") == (200, 1)


async def test_several_writes_applied_in_order(cb):
    status, body = await cb.client.raw(
        "GET", "/cnf?cmd=modbus&device=evse&write=8093&value=100&write=8044&value=3"
               "&write=8044&value=5&write=8042&values=[0,500]")
    assert (status, body) == (200, "ok")
    assert await cb.client.get("modbus", device="evse", read="8093") == (200, 100)
    assert await cb.client.get("modbus", device="evse", read="8044") == (200, 5)
    assert await cb.client.get("modbus", device="evse", read="8042d") == (200, 500)


async def test_float_and_quoted_values(cb):
    assert await cb.client.raw("GET", "/cnf?cmd=modbus&device=evse&write=8093&value=160.0") \
        == (200, "ok")
    assert await cb.client.raw("GET", "/cnf?cmd=modbus&device=evse&write=8093&value=%20120%22") \
        == (200, "ok")
    assert await cb.client.get("modbus", device="evse", read="8093") == (200, 120)


async def test_write_then_read_through_post(cb):
    status, body = await cb.client.raw("POST", "/cnf?cmd=modbus&device=evse&write=8081&value=90")
    assert (status, body) == (200, "ok")
    assert await cb.client.raw("POST", "/cnf?cmd=modbus&device=evse&read=8081") == (200, 90)


BAD_REQUESTS = [
    ("device=evse", "missing parameter read or write"),
    ("read=8002", "missing parameter device"),
    ("device=meter3&read=8002", "unknown device"),
    ("device=&read=8002", "unknown device"),
    ("device=evse&read=abc", "bad register address"),
    ("device=evse&read=8002x", "unknown register suffix"),
    ("device=evse&read=80.02", "bad register address"),
    ("device=evse&read=", "bad register address"),
    ("device=evse&read=8048", "unknown modbus register: 8048"),
    ("device=meter1&read=8093", "unknown modbus register: 8093"),
    ("device=evse&read=99999", "unknown modbus register"),
    ("device=evse&read=8044d", "bad modbus register size"),
    ("device=evse&read=8062", "bad modbus register size"),
    ("device=evse&read=8016q", "bad modbus register size"),
    ("device=evse&read=8002&count=0", "count out of range"),
    ("device=evse&read=8002&count=126", "count out of range"),
    ("device=evse&read=8002&count=x", "bad value: count must be a number"),
    ("device=evse&read=8042d&count=2", "count reads raw 16-bit registers"),
    ("device=evse&read=8030&count=4", "unknown modbus register: 8032"),
    ("device=evse&write=8093&value=59", "value out of range: 8093 charging_cur_limit"),
    ("device=evse&write=8093&value=631", "value out of range"),
    ("device=evse&write=8093&value=abc", "bad value"),
    ("device=evse&write=8093&value=16.5", "bad value"),
    ("device=evse&write=8093&value=nan", "bad value"),
    ("device=evse&write=8093&value=", "bad value"),
    ("device=evse&write=8093", "missing value"),
    ("device=evse&value=100", "missing parameter read or write"),
    ("device=evse&write=8093&value=100&value=120", "value without write"),
    ("device=evse&write=8092&value=1", "register is read-only: 8092 charge_pilot_state"),
    ("device=evse&write=8000d&value=1", "register is read-only"),
    ("device=evse&write=8016s&value=hello", "register is read-only"),
    ("device=evse&write=8044d&value=1", "bad modbus register size"),
    ("device=evse&write=8044&values=[7,230,230,230,1]", "unknown modbus register: 8048"),
    ("device=evse&write=8044&values=[7,a]", "bad values"),
    ("device=evse&write=8044&values=[7,", "bad values"),
    ("device=evse&write=8044&values=[]", "bad values"),
    ("device=evse&write=8044&values={}", "bad values"),
    ("device=evse&write=8044&values=[[1]]", "bad values"),
    ("device=evse&write=8044&values=[70000]", "value out of range"),
    ("device=evse&write=8044&values=[0]", "value out of range: 8044 phases"),
    ("device=evse&write=8044d&values=[1,2]", "values takes raw 16-bit registers"),
    ("device=evse&write=8093&value=100&read=8093", "use either read or write"),
    # one bad op in a batch: nothing of the batch is applied
    ("device=evse&write=8081&value=100&write=8093&value=5", "value out of range: 8093"),
    ("device=evse&write=8044&value=7&write=8090&value=1", "register is read-only: 8090"),
]


@pytest.mark.parametrize(("query", "message"), BAD_REQUESTS)
async def test_bad_input_is_a_400_json_string_and_changes_nothing(cb, query, message):
    before = await snapshot(cb)
    status, ctype, text = await raw_text(cb, f"/cnf?cmd=modbus&{query}")
    assert status == 400 and ctype == "application/json"
    assert text.startswith('"' + message), text
    assert await snapshot(cb) == before


async def test_random_requests_never_fail_with_5xx_and_refusals_change_nothing(cb):
    rng = random.Random(20260512)
    names = ["device", "read", "write", "value", "values", "count", "x"]
    pool = ["evse", "meter1", "meter2", "all", "8093", "8044", "8042d", "8050q", "8016s",
            "8096s", "8120d", "8000", "8005", "8070", "8071", "8086", "0", "-1", "65536",
            "1e9", "[1,2]", "[65535,-32768]", "[", "\"7\"", "abc", "60", "630", "1", "", "%00",
            "8093d", "8044q", "7.0", "0x10", "[1e3]", "[true]", "null", "8040", "248"]
    for _ in range(300):
        parts = [f"{rng.choice(names)}={rng.choice(pool)}" for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.8:
            parts.insert(0, f"device={rng.choice(['evse', 'meter1', 'meter2'])}")
        before = registers(cb)
        status, ctype, text = await raw_text(cb, "/cnf?cmd=modbus&" + "&".join(parts))
        assert status in (200, 400), (parts, status, text)
        assert ctype == "application/json"
        if status == 400:
            assert text.startswith('"') and text.endswith('"')
            assert registers(cb) == before, parts
