"""Helpers for tests of the users domain over a running app."""

from __future__ import annotations

from typing import Any

from tests.support.server import Running


async def sync_session(running: Running, dev_id: str) -> None:
    """Run one control cycle now, so the users domain sees the EVSE's plug state and card
    (read through the real driver, handed to the users hook) without waiting for the period."""
    assert running.app.devices.get(dev_id) is not None
    await running.app.cycle.run_once()


async def plug(running: Running, dev_id: str = "E1", **car: Any) -> None:
    """Plug the virtual car into a simulated EVSE (sim_vehicle) and wait for its session."""
    status, body = await running.client.get("sim_vehicle", dev_id=dev_id, plugged=1, **car)
    assert status == 200, body
    await sync_session(running, dev_id)
    assert running.app.users.sessions.get(dev_id) is not None


async def unplug(running: Running, dev_id: str = "E1") -> None:
    status, body = await running.client.get("sim_vehicle", dev_id=dev_id, plugged=0)
    assert status == 200, body
    await sync_session(running, dev_id)
    assert running.app.users.sessions.get(dev_id) is None


async def new_user(running: Running, **fields: Any) -> str:
    """Create a user (admin) with a fresh id; returns the id."""
    status, uid = await running.client.get("get_new_user_id")
    assert status == 200
    status, body = await running.client.post("set_user", {"id": uid, **fields})
    assert (status, body) == (200, "ok")
    return uid
