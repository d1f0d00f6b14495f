"""Helpers for tests of the users domain over a running app."""

from __future__ import annotations

import time
from typing import Any

from tests.support.server import Running, wait_until


async def sync_session(running: Running, dev_id: str) -> None:
    """Let the users domain see the EVSE's plug state and card, as the control cycle does.

    With a control cycle running this only waits for it; without one, the EVSE is read through
    its real driver and the observation handed to `UserService.track`, the cycle's call.
    """
    app = running.app
    device = app.devices.get(dev_id)
    assert device is not None
    if getattr(app, "cycle", None) is None:
        reading = await app.devices.read(device, app.devices.clock())
        assert reading is not None
        app.users.track(dev_id, reading.plugged, time.time(), reading.rfid or None)
        return

    async def settled() -> bool:
        reading = device.status.reading
        plugged = bool(reading is not None and getattr(reading, "plugged", False))
        return (app.users.sessions.get(dev_id) is not None) == plugged

    await wait_until(settled)


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
