"""The local Power Brain keeps showing the last card (8096) after unplug; its card counter
(8111) is what tells that the same card was presented again for the next session."""

from __future__ import annotations

from tests.support.server import running_app
from tests.users.helpers import new_user

CARD = "0c0c03"


async def evse(site) -> dict:
    _, info = await site.client.get("get_dev_info")
    return next(d for d in info["devices"] if d["dev_id"] == "E1")


async def test_the_same_card_authorises_two_sessions_in_a_row(tmp_path):
    async with running_app(tmp_path / "data", modbus=False, cycle_ms=60000) as site:
        site.app.auth.max_delay_s = 0.0
        await new_user(site, name="Cleo", dev_ids=["E1"], rfids=[{"id": CARD}])
        client, cycle = site.client, site.app.cycle
        for session in range(2):
            assert (await client.get("sim_vehicle", dev_id="E1", plugged=1, phases=3,
                                     max_current=16000, rfid=CARD))[0] == 200
            await cycle.run_once()
            info = await evse(site)
            assert info["needs_auth"] is False, f"session {session}"
            assert info["charging_enabled"] is True, f"session {session}"
            assert (await client.get("sim_vehicle", dev_id="E1", plugged=0))[0] == 200
            await cycle.run_once()
        # and a plug-in without presenting the card again waits for authorisation
        assert (await client.get("sim_vehicle", dev_id="E1", plugged=1))[0] == 200
        await cycle.run_once()
        info = await evse(site)
        assert info["needs_auth"] is True and info["charging_enabled"] is False
