"""The UI's pages over HTTP: served like the dashboard (READ), `/ui/whoami` never challenges,
the simulation page stays the password check."""

from __future__ import annotations

import pytest

from tests.support.server import ADMIN_AUTH, basic


@pytest.mark.parametrize("path,module", [("/ui/config", "config.js"),
                                         ("/ui/transactions", "transactions.js")])
async def test_pages_are_served_and_follow_read_needs_auth(cb, path, module):
    session, url = cb.client.session, cb.client.base_url + path
    async with session.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert f"/ui/static/{module}" in await resp.text()
    async with session.get(cb.client.base_url + f"/ui/static/{module}") as resp:
        assert (resp.status, resp.content_type) == (200, "text/javascript")
    assert (await cb.client.post("set_params", {"api_read_needs_auth": True}))[0] == 200
    async with session.get(url) as resp:
        assert resp.status == 401
    async with session.get(url, headers={"Authorization": ADMIN_AUTH}) as resp:
        assert resp.status == 200


async def test_whoami_tells_without_a_challenge(cb):
    session, url = cb.client.session, cb.client.base_url + "/ui/whoami"
    cb.app.auth.max_delay_s = 0.0
    for headers, admin in (({}, False), ({"Authorization": basic("admin", "wrong")}, False),
                           ({"Authorization": ADMIN_AUTH}, True)):
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 200 and "WWW-Authenticate" not in resp.headers
            assert (await resp.json())["admin"] is admin
    # a wrong password here is a failed attempt like on /cnf (the slowdown counts it)
    assert cb.app.auth.failures("127.0.0.1") == 0  # reset by the right one
    async with session.get(url, headers={"Authorization": basic("admin", "wrong")}):
        pass
    assert cb.app.auth.failures("127.0.0.1") == 1


async def test_sim_page_needs_the_admin(cb):
    url = cb.client.base_url + "/ui/en/sim.htm"
    async with cb.client.session.get(url) as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
    async with cb.client.session.get(url, headers={"Authorization": ADMIN_AUTH}) as resp:
        assert resp.status == 200 and "/ui/static/sim.js" in await resp.text()
