"""The cross-site guard of `/cnf`: a state-changing command sent by a browser for another site's
page (`Sec-Fetch-Site` other than same-origin/none, or a foreign `Origin`) is refused with 403
before anything runs, even with valid admin credentials; read-only commands and clients that
send neither header (curl, scripts) are unaffected."""

from __future__ import annotations

import pytest

from chargebrain.api.auth import READ_ONLY_COMMANDS, cross_site_refusal
from chargebrain.api.handlers import all_commands
from tests.support.server import ADMIN_AUTH

FOREIGN = [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
           {"Origin": "http://evil.example"}, {"Origin": "null"},
           {"Origin": "http://127.0.0.1:1"},  # same machine, another port: another origin
           {"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}]


def own(base_url: str) -> list[dict[str, str]]:
    return [{}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
            {"Origin": base_url}, {"Sec-Fetch-Site": "same-origin", "Origin": base_url}]


async def call(cb, method: str, query: str, headers: dict[str, str], body: str | None = None
               ) -> tuple[int, object]:
    session = cb.client.session
    async with session.request(method, cb.client.base_url + "/cnf?" + query, data=body,
                               headers={"Authorization": ADMIN_AUTH, **headers}) as resp:
        return resp.status, await resp.json(content_type=None)


async def title(cb) -> str:
    _, params = await cb.client.get("get_params")
    return params["title"]


def test_read_only_commands_exist():
    """A typo in the list would leave a read-only command guarded and let nothing through;
    `get_usage` comes with the usage recorder (another branch)."""
    assert READ_ONLY_COMMANDS - set(all_commands()) <= {"get_usage"}


@pytest.mark.parametrize("cmd", sorted(set(all_commands()) - READ_ONLY_COMMANDS))
def test_every_state_changing_command_is_guarded(cmd):
    err = cross_site_refusal(cmd, {"Sec-Fetch-Site": "cross-site"}, "127.0.0.1:4712")
    assert err is not None and err.status == 403
    assert cross_site_refusal(cmd, {"Origin": "http://127.0.0.1:4712"}, "127.0.0.1:4712") is None
    assert cross_site_refusal(cmd, {}, "127.0.0.1:4712") is None


@pytest.mark.parametrize("origin,host,same", [
    ("http://127.0.0.1:4712", "127.0.0.1:4712", True),
    ("HTTP://Box.local", "box.local:80", True),
    ("https://box.local", "box.local:443", True),
    ("https://box.local", "box.local:80", False),
    ("http://box.local.evil", "box.local", False),
    ("file://", "box.local", False),
    ("not a url", "box.local", False)])
def test_origin_comparison(origin, host, same):
    assert (cross_site_refusal("set_params", {"Origin": origin}, host) is None) is same


@pytest.mark.parametrize("headers", FOREIGN)
async def test_cross_site_writes_are_refused_and_change_nothing(cb, headers):
    before = await title(cb)
    status, body = await call(cb, "POST", "cmd=set_params", headers, '{"title":"pwned"}')
    assert status == 403 and "cross-site" in body
    status, body = await call(cb, "GET", "cmd=override_device&dev_id=E1&flags=c", headers)
    assert status == 403
    status, body = await call(cb, "GET", "cmd=sim_vehicle&dev_id=E1&plugged=1", headers)
    assert status == 403
    assert await title(cb) == before
    _, info = await cb.client.get("get_dev_info")
    e1 = next(d for d in info["devices"] if d["dev_id"] == "E1")
    assert e1["state"] == 1 and not e1.get("overrides")
    # reading stays possible (the same-origin policy keeps the answer from the other page)
    status, _ = await call(cb, "GET", "cmd=get_dev_info", headers)
    assert status == 200


async def test_same_origin_and_headerless_writes_still_work(cb):
    for n, headers in enumerate(own(cb.client.base_url)):
        status, body = await call(cb, "POST", "cmd=set_params", headers, f'{{"title":"t{n}"}}')
        assert (status, body) == (200, "ok"), headers
        assert await title(cb) == f"t{n}"


async def test_refused_before_credentials_are_checked(cb):
    """A cross-site request never counts as a failed password (nor gets a 401 challenge that
    would make the browser send cached credentials)."""
    session = cb.client.session
    async with session.get(cb.client.base_url + "/cnf?cmd=set_params",
                           headers={"Sec-Fetch-Site": "cross-site"}) as resp:
        assert resp.status == 403 and "WWW-Authenticate" not in resp.headers
    assert cb.app.auth.failures("127.0.0.1") == 0
