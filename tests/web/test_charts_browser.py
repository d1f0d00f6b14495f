"""The usage graphs page in a real headless Chromium (Debian's `chromium`, driven by
Playwright) against a `--demo` chargebrain that has a recorded week of site history and
records its devices every second: the chart is drawn (the series' colour is on the canvas),
the zoom buttons switch the resolution, the CSV link serves the chart's data, and a tile's
"Usage graph" link opens that device's chart."""

from __future__ import annotations

import re
import time

from playwright.async_api import Page, expect

from chargebrain.recorder.samples import EnergyMeter, Measurement, site_key
from chargebrain.recorder.storage import UsageDb
from chargebrain.store.db import Store
from tests.support.server import running_app
from tests.web.test_dashboard_browser import TIMEOUT_MS

PV_RGB = (0xCA, 0x8A, 0x04)  # COLORS.pv_w in charts.js


def write_site_week(data_dir) -> None:
    """A week of site flows every minute up to a minute ago (PV in the daytime)."""
    store = Store.open(data_dir)
    db = UsageDb(store.path)
    meter = EnergyMeter(max_gap_s=120)
    now = int(time.time()) // 60 * 60
    samples = []
    for t in range(now - 7 * 86400, now - 60, 60):
        hour = t % 86400 / 3600
        pv = max(0, int(6000 - 700 * (hour - 12) ** 2))
        house = 400 + 300 * (int(hour) % 5)
        samples += meter.samples(t, [Measurement(site_key("pv"), pv),
                                     Measurement(site_key("house"), house),
                                     Measurement(site_key("cars"), 0),
                                     Measurement(site_key("grid"), house - pv)])
    db.write(samples)
    db.close()
    store.close()


async def colour_pixels(page: Page, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the chart's canvas have (about) the colour `rgb`."""
    return await page.evaluate("""([r, g, b]) => {
        const canvas = document.querySelector("#chart canvas");
        const ctx = canvas.getContext("2d");
        const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4) {
            if (px[i + 3] > 200 && Math.abs(px[i] - r) < 24 && Math.abs(px[i + 1] - g) < 24
                && Math.abs(px[i + 2] - b) < 24) n++;
        }
        return n;
    }""", list(rgb))


async def test_chart_page_draws_the_site_and_a_device_and_zooms(tmp_path, browser):
    write_site_week(tmp_path / "data")
    async with running_app(tmp_path / "data", demo=True, cycle_ms=500) as cb:
        assert (await cb.client.post("set_params", {"rec_interval_s": 1}))[0] == 200
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error"
                else None)
        page.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))
        base = cb.client.base_url
        # works offline: every request goes to chargebrain itself
        page.on("request", lambda req: None if req.url.startswith((base + "/", "data:"))
                else problems.append(f"elsewhere: {req.url}"))
        await page.goto(cb.client.base_url + "/ui/charts")
        chart = page.get_by_test_id("chart")
        await expect(chart).to_have_attribute("data-bucket", "60", timeout=TIMEOUT_MS)
        await expect(chart).to_have_attribute("data-rows", re.compile(r"^1[34]\d\d$"))
        assert await colour_pixels(page, PV_RGB) > 200  # the PV curve is drawn
        await expect(page.get_by_test_id("chart-status")).to_contain_text("buckets of 1 min")

        await page.get_by_role("button", name="Week").click()
        await expect(chart).to_have_attribute("data-span", "week", timeout=TIMEOUT_MS)
        await expect(chart).to_have_attribute("data-bucket", "900")
        await expect(chart).to_have_attribute("data-rows", re.compile(r"^6[6-7]\d$"))
        await expect(page.get_by_role("button", name="Week")).to_have_attribute(
            "aria-pressed", "true")
        assert await colour_pixels(page, PV_RGB) > 200
        href = await page.get_by_test_id("chart-csv").get_attribute("href")
        assert "span=week" in href and "format=csv" in href
        status, csv_text = await cb.client.raw("GET", href)
        assert status == 200 and csv_text.startswith("t,grid_w,pv_w,house_w,cars_w,")

        await page.get_by_role("button", name="Year").click()
        await expect(chart).to_have_attribute("data-bucket", "86400", timeout=TIMEOUT_MS)
        await expect(chart).to_have_attribute("data-rows", re.compile(r"^[78]$"))

        wallbox1 = cb.app.demo.ids["wallbox1"]
        await page.get_by_role("button", name="Day").click()
        await page.get_by_test_id("chart-device").select_option(wallbox1)
        await expect(chart).to_have_attribute("data-dev", wallbox1, timeout=TIMEOUT_MS)
        await expect(page.locator("#chart-title")).to_have_text("Sim-Wallbox 1")
        # the live recorder's samples of the demo wallbox (the page reloads every 30 s)
        await expect(chart).not_to_have_attribute("data-rows", "0", timeout=40000)
        assert problems == []


async def test_a_tile_links_to_its_usage_graph(tmp_path, browser):
    async with running_app(tmp_path / "data") as cb:
        page = await browser.new_page()
        await page.goto(cb.client.base_url + "/ui/")
        await page.locator('.tile[data-dev="M2"] a.graph').click()
        await expect(page).to_have_url(re.compile(r"/ui/charts#M2$"), timeout=TIMEOUT_MS)
        await expect(page.get_by_test_id("chart")).to_have_attribute(
            "data-dev", "M2", timeout=TIMEOUT_MS)
        await expect(page.get_by_test_id("chart-device")).to_have_value("M2")
