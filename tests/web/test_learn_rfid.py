"""`cmd=learn_rfid`: the configuration page's "learn the next card" window."""

from __future__ import annotations

from tests.support.server import wait_until


async def test_window_takes_the_next_card_a_wallbox_reports(cb):
    status, state = await cb.client.get("learn_rfid")
    assert status == 200 and state["open"] is False and state["rfid"] is None
    # a card before the window is not taken
    assert (await cb.client.get("sim_vehicle", dev_id="E1", plugged=1, rfid="0badcafe"))[0] == 200
    assert (await cb.client.get("sim_vehicle", dev_id="E1", plugged=0))[0] == 200
    status, state = await cb.client.get("learn_rfid", start=1)
    assert state["open"] is True and 59 <= state["remaining_s"] <= 60 and state["rfid"] is None
    assert (await cb.client.get("sim_vehicle", dev_id="E1", plugged=1, rfid="12ab34cd"))[0] == 200

    async def learned() -> bool:
        return (await cb.client.get("learn_rfid"))[1]["rfid"] is not None

    await wait_until(learned)
    _, state = await cb.client.get("learn_rfid")
    assert state["open"] is False  # one card per window
    assert state["dev_id"] == "E1" and state["rfid"].lower().endswith("12ab34cd")


async def test_admin_only_and_not_cross_site(cb):
    status, _ = await cb.client.get("learn_rfid", auth=None, start=1)
    assert status == 401
    async with cb.client.session.get(cb.client.base_url + "/cnf?cmd=learn_rfid&start=1",
                                     headers={"Sec-Fetch-Site": "cross-site"}) as resp:
        assert resp.status == 403
