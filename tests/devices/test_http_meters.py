"""HTTP/JSON meters from definitions, polled from a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from tests.devices.meter_support import add_meter, dev_info, read
from tests.devices.support import stop_cycle
from tests.support.server import running_app

SHELLY_STATUS: dict[str, Any] = {
    "total_power": 3390.5,
    "emeters": [
        {"power": 2300.0, "voltage": 230.4, "current": 10.0, "total": 1000.0,
         "total_returned": 0.0},
        {"power": 1150.0, "voltage": 229.6, "current": 5.0, "total": 200.0,
         "total_returned": 12.5},
        {"power": -59.5, "voltage": 231.0, "current": 0.26, "total": 3.0,
         "total_returned": 4321.0},
    ],
}

VZLOGGER = """// a user's HTTP meter: queries with selectors, a regex on a text page
{
  "rtype": 1, "name": "House meter", "manufacturer": "vz",
  "power_w":   {"address": "/api", "query": "data[{\\"uuid\\": \\"p\\"}].tuples[0][1]"},
  "import_wh": {"address": "/api", "query": "data[{\\"uuid\\": \\"e\\"}].tuples[0][1]",
                "resolution": 1000},
  "soc":       {"address": "/text", "regex": "SoC: (\\\\d+) %"},
  "type_designation": {"address": "/api", "query": "version", "type": "string"}
}"""


class FakeMeterSite:
    """A real HTTP server whose answers the test changes; `delay_s` makes it slow."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {k: v for k, v in SHELLY_STATUS.items()}
        self.delay_s = 0.0
        self.http_status = 200
        self.requests = 0
        self.api = {"version": "vz 0.8", "data": [
            {"uuid": "e", "tuples": [[1700000000, 12.5]]},
            {"uuid": "p", "tuples": [[1700000000, -812.4]]}]}

    async def handle_status(self, request: web.Request) -> web.Response:
        self.requests += 1
        await asyncio.sleep(self.delay_s)
        if self.http_status != 200:
            return web.Response(status=self.http_status, text="broken")
        return web.json_response(self.status)

    async def handle_api(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response(self.api)

    async def handle_text(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(text="Battery\nSoC: 73 %\n")


@pytest.fixture
async def site():
    fake = FakeMeterSite()
    app = web.Application()
    app.router.add_get("/status", fake.handle_status)
    app.router.add_get("/api", fake.handle_api)
    app.router.add_get("/text", fake.handle_text)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def cb(tmp_path):
    (tmp_path / "cb" / "meter_defs").mkdir(parents=True)
    (tmp_path / "cb" / "meter_defs" / "meter_vz.json").write_text(VZLOGGER)
    async with running_app(tmp_path / "cb", modbus=False) as running:
        await stop_cycle(running)
        yield running


async def test_shelly_3em_values_land_in_the_meter_fields(cb, site):
    fake, url = site
    dev_id = await add_meter(cb, dev_type="meter_shelly_3em", address=url)
    reading = await read(cb, dev_id)
    assert reading is not None, cb.app.devices.get(dev_id).status.last_error
    info = await dev_info(cb, dev_id)
    assert {k: info[k] for k in ("power_w", "current_l1", "current_l2", "current_l3",
                                 "voltage_l1", "voltage_l2", "voltage_l3", "import",
                                 "export")} == {
        "power_w": 3390, "current_l1": 10000, "current_l2": 5000, "current_l3": -260,
        "voltage_l1": 230, "voltage_l2": 230, "voltage_l3": 231,
        "import": 1203, "export": 4334}  # the per-phase counters summed (expr variables)
    assert fake.requests == 1  # sixteen variables, one URL: one request
    fake.status = {**fake.status, "total_power": -4000}
    reading = await read(cb, dev_id)
    assert reading is not None and reading.power_w == -4000


async def test_an_http_expr_that_cannot_be_computed_leaves_only_itself_out(cb, site):
    fake, url = site
    dev_id = await add_meter(cb, dev_type="meter_shelly_3em", address=url)
    fake.status = {**fake.status, "emeters": [
        {**e, "total": "n/a"} if i == 1 else e for i, e in enumerate(fake.status["emeters"])]}
    assert await read(cb, dev_id) is None  # a value that is not a number: the read fails
    fake.status = {**fake.status, "emeters": [
        {**e, "total": float("1e308")} for e in SHELLY_STATUS["emeters"]]}
    reading = await read(cb, dev_id)
    assert reading is not None and reading.power_w == 3390 and reading.export_wh == 4334
    assert reading.import_wh == 0  # 3 × 1e308 is out of range: import_wh is missing
    info = await dev_info(cb, dev_id)
    assert info["com_err"] is False and info["last_error"].startswith(
        "import_wh: cannot compute 'import_l1 + import_l2 + import_l3'")


async def test_user_http_definition_with_selectors_and_regex(cb, site):
    _, url = site
    dev_id = await add_meter(cb, dev_type="meter_vz", address=url)
    reading = await read(cb, dev_id)
    assert reading is not None, cb.app.devices.get(dev_id).status.last_error
    assert (reading.power_w, reading.import_wh, reading.soc) == (-812, 12500, 73)
    assert reading.model == "vz vz 0.8"


@pytest.mark.parametrize(("change", "message"), [
    ({"http_status": 500}, "HTTP 500"),
    ({"status": {"total_power": 1}}, "emeters: no such member"),
    ({"status": {"total_power": "n/a", "emeters": SHELLY_STATUS["emeters"]}},
     "'n/a' is not a number"),
])
async def test_bad_answers_are_com_errors_that_say_why(cb, site, change, message):
    fake, url = site
    for key, value in change.items():
        setattr(fake, key, value)
    dev_id = await add_meter(cb, dev_type="meter_shelly_3em", address=url)
    assert await read(cb, dev_id) is None
    status = cb.app.devices.get(dev_id).status
    assert status.com_err and message in status.last_error


async def test_slow_and_dead_servers_are_com_errors_within_the_timeout(cb, site):
    fake, url = site
    fake.delay_s = 5
    dev_id = await add_meter(cb, dev_type="meter_shelly_3em", address=url, com_timeout_ms=300)
    start = time.monotonic()
    assert await read(cb, dev_id) is None
    assert time.monotonic() - start < 1.0
    fake.delay_s = 0
    assert await read(cb, dev_id) is not None  # recovers by itself
    info = await dev_info(cb, dev_id)
    assert info["com_err"] is False and info["com_errors"] == 1
    dead = await add_meter(cb, dev_type="meter_shelly_3em", address="http://127.0.0.1:9")
    assert await read(cb, dead) is None
    assert "cannot reach" in cb.app.devices.get(dead).status.last_error


async def test_a_bad_url_is_refused(cb):
    status, body = await cb.client.post("set_device", {"devices": [
        {"dev_type": "meter_shelly_3em", "address": "192.168.0.5"}]})
    assert status == 400 and "address must be http://" in str(body)
