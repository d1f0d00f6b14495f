"""The state snapshot (state.py) over a real running app: the bytes get_dev_info and get_params
serve are those of the state as it is now, after pushes, cycles and configuration changes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from chargebrain import API_VERSION
from chargebrain.devices import types, view
from chargebrain.state import Snapshot
from tests.control.helpers import add, clocked_app, push_evse, push_meter, set_params
from tests.support.server import ADMIN_AUTH, Running


@pytest.fixture
async def site(tmp_path):
    async with clocked_app(tmp_path / "data") as running:
        yield running


async def served(running: Running, cmd: str, *, admin: bool = True) -> bytes:
    """The raw answer bytes of a read command (checks status and content type)."""
    headers = {"Authorization": ADMIN_AUTH} if admin else {}
    async with running.client.session.get(f"{running.client.base_url}/cnf?cmd={cmd}",
                                          headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json" and resp.charset == "utf-8"
        return await resp.read()


def reference(running: Running) -> tuple[dict[str, Any], dict[str, Any]]:
    """get_dev_info and get_params computed here from the live state (admin view), the way the
    handlers computed them per request before the snapshot."""
    app = running.app
    now_s = app.devices.clock()
    params = view.params_info(app.params.as_dict(), app.devices, now_s=now_s,
                              version=API_VERSION, cycle_ms=app.settings.cycle_ms,
                              serialno=app.devices.serialno)
    volts = int(app.params["system_voltage"])
    info = {"params": params,
            "auth_cnt": sum(1 for d in app.devices.evses() if d.status.needs_auth),
            "devices": [view.device_info(app.devices, d, now_s=now_s, voltage_v=volts)
                        for d in app.devices.all()],
            "loadmgr_disabled": not app.params["lb_enabled"]}
    return info, {**params, "dev_meta": types.labels()}


async def assert_fresh(running: Running) -> None:
    """What is served equals a fresh serialisation of the state, and the state itself."""
    state = running.app.state
    fresh: Snapshot = state.source.build(state.version)
    info = await served(running, "get_dev_info")
    params = await served(running, "get_params")
    assert info == fresh.dev_info
    assert params == fresh.params
    assert await served(running, "get_dev_info", admin=False) == fresh.dev_info_public
    want_info, want_params = reference(running)
    assert json.loads(info) == want_info
    assert json.loads(params) == want_params


async def test_served_bytes_follow_pushes_cycles_and_configuration(site):
    meter = await add(site, dev_type="meter_ajax", role=1)
    evse = await add(site, dev_type="evse_ajax", max_charging_cur=16000)
    sim = await add(site, dev_type="evse_sim", max_charging_cur=32000)
    await assert_fresh(site)
    await push_meter(site, meter, (5000, 6000, 7000))
    await assert_fresh(site)
    await push_evse(site, evse, 3, (10000, 10000, 10000))
    await assert_fresh(site)
    site.clock.advance(3)
    await site.app.cycle.run_once()
    await assert_fresh(site)
    await set_params(site, title="Garage", max_total_current=40000, reserve_current=2000)
    await assert_fresh(site)
    await add(site, dev_id=sim, max_charging_cur=20000, name="renamed")
    await assert_fresh(site)
    site.clock.advance(30)  # the ajax devices go quiet: COM errors after the next cycle
    await site.app.cycle.run_once()
    await assert_fresh(site)
    assert (await site.client.get("del_device", dev_id=sim)) == (200, "ok")
    await assert_fresh(site)
    assert (await site.client.get("reset_device", dev_id=evse)) == (200, "ok")
    await assert_fresh(site)


async def test_a_set_params_shows_in_the_very_next_get_dev_info(site):
    before = json.loads(await served(site, "get_dev_info"))
    assert before["params"]["title"] != "Neu"
    await set_params(site, title="Neu", lb_enabled=False)
    after = json.loads(await served(site, "get_dev_info"))
    assert after["params"]["title"] == "Neu" and after["loadmgr_disabled"] is True
    assert json.loads(await served(site, "get_params"))["title"] == "Neu"


async def test_devices_added_and_deleted_show_at_once(site):
    def ids(body: bytes) -> list[str]:
        return [d["dev_id"] for d in json.loads(body)["devices"]]

    assert "M3" not in ids(await served(site, "get_dev_info"))
    dev_id = await add(site, dev_type="meter_sim", sim_power_w=1500)
    assert dev_id in ids(await served(site, "get_dev_info"))
    assert (await site.client.get("del_device", dev_id=dev_id)) == (200, "ok")
    assert dev_id not in ids(await served(site, "get_dev_info"))


async def test_reads_reuse_one_snapshot_and_changes_coalesce(site):
    state = site.app.state
    first = await served(site, "get_dev_info")
    builds = state.builds
    for _ in range(10):
        assert await served(site, "get_dev_info") == first
    await served(site, "get_params")
    assert state.builds == builds  # no change, no rebuild
    for _ in range(50):
        state.mark_changed()
    await served(site, "get_dev_info")
    await served(site, "get_dev_info")
    assert state.builds == builds + 1  # fifty changes, one build


async def test_subscribers_get_one_snapshot_per_burst_of_changes(site):
    state = site.app.state
    got: list[Snapshot] = []
    unsubscribe = state.subscribe(got.append)
    for _ in range(20):
        state.mark_changed()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(got) == 1 and got[0].version == state.version
    await set_params(site, title="Burst")
    await asyncio.sleep(0)
    assert got[-1].dev_info_value()["params"]["title"] == "Burst"
    unsubscribe()
    count = len(got)
    state.mark_changed()
    await asyncio.sleep(0)
    assert len(got) == count


async def test_updates_iterator_yields_the_latest_snapshot(site):
    state = site.app.state
    updates = state.updates()
    first = await anext(updates)
    assert first.version == state.version
    await set_params(site, title="eins")
    await set_params(site, title="zwei")  # a slow reader skips "eins"
    latest = await asyncio.wait_for(anext(updates), 5)
    assert latest.dev_info_value()["params"]["title"] == "zwei"
    await updates.aclose()
    assert state._subscribers == []


async def test_the_secret_url_is_redacted_for_readers_without_admin(site):
    await set_params(site, mqtt_url="mqtt://user:geheim@broker:1883")
    admin = json.loads(await served(site, "get_params"))
    public = json.loads(await served(site, "get_params", admin=False))
    public_info = json.loads(await served(site, "get_dev_info", admin=False))
    assert admin["mqtt_url"] == "mqtt://user:geheim@broker:1883"
    assert public["mqtt_url"] == "mqtt://user:***@broker:1883"
    assert public_info["params"]["mqtt_url"] == "mqtt://user:***@broker:1883"


async def test_every_cycle_marks_the_state_changed(site):
    state = site.app.state
    version = state.version
    await site.app.cycle.run_once()
    assert state.version > version
    assert site.app.state.mark_changed in site.app.cycle.after_cycle
