"""Admin authentication: hashing, Basic parsing, 401s, the failure slowdown, localhost_is_admin,
api_read_needs_auth, change_admin_pwd, /ui/en/sim.htm, and the password never in plain text."""

from __future__ import annotations

import asyncio
import base64
import urllib.request

import pytest

from chargebrain.api.auth import (
    Authenticator,
    failure_delay_s,
    hash_password,
    parse_basic,
    verify_password,
)
from chargebrain.params import Params
from chargebrain.store.db import Store
from tests.support.server import ADMIN_PASSWORD, ServerProcess, basic


def test_hash_and_verify():
    record = hash_password("s3cret-pw")
    assert record["alg"] == "scrypt" and "s3cret-pw" not in str(record)
    assert verify_password("s3cret-pw", record)
    assert not verify_password("s3cret-pW", record)
    assert hash_password("s3cret-pw") != record  # salted


@pytest.mark.parametrize("record", [{}, {"salt": "zz", "hash": "00"}, {"salt": "00"},
                                    {"salt": "00", "hash": "00", "n": "x"}])
def test_malformed_hash_record_never_matches(record):
    assert verify_password("x", record) is False


def test_parse_basic():
    def header(raw: bytes) -> str:
        return "Basic " + base64.b64encode(raw).decode()

    assert parse_basic(header(b"admin:pw:with:colons")) == ("admin", "pw:with:colons")
    assert parse_basic("basic " + base64.b64encode(b"admin:").decode()) == ("admin", "")
    assert parse_basic(header(b"no-colon")) is None
    assert parse_basic("Basic !!!") is None
    assert parse_basic(header(b"\xff:\xfe")) is None
    assert parse_basic("Bearer abc") is None
    assert parse_basic(None) is None


def test_failure_delay_grows_and_is_capped():
    delays = [failure_delay_s(n, 3, 2.0) for n in range(1, 11)]
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays[3:] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert failure_delay_s(10**6, 3, 2.0) == 2.0


async def test_slowdown_per_address_with_a_driven_clock(tmp_path):
    store = Store.open(tmp_path)
    clock = [1000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    auth = Authenticator(store, Params(store), clock=lambda: clock[0], sleep=sleep)
    auth.set_password("right-password")
    wrong = basic("admin", "wrong")
    for _ in range(5):
        principal = await auth.principal(wrong, "10.0.0.5")
        assert not principal.is_admin and principal.basic_failed
    assert slept == [0.1, 0.2] and auth.failures("10.0.0.5") == 5
    await auth.principal(wrong, "10.0.0.6")  # another address is not slowed by the first
    assert slept == [0.1, 0.2] and auth.failures("10.0.0.6") == 1
    # user credential failures count too
    await auth.note_failure("10.0.0.5")
    assert slept[-1] == 0.4
    # the window passes: counting starts again
    clock[0] += Authenticator.FAIL_WINDOW_S + 1
    assert auth.failures("10.0.0.5") == 0
    await auth.principal(wrong, "10.0.0.5")
    assert slept[-1] == 0.4 and auth.failures("10.0.0.5") == 1
    # success clears the address
    ok = await auth.principal(basic("admin", "right-password"), "10.0.0.5")
    assert ok.is_admin and auth.failures("10.0.0.5") == 0
    # only user "admin"
    assert not (await auth.principal(basic("root", "right-password"), "10.0.0.7")).is_admin


async def test_ensure_password(tmp_path):
    store = Store.open(tmp_path)
    auth = Authenticator(store, Params(store))
    generated = auth.ensure_password(None)
    assert generated and len(generated) >= 12 and auth.check_password(generated)
    assert auth.ensure_password(None) is None  # only the first start generates one
    assert auth.check_password(generated)
    stored = store.kv_get("secret", "admin_password")
    assert auth.ensure_password("explicit-pw") is None
    assert auth.check_password("explicit-pw") and not auth.check_password(generated)
    assert store.kv_get("secret", "admin_password") != stored
    again = store.kv_get("secret", "admin_password")
    auth.ensure_password("explicit-pw")  # same password: the record is left alone
    assert store.kv_get("secret", "admin_password") == again


async def test_missing_and_wrong_credentials_answer_401_with_www_authenticate(cb):
    cb.app.auth.max_delay_s = 0.0
    for auth in (None, basic("admin", "wrong"), basic("root", ADMIN_PASSWORD), "Bearer x"):
        async with cb.client.session.get(cb.client.base_url + "/cnf?cmd=get_users",
                                         headers={"Authorization": auth} if auth else {}
                                         ) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
            assert resp.content_type == "application/json"
    assert await cb.client.get("get_users", auth=None) == (401, "authentication required")
    assert await cb.client.get("get_users", auth=basic("admin", "x")) == (
        401, "wrong user name or password")
    assert (await cb.client.get("get_users"))[0] == 200


async def test_read_only_calls_accept_any_basic_unless_reads_need_auth(cb):
    cb.app.auth.max_delay_s = 0.0
    wrong = basic("admin", "nope")
    assert (await cb.client.get("get_dev_info", auth=wrong))[0] == 200
    assert (await cb.client.get("get_dev_info", auth=None))[0] == 200
    assert (await cb.client.post("set_params", {"api_read_needs_auth": True}))[0] == 200
    assert (await cb.client.get("get_dev_info", auth=None))[0] == 401
    assert (await cb.client.get("get_dev_info", auth=wrong))[0] == 401
    assert (await cb.client.get("get_dev_info"))[0] == 200
    # enter_rfid stays public: the PIN/RFID is the credential
    assert (await cb.client.get("enter_rfid", auth=None, rfid="1"))[0] == 403


async def test_localhost_is_admin(cb):
    assert (await cb.client.get("get_users", auth=None))[0] == 401
    assert (await cb.client.post("set_params", {"localhost_is_admin": True}))[0] == 200
    assert await cb.client.get("get_users", auth=None) == (200, [])
    status, _ = await cb.client.raw("GET", "/ui/en/sim.htm", auth=None)
    assert status == 200
    assert (await cb.client.post("set_params", {"localhost_is_admin": False}))[0] == 200
    assert (await cb.client.get("get_users", auth=None))[0] == 401


async def test_sim_page_is_the_password_check(cb):
    cb.app.auth.max_delay_s = 0.0
    url = cb.client.base_url + "/ui/en/sim.htm"
    for auth in (None, basic("admin", "wrong")):
        async with cb.client.session.get(url, headers={"Authorization": auth} if auth else {}
                                         ) as resp:
            assert resp.status == 401 and "Basic" in resp.headers["WWW-Authenticate"]
    async with cb.client.session.get(url, headers={"Authorization": basic(
            "admin", ADMIN_PASSWORD)}) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "sim_vehicle" in await resp.text()


async def test_change_admin_pwd(cb):
    cb.app.auth.max_delay_s = 0.0
    client = cb.client
    assert await client.get("change_admin_pwd", old_pwd="x", new_pwd="long-enough-pw") == (
        403, "old_pwd is wrong")
    assert await client.get("change_admin_pwd", old_pwd=ADMIN_PASSWORD, new_pwd="short") == (
        400, "new_pwd must be 8 to 128 characters")
    assert await client.get("change_admin_pwd", old_pwd=ADMIN_PASSWORD) == (
        400, "missing parameter new_pwd")
    assert await client.get("change_admin_pwd", auth=None, old_pwd=ADMIN_PASSWORD,
                            new_pwd="long-enough-pw") == (401, "authentication required")
    assert cb.app.auth.check_password(ADMIN_PASSWORD)  # nothing changed so far
    assert await client.get("change_admin_pwd", old_pwd=ADMIN_PASSWORD,
                            new_pwd="long-enough-pw") == (200, "ok")
    assert (await client.get("get_users"))[0] == 401  # the old password is gone at once
    new = basic("admin", "long-enough-pw")
    assert (await client.get("get_users", auth=new))[0] == 200
    status, _ = await client.raw("GET", "/ui/en/sim.htm", auth=new)
    assert status == 200


def test_password_never_in_plain_text_in_data_dir_or_log(tmp_path):
    data = tmp_path / "data"
    first = "First-Secret-pw-1"
    second = "Second-Secret-pw-2"
    server = ServerProcess(data, modbus=False, password=first)
    server.start()
    try:
        auth = base64.b64encode(f"admin:{first}".encode()).decode()
        query = f"/cnf?cmd=change_admin_pwd&old_pwd={first}&new_pwd={second}"
        request = urllib.request.Request(server.base_url + query,
                                         headers={"Authorization": "Basic " + auth})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        request = urllib.request.Request(server.base_url + "/cnf?cmd=get_users", headers={
            "Authorization": "Basic " + base64.b64encode(f"admin:{second}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
    finally:
        server.stop()
    files = [p for p in data.rglob("*") if p.is_file()] + [server.log_path]
    assert any(p.name.endswith(".sqlite3") for p in files)
    for path in files:
        content = path.read_bytes()
        for secret in (first, second):
            assert secret.encode() not in content, path
            assert secret.encode("utf-16-le") not in content, path


def test_generated_password_is_printed_once_and_stored_only_hashed(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, modbus=False, password=None)
    server.start()
    try:
        console = server.log_path.read_text()
        line = next(x for x in console.splitlines() if "generated admin password" in x)
        password = line.rsplit(":", 1)[1].strip()
        request = urllib.request.Request(server.base_url + "/cnf?cmd=get_users", headers={
            "Authorization": basic("admin", password)})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
    finally:
        assert server.stop() == 0
    server.start()  # a second start keeps the password and prints nothing
    server.stop()
    assert server.log_path.read_text().count(password) == 1
    for path in (p for p in data.rglob("*") if p.is_file()):
        assert password.encode() not in path.read_bytes(), path


async def test_a_check_racing_a_password_change_is_not_cached(tmp_path):
    store = Store.open(tmp_path)
    auth = Authenticator(store, Params(store))
    auth.set_password("old-password")
    old = basic("admin", "old-password")
    checking = asyncio.create_task(auth.principal(old, "10.0.0.9"))
    await asyncio.sleep(0)  # the check has read the old hash and waits for its thread
    auth.set_password("new-password")
    assert (await checking).is_admin  # it was right when it was asked
    assert not (await auth.principal(old, "10.0.0.9")).is_admin  # but is not remembered
