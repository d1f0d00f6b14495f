"""A hostile page on another port, opened in a browser that is signed in as admin (the browser
holds the Basic credentials for chargebrain), tries an `<img>` GET, a form POST and a fetch
against `/cnf`: every one is refused with 403 and nothing changes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.support.ports import free_port
from tests.support.server import ADMIN_PASSWORD, running_app

HOSTILE = """<!doctype html><html><body>
<img src="{cb}/cnf?cmd=override_device&dev_id=E1&flags=c">
<iframe name="sink"></iframe>
<form id="f" method="post" enctype="text/plain" target="sink"
      action="{cb}/cnf?cmd=set_params">
<input name='{{"title":"pwned","x":"' value='"}}'>
</form>
<script>
document.getElementById("f").submit();
fetch("{cb}/cnf?cmd=sim_vehicle&dev_id=E1&plugged=1", {{method: "POST", mode: "no-cors",
      credentials: "include"}}).then(() => {{ window.fetched = true; }},
                                       () => {{ window.fetched = true; }});
</script></body></html>"""


async def serve_hostile(cb_url: str) -> tuple[web.AppRunner, str]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=HOSTILE.format(cb=cb_url), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


async def test_hostile_page_changes_nothing(tmp_path, browser):
    async with running_app(tmp_path / "data") as cb:
        base = cb.client.base_url
        context = await browser.new_context(
            http_credentials={"username": "admin", "password": ADMIN_PASSWORD})
        page = await context.new_page()
        # signed in: the admin page opens (the browser now answers challenges for this host)
        assert (await page.goto(base + "/ui/en/sim.htm")).status == 200
        _, before = await cb.client.get("get_params")
        answers: dict[str, int] = {}
        page = await context.new_page()  # the hostile page in another tab of that browser
        page.on("response", lambda r: answers.__setitem__(r.url.split("cmd=")[1].split("&")[0],
                                                          r.status) if "/cnf?" in r.url else None)
        runner, hostile_url = await serve_hostile(base)
        try:
            await page.goto(hostile_url)
            await page.wait_for_function("window.fetched === true")
            for _ in range(100):
                if len(answers) == 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            await runner.cleanup()
        assert answers == {"override_device": 403, "set_params": 403, "sim_vehicle": 403}
        _, after = await cb.client.get("get_params")
        assert after["title"] == before["title"] != "pwned"
        _, info = await cb.client.get("get_dev_info")
        e1 = next(d for d in info["devices"] if d["dev_id"] == "E1")
        assert e1["state"] == 1 and not e1.get("overrides")
        _, car = await cb.client.get("sim_vehicle", dev_id="E1")
        assert car["plugged"] is False
        await context.close()
