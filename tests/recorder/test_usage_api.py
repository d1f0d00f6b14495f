"""`cmd=get_usage` on a running chargebrain: recorded history as JSON and CSV, live samples
of the running recorder, bad input refused with 400, READ access, and a failing disk that is
logged once and changes nothing else."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import sqlite3
import threading
import time

import pytest

from chargebrain.recorder.recorder import UsageRecorder
from chargebrain.recorder.samples import EnergyMeter, Measurement
from chargebrain.recorder.storage import UsageDb
from chargebrain.store.db import Store
from tests.support.server import running_app, wait_until

HISTORY_W = 1200


def write_history(data_dir, end_s: int) -> int:
    """A day of M2 at 1200 W every 10 s with an exact counter, before the app starts; the
    energy recorded (mWh)."""
    store = Store.open(data_dir)
    db = UsageDb(store.path)
    meter = EnergyMeter(max_gap_s=30)
    total = 0
    start = end_s - 86400
    for t in range(start, end_s, 10):
        wh = 5000 + (t - start) * HISTORY_W // 3600
        samples = meter.samples(t, [Measurement("M2", HISTORY_W, import_wh=wh)])
        total += sum(s.energy_mwh for s in samples)
        db.write(samples)
    db.close()
    store.close()
    assert total == (wh - 5000) * 1000  # what the counter says
    return total


async def test_history_as_json_and_csv(tmp_path):
    now = int(time.time())
    end = now - now % 900 - 900  # on a quarter hour, before anything the app records
    total_mwh = write_history(tmp_path / "data", end)
    async with running_app(tmp_path / "data") as cb:
        status, body = await cb.client.get("get_usage", dev_id="M2", span="day", end=end - 1)
        assert status == 200
        assert body["columns"] == ["t", "power_w", "power_w_min", "power_w_max", "energy_wh"]
        assert (body["dev_id"], body["span"], body["bucket_s"]) == ("M2", "day", 60)
        assert body["to"] - body["from"] == 86400 and body["to"] == end
        rows = body["rows"]
        assert len(rows) == 1440
        assert all(r[1:4] == [HISTORY_W, HISTORY_W, HISTORY_W] for r in rows)
        assert round(sum(r[4] for r in rows) * 1000) == total_mwh
        assert abs(total_mwh / 1000 - HISTORY_W * 24) < 5  # nearly a day at 1.2 kW
        async with cb.client.session.get(
                cb.client.base_url + f"/cnf?cmd=get_usage&dev_id=M2&span=week&end={end}"
                "&format=csv") as resp:
            assert resp.status == 200 and resp.content_type == "text/csv"
            assert "usage-M2-week.csv" in resp.headers["Content-Disposition"]
            table = list(csv.reader(io.StringIO(await resp.text())))
        assert table[0] == ["t", "power_w", "power_w_min", "power_w_max", "energy_wh"]
        assert len(table) - 1 == 96  # a day of 15-min buckets (nothing since `end`)
        assert round(sum(float(r[4]) for r in table[1:]) * 1000) == total_mwh
        # the year view reads the hourly tier
        status, body = await cb.client.get("get_usage", dev_id="M2", span="year", end=end)
        assert status == 200 and body["bucket_s"] == 86400
        assert round(sum(r[4] for r in body["rows"]) * 1000) == total_mwh


async def test_the_running_recorder_samples_pushed_values_and_the_site(tmp_path):
    async with running_app(tmp_path / "data") as cb:
        status, _ = await cb.client.post("set_device", {"devices": [
            {"dev_type": "meter_ajax", "role": 2, "com_timeout_ms": 600000}]})
        assert status == 200
        m3 = cb.app.devices.all()[-1].dev_id
        assert (await cb.client.post("set_params", {"rec_interval_s": 1}))[0] == 200
        assert (await cb.client.post("set_ajax_meter", {"power_w": 2345}, dev_id=m3))[0] == 200

        async def seen() -> bool:
            status, body = await cb.client.get("get_usage", dev_id=m3, span="hour")
            assert status == 200 and body["bucket_s"] == 10
            return len([r for r in body["rows"] if r[1] == 2345]) >= 2

        await wait_until(seen, timeout_s=20)
        status, site = await cb.client.get("get_usage", dev_id="site", span="hour")
        assert status == 200
        assert site["columns"] == ["t", "grid_w", "pv_w", "house_w", "cars_w",
                                   "grid_wh", "pv_wh", "house_wh", "cars_wh"]
        assert any(r[2] == 2345 for r in site["rows"])  # the PV flow
        assert cb.app.recorder.dropped == 0


@pytest.mark.parametrize(("query", "status", "message"), [
    ({"span": "day"}, 400, "missing parameter dev_id"),
    ({"dev_id": "M1", "span": "decade"}, 400, "span must be one of"),
    ({"dev_id": "M1", "end": "soon"}, 400, "end must be a number"),
    ({"dev_id": "M1", "end": "-5"}, 400, "end must be at least 0"),
    ({"dev_id": "M1", "end": "1e30"}, 400, "end"),
    ({"dev_id": "M1", "format": "xml"}, 400, "format must be json or csv"),
    ({"dev_id": "M1", "tz_offset_s": "99999"}, 400, "tz_offset_s must be at most"),
    ({"dev_id": "M9"}, 404, "unknown device"),
])
async def test_bad_input_is_refused_with_a_json_error(cb, query, status, message):
    got, body = await cb.client.get("get_usage", **query)
    assert got == status
    assert isinstance(body, str) and message in body


async def test_reading_needs_admin_only_when_the_api_says_so(cb):
    assert (await cb.client.get("get_usage", auth=None, dev_id="site"))[0] == 200
    assert (await cb.client.post("set_params", {"api_read_needs_auth": True}))[0] == 200
    assert (await cb.client.get("get_usage", auth=None, dev_id="site"))[0] == 401
    assert (await cb.client.get("get_usage", dev_id="site"))[0] == 200


async def test_a_failing_disk_is_logged_once_and_contained(tmp_path, caplog):
    clock = iter(range(1000, 10**6, 10))
    info = {"params": {}, "devices": []}
    recorder = UsageRecorder(tmp_path / "missing" / "db.sqlite3", lambda: info,
                             lambda: next(clock), lambda: 10)
    with caplog.at_level(logging.ERROR, logger="chargebrain.recorder"):
        recorder.start()
        for _ in range(5):
            recorder.tick()
            await recorder.flush()
        await recorder.stop()
    assert recorder.ticks == 5 and recorder.dropped == 5 and recorder.stored == 0
    errors = [r for r in caplog.records if r.name.startswith("chargebrain.recorder")]
    assert len(errors) == 1 and "storing measurements failed" in errors[0].getMessage()
    await asyncio.sleep(0)


async def test_the_cycle_and_the_api_do_not_wait_for_a_stuck_disk(tmp_path, monkeypatch):
    release = threading.Event()
    real_write = UsageDb.write

    def stuck_write(self, samples):
        release.wait(30)  # the disk hangs until released
        real_write(self, samples)

    monkeypatch.setattr(UsageDb, "write", stuck_write)
    async with running_app(tmp_path / "data", cycle_ms=200) as cb:
        assert (await cb.client.post("set_params", {"rec_interval_s": 1}))[0] == 200
        recorder = cb.app.recorder
        await wait_until(lambda: _true(recorder.ticks >= 1), timeout_s=10)
        cycles = cb.app.cycle.count
        await wait_until(lambda: _true(recorder.ticks >= 4), timeout_s=15)
        assert recorder.stored == 0  # everything waits in the queue …
        # … while the cycle goes on (3 s at 200 ms: about 15 cycles) and the API answers
        assert cb.app.cycle.count - cycles >= 5
        assert (await cb.client.get("get_dev_info"))[0] == 200
        assert (await cb.client.get("get_usage", dev_id="site", span="hour"))[0] == 200
        release.set()
        await recorder.flush()
        assert recorder.stored == recorder.ticks and recorder.dropped == 0


async def _true(value: bool) -> bool:
    return value


async def test_an_unreadable_database_is_a_503_not_a_traceback(cb, monkeypatch):
    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr("chargebrain.recorder.recorder.chart", broken)
    status, body = await cb.client.get("get_usage", dev_id="site")
    assert (status, body) == (503, "usage data unavailable: disk I/O error")
    monkeypatch.undo()
    assert (await cb.client.get("get_usage", dev_id="site"))[0] == 200
