"""Regenerate the screenshots in docs/screenshots/ (shown in the README and docs/web.md).

    bin/screenshots            # or: .venv/bin/python -m tools.screenshots [--out DIR]

Starts a `--demo` chargebrain in this process on a free loopback port (no Modbus, no OCPP
server, a throw-away data directory), lets the demo run a few cycles, and photographs the pages
in Debian's headless Chromium (Playwright): the dashboard (desktop and phone width), the usage
graphs page (when this build has one), the configuration page and the simulation page.

A fresh demo has recorded only seconds of usage, so before the photographed start the tool
writes a synthetic past day into the usage recorder's tables: the demo's own house and PV
curves (`sim/demo.py`) and its cars' visits at their maximum current, scaled to the demo's 25 A
site limit, one sample a minute. The chart shows that day, not a recording.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

from chargebrain.app import ChargeBrain, Settings

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


SITE_LIMIT_MA = 25000  # the demo's max_total_current
VOLTS = 230


def seed_usage_day(data_dir: Path, ids: dict[str, str], end_s: int) -> bool:
    """Write a synthetic day (see the module's doc) ending at `end_s`; False when this build
    has no usage recorder."""
    try:
        from chargebrain.recorder.samples import EnergyMeter, Measurement, site_key
        from chargebrain.recorder.storage import UsageDb
    except ImportError:
        return False
    from chargebrain.sim.demo import BOXES, house_w, pv_w
    from chargebrain.store.db import Store

    store = Store.open(data_dir)
    db = UsageDb(store.path)
    meter = EnergyMeter(max_gap_s=3600)
    batch = []
    for t in range(end_s - 86400, end_s, 60):
        local = time.localtime(t)
        hour = local.tm_hour + local.tm_min / 60
        house, pv = house_w(hour), pv_w(hour)
        wanted = {box.key: min(box.max_ma, box.car.max_current_ma) * box.car.phases * VOLTS // 1000
                  for box in BOXES if box.visit_at(hour) is not None}
        room_w = max(0, SITE_LIMIT_MA * 3 * VOLTS // 1000 - house + pv)
        scale = min(1.0, room_w / max(1, sum(wanted.values())))
        cars = {key: int(power * scale) for key, power in wanted.items()}
        total = sum(cars.values())
        grid = house + total - pv
        batch += meter.samples(t, [
            *(Measurement(ids[key], power, state=3 if power else 2) for key, power in cars.items()),
            Measurement(ids["house"], house), Measurement(ids["pv"], pv),
            Measurement(ids["grid"], grid),
            Measurement(site_key("grid"), grid), Measurement(site_key("pv"), pv),
            Measurement(site_key("house"), house), Measurement(site_key("cars"), total)])
        if len(batch) > 2000:
            db.write(batch)
            batch = []
    db.write(batch)
    db.close()
    store.close()
    return True


def demo_app(data: Path, password: str) -> ChargeBrain:
    return ChargeBrain(Settings(data_dir=data, host="127.0.0.1", port=0, modbus_port=0,
                                ocpp_port=0, admin_password=password, cycle_ms=500, demo=True))


async def shoot(out: Path) -> list[str]:
    password = secrets.token_urlsafe(12)
    taken: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        app = demo_app(data, password)  # a first start creates the demo's devices
        await app.start()
        ids = dict(app.demo.ids)
        await app.stop()
        seeded = seed_usage_day(data, ids, int(time.time()) // 60 * 60 - 60)
        app = demo_app(data, password)
        await app.start()
        base = f"http://127.0.0.1:{app.http_port}"
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM)
                context = await browser.new_context(
                    viewport={"width": 1280, "height": 900},
                    http_credentials={"username": "admin", "password": password})
                page = await context.new_page()
                await page.goto(base + "/ui/")
                await page.get_by_test_id("connection").filter(has_text="live").wait_for()
                await asyncio.sleep(3)  # a few demo cycles: cars charging, PV and house moving
                await page.screenshot(path=out / "dashboard.png", full_page=True)
                taken.append("dashboard.png")
                phone = await browser.new_context(viewport={"width": 390, "height": 844},
                                                  device_scale_factor=2, is_mobile=True)
                mobile = await phone.new_page()
                await mobile.goto(base + "/ui/")
                await mobile.get_by_test_id("connection").filter(has_text="live").wait_for()
                await asyncio.sleep(1)
                await mobile.screenshot(path=out / "dashboard-phone.png")
                taken.append("dashboard-phone.png")
                response = await page.goto(base + "/ui/charts#site")
                if seeded and response is not None and response.status == 200:
                    await asyncio.sleep(3)
                    await page.screenshot(path=out / "charts.png", full_page=True)
                    taken.append("charts.png")
                else:
                    print("no usage graphs page in this build: charts.png not taken",
                          file=sys.stderr)
                await page.goto(base + "/ui/")
                await page.evaluate(
                    """pw => sessionStorage.setItem('chargebrain-signin', JSON.stringify(
                    {kind: 'admin', auth: 'Basic ' + btoa('admin:' + pw)}))""", password)
                await page.goto(base + "/ui/config#devices")
                await page.locator('tr[data-dev="E3"]').get_by_role("button",
                                                                    name="Edit").click()
                await page.screenshot(path=out / "config.png", full_page=True)
                taken.append("config.png")
                await page.goto(base + "/ui/en/sim.htm")
                await page.get_by_test_id("sim-evse").first.wait_for()
                await asyncio.sleep(1.5)
                await page.screenshot(path=out / "simulation.png", full_page=True)
                taken.append("simulation.png")
                await browser.close()
        finally:
            await app.stop()
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    taken = asyncio.run(shoot(args.out))
    print("wrote " + ", ".join(str(args.out / name) for name in taken))


if __name__ == "__main__":
    main()
