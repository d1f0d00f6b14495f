"""The dashboard's HTTP side: `/` → `/ui/`, the page and its files, the `/ui/events` stream of
get_dev_info snapshots (live after a push, admin vs public view, READ access), and a stop that
does not wait for open streams."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from tests.support.server import ADMIN_AUTH, basic


async def add_meter(cb) -> str:
    status, body = await cb.client.post("set_device", {"devices": [{"dev_type": "meter_ajax"}]})
    assert (status, body) == (200, "ok")
    return cb.app.devices.all()[-1].dev_id


async def next_state(resp: aiohttp.ClientResponse) -> dict:
    """The data of the next `state` event on an open SSE response."""
    event = None
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "state":
            return json.loads(line[6:])


def power_of(info: dict, dev_id: str) -> int:
    return next(d for d in info["devices"] if d["dev_id"] == dev_id)["power_w"]


async def test_root_redirects_and_page_and_files_are_served(cb):
    session, base = cb.client.session, cb.client.base_url
    for path in ("/", "/ui"):
        async with session.get(base + path, allow_redirects=False) as resp:
            assert (resp.status, resp.headers["Location"]) == (302, "/ui/")
    async with session.get(base + "/ui/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    for name, content_type in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        assert f"/ui/static/{name}" in page
        async with session.get(base + f"/ui/static/{name}") as resp:
            assert (resp.status, resp.content_type) == (200, content_type)
            assert len(await resp.read()) > 1000
    async with session.get(base + "/ui/static/nothing.js") as resp:
        assert resp.status == 404


async def test_stream_sends_the_snapshot_then_each_push(cb):
    m3 = await add_meter(cb)
    async with cb.client.session.get(cb.client.base_url + "/ui/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await next_state(resp)
        _, info = await cb.client.get("get_dev_info")
        assert [d["dev_id"] for d in first["devices"]] == [d["dev_id"] for d in info["devices"]]
        assert (await cb.client.post("set_ajax_meter", {"power_w": 1234}, dev_id=m3))[0] == 200
        started = time.monotonic()
        while power_of(await next_state(resp), m3) != 1234:
            pass
        # pushed at once, not with the next cycle (3 s here)
        assert time.monotonic() - started < 1.0


async def test_stream_shows_the_public_view_to_visitors(cb):
    url = "mqtt://user:secret@broker:1883"
    assert (await cb.client.post("set_params", {"mqtt_url": url}))[0] == 200
    views = {}
    for who, auth in (("admin", ADMIN_AUTH), ("visitor", None)):
        headers = {"Authorization": auth} if auth else {}
        async with cb.client.session.get(cb.client.base_url + "/ui/events",
                                         headers=headers) as resp:
            views[who] = (await next_state(resp))["params"]["mqtt_url"]
    assert views == {"admin": url, "visitor": "mqtt://user:***@broker:1883"}


@pytest.mark.parametrize("path", ["/ui/", "/ui/events"])
async def test_read_needs_auth_guards_page_and_stream(cb, path):
    session, url = cb.client.session, cb.client.base_url + path
    async with session.get(url) as resp:
        assert resp.status == 200  # open by default, as get_dev_info
    assert (await cb.client.post("set_params", {"api_read_needs_auth": True}))[0] == 200
    for auth in (None, basic("admin", "wrong-password")):
        headers = {"Authorization": auth} if auth else {}
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="chargebrain"'
    async with session.get(url, headers={"Authorization": ADMIN_AUTH}) as resp:
        assert resp.status == 200
    async with session.get(cb.client.base_url + "/ui/static/dashboard.js") as resp:
        assert resp.status == 200  # holds no data


async def test_stop_does_not_wait_for_open_streams(cb):
    async with cb.client.session.get(cb.client.base_url + "/ui/events") as resp:
        await next_state(resp)
        started = time.monotonic()
        await cb.app.stop()
        assert time.monotonic() - started < 5.0
        assert cb.app.dashboard._streams == set()
