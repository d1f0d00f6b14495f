"""The usage graphs page over HTTP: `/ui/charts` and its files (the vendored uPlot
included) are served by the process itself, and the page follows the API's read access."""

from __future__ import annotations

from tests.support.server import ADMIN_AUTH


async def test_page_and_its_files_are_served_from_the_process(cb):
    session, base = cb.client.session, cb.client.base_url
    async with session.get(base + "/ui/charts") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    files = {"/ui/static/charts.js": "text/javascript", "/ui/static/charts.css": "text/css",
             "/ui/static/vendor/uplot/uPlot.iife.min.js": "text/javascript",
             "/ui/static/vendor/uplot/uPlot.min.css": "text/css"}
    for path, content_type in files.items():
        assert path in page
        async with session.get(base + path) as resp:
            assert (resp.status, resp.content_type) == (200, content_type), path
            assert len(await resp.read()) > 1000
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere
    # only the files shipped: a name that is not one of them is 404, whatever its path
    for missing in ("/ui/static/vendor/uplot/nothing.js", "/ui/static/vendor/uplot/LICENSE",
                    "/ui/static/vendor/%2e%2e/%2e%2e/app.py"):
        async with session.get(base + missing) as resp:
            assert resp.status == 404, missing
    async with session.get(base + "/ui/") as resp:
        assert 'href="/ui/charts#site"' in await resp.text()


async def test_page_needs_admin_only_when_reading_does(cb):
    session, url = cb.client.session, cb.client.base_url + "/ui/charts"
    assert (await cb.client.post("set_params", {"api_read_needs_auth": True}))[0] == 200
    async with session.get(url) as resp:
        assert resp.status == 401 and "WWW-Authenticate" in resp.headers
    async with session.get(url, headers={"Authorization": ADMIN_AUTH}) as resp:
        assert resp.status == 200
