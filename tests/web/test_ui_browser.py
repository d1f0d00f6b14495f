"""The web UI in headless Chromium against a real chargebrain on loopback: sign-in, the
configuration pages, the simulation page driving the dashboard, transactions and their CSV, what
a visitor may do, and names shown as text."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from playwright.async_api import Error as PlaywrightError

from tests.support.server import ADMIN_PASSWORD, running_app, wait_until

TIMEOUT_MS = 10000
MARKUP = '<img src=x onerror="window.injected=1"><b>x</b>'


def watch(page: Page) -> list[str]:
    """Collect script errors of `page` (a failing page must fail the test)."""
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    return problems


async def sign_in_admin(page: Page, base_url: str, path: str = "/ui/config") -> None:
    """Sign in through the page's own dialog (the password goes to sessionStorage)."""
    await page.goto(base_url + path)
    await page.get_by_test_id("signin-button").click()
    await page.get_by_label("Admin password").fill(ADMIN_PASSWORD)
    await page.get_by_role("button", name="Sign in as admin").click()
    await expect(page.get_by_test_id("who")).to_have_text("admin", timeout=TIMEOUT_MS)


async def admin_context(browser: Browser) -> BrowserContext:
    """A browser that answers the Basic prompt (needed for /ui/en/sim.htm, as the original)."""
    return await browser.new_context(
        http_credentials={"username": "admin", "password": ADMIN_PASSWORD})


def tile(page: Page, dev_id: str):
    return page.locator(f'.tile[data-dev="{dev_id}"]')


def field(page: Page, dev_id: str, name: str):
    return tile(page, dev_id).locator(f'tr[data-field="{name}"] td')


async def test_plugging_on_the_sim_page_updates_the_dashboard_and_stop_zeroes(tmp_path, browser):
    async with running_app(tmp_path / "data", demo=True, cycle_ms=500) as cb:
        context = await admin_context(browser)
        dash = await context.new_page()
        problems = watch(dash)
        await dash.goto(cb.client.base_url + "/ui/")
        await expect(dash.get_by_test_id("connection")).to_have_text("live", timeout=TIMEOUT_MS)
        await dash.evaluate("window.loadedOnce = true")
        _, info = await cb.client.get("get_dev_info")
        await expect(dash.locator(".tile")).to_have_count(len(info["devices"]))
        sim = await context.new_page()
        problems += watch(sim)
        assert (await sim.goto(cb.client.base_url + "/ui/en/sim.htm")).status == 200
        boxes = [d["dev_id"] for d in info["devices"] if d["dev_type"] == "evse_sim"]
        await expect(sim.get_by_test_id("sim-evse")).to_have_count(len(boxes) + 1)  # + E1
        box = boxes[0]
        sim_tile = sim.locator(f'[data-testid="sim-evse"][data-dev="{box}"]')
        await sim_tile.get_by_role("button", name="Unplug").click()
        await expect(tile(dash, box).locator(".state")).to_have_text("Standby", timeout=TIMEOUT_MS)
        await sim_tile.get_by_label("Car max current (mA)").fill("10000")
        await sim_tile.get_by_role("button", name="Plug in").click()
        await expect(tile(dash, box).locator(".state")).to_have_text(
            re.compile("Charging|Car connected"), timeout=TIMEOUT_MS)
        _, car = await cb.client.get("sim_vehicle", dev_id=box)
        assert car["plugged"] is True and car["max_current"] == 10000
        # stop: every car unplugged, every simulated meter at 0 W
        await sim.get_by_test_id("stop-sim").click()
        await expect(sim.locator("#stop-status")).to_have_text(re.compile("^stopped"),
                                                               timeout=TIMEOUT_MS)
        for dev_id in [*boxes, "E1"]:
            _, car = await cb.client.get("sim_vehicle", dev_id=dev_id)
            assert car["plugged"] is False, dev_id
        _, devices = await cb.client.get("get_devices")
        sims = [d for d in devices if d["dev_type"] == "meter_sim"]
        assert sims and all(d["sim_power_w"] == 0 for d in sims)
        assert await dash.evaluate("window.loadedOnce") is True
        assert problems == []
        await context.close()


async def test_a_sim_meter_value_shows_on_the_dashboard_and_leaving_zeroes_it(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        status, _ = await cb.client.post("set_device", {"devices": [
            {"dev_type": "meter_sim", "name": "Sim-Heat pump", "role": 1}]})
        assert status == 200
        meter = cb.app.devices.all()[-1].dev_id
        context = await admin_context(browser)
        dash = await context.new_page()
        await dash.goto(cb.client.base_url + "/ui/")
        sim = await context.new_page()
        problems = watch(sim)
        await sim.goto(cb.client.base_url + "/ui/en/sim.htm")
        meter_tile = sim.locator(f'[data-testid="sim-meter"][data-dev="{meter}"]')
        await meter_tile.get_by_label("Power (W)").fill("2300")
        await meter_tile.get_by_role("button", name="Set").click()
        await expect(field(dash, meter, "power")).to_have_text("2300 W", timeout=TIMEOUT_MS)
        await expect(meter_tile.locator(".live")).to_have_text("2300 W", timeout=TIMEOUT_MS)
        await sim.get_by_test_id("sim-evse").get_by_role("button", name="Plug in").click()
        await expect(tile(dash, "E1").locator(".state")).not_to_have_text("Standby",
                                                                         timeout=TIMEOUT_MS)
        await sim.close(run_before_unload=True)  # leaving the page closes the simulation

        async def zeroed() -> bool:
            _, devices = await cb.client.get("get_devices")
            _, car = await cb.client.get("sim_vehicle", dev_id="E1")
            power = next(d["sim_power_w"] for d in devices if d["dev_id"] == meter)
            return power == 0 and car["plugged"] is False

        await wait_until(zeroed)
        await expect(field(dash, meter, "power")).to_have_text("0 W", timeout=TIMEOUT_MS)
        assert problems == []
        await context.close()


async def test_create_a_user_with_a_learned_rfid_then_the_user_signs_in(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        page = await browser.new_page()
        problems = watch(page)
        await sign_in_admin(page, cb.client.base_url, "/ui/config#users")
        await page.get_by_role("button", name="New user").click()
        await page.get_by_label("Name").first.fill("Ada")
        await page.get_by_role("checkbox", name=re.compile(r"\(E1\)")).check()
        await page.get_by_role("button", name="Learn the next card (1 min)").click()
        await expect(page.get_by_test_id("learn-status")).to_have_text(
            re.compile("hold the card"), timeout=TIMEOUT_MS)
        # a card held to the wallbox (the simulated one reports it with the car)
        status, _ = await cb.client.get("sim_vehicle", dev_id="E1", plugged=1, rfid="a1b2c3d4")
        assert status == 200
        await expect(page.get_by_test_id("learn-status")).to_have_text(
            re.compile("card .*a1b2c3d4 seen at E1", re.I), timeout=TIMEOUT_MS)
        await page.locator(".card-name").last.fill("Ada's card")
        await page.get_by_role("button", name="Add card / PIN").click()
        await page.locator(".card-id").last.fill("4711")
        await page.get_by_role("button", name="Create user").click()
        await expect(page.get_by_test_id("user-list").locator(".name")).to_have_text(
            ["Ada"], timeout=TIMEOUT_MS)
        _, users = await cb.client.get("get_users")
        assert [u["name"] for u in users] == ["Ada"] and users[0]["dev_ids"] == ["E1"]
        cards = {c["id"].lower(): c["name"] for c in users[0]["rfids"]}
        assert any(k.endswith("a1b2c3d4") for k in cards) and "4711" in cards
        assert "Ada's card" in cards.values()
        # an error from the API is shown next to its field: a PIN that is taken
        await page.get_by_role("button", name="New user").click()
        await page.get_by_label("Name").first.fill("Bob")
        await page.get_by_role("button", name="Add card / PIN").click()
        await page.locator(".card-id").last.fill("4711")
        await page.get_by_role("button", name="Create user").click()
        await expect(page.locator('[data-error-for~="rfids"]')).to_contain_text("4711",
                                                                              timeout=TIMEOUT_MS)
        assert len((await cb.client.get("get_users"))[1]) == 1
        # the user signs in with the PIN and sees only their own transactions
        user_page = await browser.new_page()
        problems += watch(user_page)
        await user_page.goto(cb.client.base_url + "/ui/transactions")
        await user_page.get_by_test_id("signin-button").click()
        await user_page.get_by_label("User id or PIN").fill("4711")
        await user_page.get_by_role("button", name="Sign in as user").click()
        await expect(user_page.get_by_test_id("who")).to_have_text("user Ada", timeout=TIMEOUT_MS)
        await expect(user_page.locator("#tx")).to_be_visible(timeout=TIMEOUT_MS)
        await expect(user_page.locator("#f-user")).to_be_hidden()
        assert problems == []


async def test_changing_max_current_on_the_config_page_moves_the_plan(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        assert (await cb.client.get("sim_vehicle", dev_id="E1", plugged=1))[0] == 200
        dash = await browser.new_page()
        await dash.goto(cb.client.base_url + "/ui/")
        await expect(field(dash, "E1", "setpoint")).to_have_text("16.0 A", timeout=TIMEOUT_MS)
        page = await browser.new_page()
        problems = watch(page)
        await sign_in_admin(page, cb.client.base_url, "/ui/config#devices")
        await page.locator('tr[data-dev="E1"]').get_by_role("button", name="Edit").click()
        await page.get_by_label("max_charging_cur").fill("10000")
        await page.get_by_role("button", name="Save E1").click()
        await expect(page.get_by_test_id("device-form").locator(".form-status")).to_have_text(
            "saved")
        await expect(field(dash, "E1", "setpoint")).to_have_text("10.0 A", timeout=TIMEOUT_MS)
        # a refused value: the API's message next to the field, nothing changed
        await page.get_by_label("min_charging_cur").fill("100")
        await page.get_by_role("button", name="Save E1").click()
        await expect(page.locator('[data-error-for="min_charging_cur"]')).to_contain_text(
            "min_charging_cur", timeout=TIMEOUT_MS)
        _, devices = await cb.client.get("get_devices")
        e1 = next(d for d in devices if d["dev_id"] == "E1")
        assert (e1["max_charging_cur"], e1["min_charging_cur"]) == (10000, 6000)
        # a site parameter
        await page.goto(cb.client.base_url + "/ui/config#params")
        await page.get_by_label("title", exact=True).fill("My garage")
        await page.get_by_role("button", name="Save site parameters").click()
        await expect(dash.locator("#title")).to_have_text("My garage", timeout=TIMEOUT_MS)
        assert problems == []


async def test_transaction_csv_download(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        assert (await cb.client.get("sim_vehicle", dev_id="E1", plugged=1))[0] == 200

        async def one() -> bool:
            return len((await cb.client.get("get_transactions"))[1]) == 1

        await wait_until(one)
        context = await browser.new_context(accept_downloads=True)
        page = await context.new_page()
        problems = watch(page)
        await sign_in_admin(page, cb.client.base_url, "/ui/transactions")
        await expect(page.locator("#tx tbody tr")).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(page.locator("#tx tbody tr td").nth(1)).to_have_text("E1")
        async with page.expect_download() as info:
            await page.get_by_test_id("csv").click()
        download = await info.value
        assert download.suggested_filename == "transactions.csv"
        text = (tmp_path / "tx.csv")
        await download.save_as(text)
        lines = text.read_text().splitlines()
        assert lines[0].startswith("id,dev_id,start,end") and len(lines) == 2
        assert lines[1].split(",")[1] == "E1"
        # a date range before today shows nothing
        await page.locator("#f-to").fill("2001-01-01")
        await page.get_by_role("button", name="Show").click()
        await expect(page.locator("#tx tbody")).to_have_text("no transactions")
        assert problems == []
        await context.close()


async def test_visitor_reads_the_dashboard_but_changes_nothing(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        page = await browser.new_page()
        problems = watch(page)
        await page.goto(cb.client.base_url + "/ui/")
        await expect(page.get_by_test_id("connection")).to_have_text("live", timeout=TIMEOUT_MS)
        await expect(tile(page, "E1")).to_be_visible()
        await expect(page.get_by_test_id("who")).to_have_text("not signed in")
        await page.goto(cb.client.base_url + "/ui/config")
        await expect(page.locator("#need-admin")).to_be_visible(timeout=TIMEOUT_MS)
        await expect(page.locator("#config")).to_be_hidden()
        await page.goto(cb.client.base_url + "/ui/transactions")
        await expect(page.locator("#need-signin")).to_be_visible(timeout=TIMEOUT_MS)
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            await page.goto(cb.client.base_url + "/ui/en/sim.htm")  # 401: no one to answer
        page = await browser.new_page()
        problems += watch(page)
        await page.goto(cb.client.base_url + "/ui/")
        # the visitor's own same-origin requests are refused too: they need the admin
        # (credentials "omit": a headless browser would wait for a password dialog forever)
        statuses = await asyncio.wait_for(page.evaluate("""async () => {
            const omit = {credentials: 'omit'};
            return Promise.all([
              fetch('/cnf?cmd=set_params', {...omit, method: 'POST', body: '{"title":"x"}'}),
              fetch('/cnf?cmd=sim_vehicle&dev_id=E1&plugged=1', omit),
              fetch('/cnf?cmd=override_device&dev_id=E1&flags=c', omit),
              fetch('/cnf?cmd=get_devices', omit)].map(p => p.then(r => r.status)));
            }"""), 20)
        assert statuses == [401, 401, 401, 401]
        _, params = await cb.client.get("get_params")
        assert params["title"] == "chargebrain"
        _, car = await cb.client.get("sim_vehicle", dev_id="E1")
        assert car["plugged"] is False
        assert problems == []


async def test_names_with_markup_are_text_on_every_page(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        status, _ = await cb.client.post("set_device", {"devices": [
            {"dev_type": "evse_sim", "name": MARKUP}]})
        assert status == 200
        evse = cb.app.devices.all()[-1].dev_id
        _, uid = await cb.client.get("get_new_user_id")
        status, _ = await cb.client.post("set_user", {"id": uid, "name": MARKUP,
                                                      "dev_ids": [evse]})
        assert status == 200
        context = await admin_context(browser)
        page = await context.new_page()
        problems = watch(page)
        await sign_in_admin(page, cb.client.base_url, "/ui/")
        await expect(tile(page, evse).locator(".name")).to_have_text(MARKUP, timeout=TIMEOUT_MS)
        sim_name = f'[data-testid="sim-evse"][data-dev="{evse}"] .name'
        for path, where in (("/ui/config#devices", f'tr[data-dev="{evse}"] .name'),
                            ("/ui/config#users", '[data-testid="user-list"] .name'),
                            ("/ui/en/sim.htm", sim_name)):
            await page.goto(cb.client.base_url + path)
            await expect(page.locator(where)).to_have_text(MARKUP, timeout=TIMEOUT_MS)
            assert await page.locator("main img, main b").count() == 0, path
        await page.goto(cb.client.base_url + "/ui/config#rules")
        await expect(page.locator("#rule-owner")).to_contain_text(MARKUP, timeout=TIMEOUT_MS)
        assert await page.evaluate("window.injected") is None
        assert problems == []
        await context.close()


async def test_charging_rules_and_cm_vars_are_saved(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        advanced = {"id": 3, "cond": {"type": "time", "start": 1260, "end": 360},
                    "action": {"type": "set", "value": 6000}}
        status, _ = await cb.client.post("set_device", {"devices": [
            {"dev_id": "E1", "charging_rules": [advanced]}]})
        assert status == 200
        _, devices = await cb.client.get("get_devices")
        stored_advanced = next(d for d in devices if d["dev_id"] == "E1")["charging_rules"][0]
        page = await browser.new_page()
        problems = watch(page)
        await sign_in_admin(page, cb.client.base_url, "/ui/config#rules")
        await expect(page.get_by_test_id("rule")).to_have_count(1, timeout=TIMEOUT_MS)
        await page.get_by_role("button", name="Add rule").click()
        rule = page.get_by_test_id("rule").nth(1)
        await rule.get_by_label("Current (mA)").fill("8000")
        await rule.get_by_label("Sat").uncheck()
        await rule.get_by_label("Sun").uncheck()
        await rule.locator(".time").fill("22:30")
        await rule.get_by_label("Duration (min)").fill("480")
        await page.get_by_role("button", name="Save rules").click()
        await expect(page.locator("form .form-status")).to_have_text("saved", timeout=TIMEOUT_MS)
        _, devices = await cb.client.get("get_devices")
        rules = next(d for d in devices if d["dev_id"] == "E1")["charging_rules"]
        assert len(rules) == 2 and rules[0] == stored_advanced  # kept as it was
        assert {k: rules[1][k] for k in ("days", "current", "time", "dur", "mode", "enabled")} == {
            "days": 31, "current": 8000, "time": 22 * 60 + 30, "dur": 480, "mode": 0,
            "enabled": True}
        # a value the API refuses: its message, nothing stored
        await rule.get_by_label("Current (mA)").fill("9000000")
        await page.get_by_role("button", name="Save rules").click()
        await expect(page.locator('[data-error-for="charging_rules"]')).to_contain_text(
            "charging_rules.1.current", timeout=TIMEOUT_MS)
        _, devices = await cb.client.get("get_devices")
        assert next(d for d in devices if d["dev_id"] == "E1")["charging_rules"] == rules
        await page.goto(cb.client.base_url + "/ui/config#vars")
        await page.get_by_role("button", name="Add variable").click()
        await page.get_by_label("name", exact=True).fill("PWR")
        await page.get_by_label("value or formula").fill("70")
        await page.get_by_role("button", name="Save variables").click()
        await expect(page.locator(".var td").nth(2)).to_have_text("70", timeout=TIMEOUT_MS)
        _, cm = await cb.client.get("get_cm_vars")
        assert cm["vars"] == [{"name": "PWR", "expr": 70, "value": 70}]
        assert problems == []


async def test_tile_controls_for_admin_and_user_none_for_visitors(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        _, uid = await cb.client.get("get_new_user_id")
        status, _ = await cb.client.post("set_user", {"id": uid, "name": "Ada", "dev_ids": ["E1"],
                                                      "rfids": [{"id": "4711"}]})
        assert status == 200
        assert (await cb.client.get("sim_vehicle", dev_id="E1", plugged=1))[0] == 200
        assert (await cb.client.get("enter_rfid", rfid="4711", dev_id="E1"))[0] == 200
        visitor = await browser.new_page()
        await visitor.goto(cb.client.base_url + "/ui/")
        await expect(tile(visitor, "E1")).to_be_visible(timeout=TIMEOUT_MS)
        await expect(visitor.get_by_test_id("who")).to_have_text("not signed in")
        assert await tile(visitor, "E1").locator(".controls, button").count() == 0
        # the user, signed in by PIN, pauses their own session
        page = await browser.new_page()
        problems = watch(page)
        await page.goto(cb.client.base_url + "/ui/")
        await page.get_by_test_id("signin-button").click()
        await page.get_by_label("User id or PIN").fill("4711")
        await page.get_by_role("button", name="Sign in as user").click()
        await expect(page.get_by_test_id("who")).to_have_text("user Ada", timeout=TIMEOUT_MS)
        await tile(page, "E1").get_by_role("button", name="Pause charging").click()
        await expect(field(page, "E1", "override")).to_have_text(
            "charging paused until unplug", timeout=TIMEOUT_MS)
        await expect(tile(page, "E1").get_by_role("button", name="Resume charging")).to_be_visible()
        _, info = await cb.client.get("get_dev_info")
        assert next(d for d in info["devices"] if d["dev_id"] == "E1")["overrides"] & 1
        # the admin caps the session's current
        admin = await browser.new_page()
        problems += watch(admin)
        await sign_in_admin(admin, cb.client.base_url, "/ui/")
        await tile(admin, "E1").get_by_label("Limit (A)").fill("8")
        await tile(admin, "E1").get_by_role("button", name="Set").click()
        await expect(field(admin, "E1", "ovcur")).to_have_text("8.0 A", timeout=TIMEOUT_MS)
        await tile(admin, "E1").get_by_role("button", name="Resume charging").click()
        await expect(field(admin, "E1", "override")).to_have_count(0, timeout=TIMEOUT_MS)
        assert problems == []


async def test_change_the_admin_password(tmp_path, browser):
    async with running_app(tmp_path / "data", cycle_ms=500) as cb:
        page = await browser.new_page()
        problems = watch(page)
        await sign_in_admin(page, cb.client.base_url, "/ui/config#params")
        await page.get_by_label("Current password").fill("not-it")
        await page.get_by_label("New password (8–128)").fill("a-new-password")
        await page.get_by_role("button", name="Change admin password").click()
        await expect(page.locator('[data-error-for="old_pwd new_pwd"]')).to_have_text(
            "old_pwd is wrong", timeout=TIMEOUT_MS)
        assert cb.app.auth.check_password(ADMIN_PASSWORD)
        await page.get_by_label("Current password").fill(ADMIN_PASSWORD)
        await page.get_by_role("button", name="Change admin password").click()
        await expect(page.locator("form .form-status").last).to_have_text("password changed",
                                                                       timeout=TIMEOUT_MS)
        assert cb.app.auth.check_password("a-new-password")
        await page.reload()  # still signed in, with the new password
        await expect(page.get_by_test_id("who")).to_have_text("admin", timeout=TIMEOUT_MS)
        assert problems == []


async def test_pages_fit_a_phone_and_work_by_keyboard(tmp_path, browser):
    async with running_app(tmp_path / "data", demo=True, cycle_ms=500) as cb:
        context = await browser.new_context(
            viewport={"width": 360, "height": 740}, is_mobile=True,
            http_credentials={"username": "admin", "password": ADMIN_PASSWORD})
        page = await context.new_page()
        problems = watch(page)
        # sign in with the keyboard only
        await page.goto(cb.client.base_url + "/ui/")
        await page.get_by_test_id("signin-button").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_label("Admin password")).to_be_focused()
        await page.keyboard.type(ADMIN_PASSWORD)
        await page.keyboard.press("Enter")
        await expect(page.get_by_test_id("who")).to_have_text("admin", timeout=TIMEOUT_MS)
        pages = (("/ui/", ".tile"), ("/ui/config#params", "[data-testid=params-form]"),
                 ("/ui/config#devices", "[data-testid=device-list]"),
                 ("/ui/transactions", "#tx"), ("/ui/en/sim.htm", "[data-testid=sim-evse]"))
        for path, ready in pages:
            await page.goto(cb.client.base_url + path)
            await page.locator(ready).first.wait_for()
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow} px"
        assert problems == []
        await context.close()
