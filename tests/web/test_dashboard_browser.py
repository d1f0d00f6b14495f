"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright): every
device of a `--demo` site gets a tile with live numbers, pushes and plug events show without a
reload, names are text, and polling takes over when the event stream is blocked."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.async_api import Browser, Page, expect
from playwright.async_api import Error as PlaywrightError

from tests.support.server import ADMIN_PASSWORD, running_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 10000
WATTS = re.compile(r"^-?\d+(\.\d)? k?W$")


async def open_dashboard(browser: Browser, base_url: str) -> tuple[Page, list[str]]:
    """The dashboard, loaded; the list collects script errors and failed requests."""
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("requestfailed", lambda req: problems.append(f"failed: {req.url}")
            if not req.url.endswith("/ui/events") else None)  # a stream ends at close
    await page.goto(base_url + "/")
    assert page.url == base_url + "/ui/"
    await page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    return page, problems


def tile(page: Page, dev_id: str):
    return page.locator(f'.tile[data-dev="{dev_id}"]')


def field(page: Page, dev_id: str, name: str):
    return tile(page, dev_id).locator(f'tr[data-field="{name}"] td')


async def test_demo_site_shows_every_device_and_follows_a_plug_event(tmp_path, browser):
    async with running_app(tmp_path / "data", demo=True, cycle_ms=500) as cb:
        page, problems = await open_dashboard(browser, cb.client.base_url)
        await expect(page.get_by_test_id("connection")).to_have_text("live", timeout=TIMEOUT_MS)
        _, info = await cb.client.get("get_dev_info")
        names = {d["dev_id"]: d["name"] for d in info["devices"]}
        await expect(page.locator(".tile")).to_have_count(len(names), timeout=TIMEOUT_MS)
        for dev_id, name in names.items():
            await expect(tile(page, dev_id).locator(".name")).to_have_text(name)
            await expect(field(page, dev_id, "power")).to_have_text(WATTS)
        await expect(page.locator('[data-site="pv"]')).to_have_text(WATTS)
        wallbox1 = cb.app.demo.ids["wallbox1"]
        await expect(tile(page, wallbox1).locator(".state")).to_have_text(
            "Charging", timeout=TIMEOUT_MS)
        status, _ = await cb.client.get("sim_vehicle", dev_id=wallbox1, plugged=0)
        assert status == 200
        await expect(tile(page, wallbox1).locator(".state")).to_have_text(
            "Standby", timeout=TIMEOUT_MS)
        await expect(field(page, wallbox1, "power")).to_have_text("0 W", timeout=TIMEOUT_MS)
        assert await page.evaluate("window.loadedOnce") is True
        assert problems == []


async def test_pushed_meter_values_show_without_reload_and_names_stay_text(tmp_path, browser):
    name = '<img src=x onerror="window.injected=1"><b>Grid</b>'
    async with running_app(tmp_path / "data") as cb:
        status, _ = await cb.client.post("set_device", {"devices": [
            {"dev_type": "meter_ajax", "name": name, "com_timeout_ms": 600000}]})
        assert status == 200
        m3 = cb.app.devices.all()[-1].dev_id
        page, problems = await open_dashboard(browser, cb.client.base_url)
        await expect(tile(page, m3).locator(".name")).to_have_text(name, timeout=TIMEOUT_MS)
        for power_w, shown in ((1234, "1234 W"), (-23456, "-23.5 kW")):
            await cb.client.post("set_ajax_meter", {"power_w": power_w}, dev_id=m3)
            # the cycle runs every 3 s: well under that means the push itself was streamed
            await expect(field(page, m3, "power")).to_have_text(shown, timeout=2000)
        assert await page.evaluate("window.loadedOnce") is True
        assert await page.evaluate("window.injected") is None
        assert await tile(page, m3).locator("img, b").count() == 0
        assert problems == []


async def test_polling_takes_over_when_the_stream_is_blocked(tmp_path, browser):
    async with running_app(tmp_path / "data") as cb:
        status, _ = await cb.client.post("set_device", {"devices": [
            {"dev_type": "meter_ajax", "com_timeout_ms": 600000}]})
        assert status == 200
        m3 = cb.app.devices.all()[-1].dev_id
        page = await browser.new_page()
        await page.route("**/ui/events", lambda route: route.abort())
        await page.goto(cb.client.base_url + "/ui/")
        await expect(page.get_by_test_id("connection")).to_have_text("polling",
                                                                     timeout=TIMEOUT_MS)
        await cb.client.post("set_ajax_meter", {"power_w": 777}, dev_id=m3)
        await expect(field(page, m3, "power")).to_have_text("777 W", timeout=TIMEOUT_MS)


async def test_read_needs_auth_asks_the_browser_for_credentials(tmp_path, browser):
    async with running_app(tmp_path / "data") as cb:
        assert (await cb.client.post("set_params", {"api_read_needs_auth": True}))[0] == 200
        url = cb.client.base_url + "/ui/"
        visitor = await browser.new_page()
        # a challenge the headless browser cannot answer (no one to type the password)
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            await visitor.goto(url)
        context = await browser.new_context(
            http_credentials={"username": "admin", "password": ADMIN_PASSWORD})
        admin = await context.new_page()
        assert (await admin.goto(url)).status == 200
        await expect(admin.get_by_test_id("connection")).to_have_text("live", timeout=TIMEOUT_MS)
        await expect(tile(admin, "E1")).to_be_visible()
        await context.close()
