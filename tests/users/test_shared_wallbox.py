"""Two users with RFIDs share the local wallbox, over a real server with the control cycle:
one user's budget runs out, the other pauses charging with override C and resumes with c, and
the transaction log afterwards matches what the simulated meter counted (within 1 %)."""

from __future__ import annotations

import csv
import io

import pytest

from tests.support.server import running_app, wait_until
from tests.users.helpers import new_user

CARD_A = "0a0a01"
CARD_B = "0b0b02"
BUDGET_KWH = 0.02  # 20 Wh: a few seconds at 11 kW


async def meter_wh(site) -> int:
    """The simulated S0 meter in series with the wallbox (M1, register 8058)."""
    status, value = await site.client.get("modbus", device="meter1", read="8058q")
    assert status == 200
    return int(value)


async def evse(site) -> dict:
    status, info = await site.client.get("get_dev_info")
    assert status == 200
    return next(d for d in info["devices"] if d["dev_id"] == "E1")


async def transactions(site, **params) -> list[dict]:
    status, rows = await site.client.get("get_transactions", **params)
    assert status == 200
    return rows


async def charging(site) -> bool:
    return (await evse(site))["state"] == 3  # C: the car draws current


async def not_charging(site) -> bool:
    # B: plugged in, not drawing (the S0 meter's power only decays after the last pulse)
    return (await evse(site))["state"] == 2


@pytest.fixture
async def site(tmp_path):
    async with running_app(tmp_path / "data", modbus=False, cycle_ms=250) as running:
        running.app.auth.max_delay_s = 0.0
        yield running


async def test_two_users_share_a_wallbox(site):
    anna = await new_user(site, name="Anna", dev_ids=["E1"], rfids=[{"id": CARD_A}],
                          budget={"reset": "once", "amount": BUDGET_KWH})
    ben = await new_user(site, name="Ben", dev_ids=["E1"], rfids=[{"id": CARD_B}])
    client = site.client

    # nobody authorised: a plugged-in car waits
    assert (await client.get("sim_vehicle", dev_id="E1", plugged=1, phases=3,
                             max_current=16000, soc=20, capacity=60000))[0] == 200

    async def waiting() -> bool:
        info = await evse(site)  # stopped by the cycle, waiting for a card
        return info["needs_auth"] is True and info["state"] == 2

    await wait_until(waiting)
    assert (await evse(site))["charging_enabled"] is False
    assert (await client.get("sim_vehicle", dev_id="E1", plugged=0))[0] == 200
    await wait_until(lambda: _closed(site, 1))

    # Anna's card at the wallbox: she charges until her budget is used up
    anna_start = await meter_wh(site)
    assert (await client.get("sim_vehicle", dev_id="E1", plugged=1, rfid=CARD_A))[0] == 200
    await wait_until(lambda: charging(site))
    assert (await evse(site))["needs_auth"] is False

    async def budget_stopped() -> bool:
        info = await evse(site)
        return info["state"] == 2 and info["charging_enabled"] is False

    await wait_until(budget_stopped, timeout_s=30)
    _, user = await client.get("get_user", id=anna)
    assert user["budget"]["used"] >= BUDGET_KWH
    assert "budget" in (await evse(site))["pause_reason"] + (await evse(site))["lreason"]
    assert (await client.get("sim_vehicle", dev_id="E1", plugged=0))[0] == 200
    await wait_until(lambda: _closed(site, 2))
    anna_end = await meter_wh(site)

    # Ben: charges, pauses with C (his own card as credential), resumes with c
    ben_start = await meter_wh(site)
    assert (await client.get("sim_vehicle", dev_id="E1", plugged=1, rfid=CARD_B))[0] == 200
    await wait_until(lambda: charging(site))
    assert await client.get("override_device", auth=None, dev_id="E1", flags="C",
                            rfid=CARD_B) == (200, "ok")
    await wait_until(lambda: not_charging(site))
    assert (await evse(site))["overrides"] == 1
    paused_at = await meter_wh(site)
    assert await client.get("override_device", auth=None, dev_id="E1", flags="c",
                            rfid=CARD_B) == (200, "ok")
    await wait_until(lambda: charging(site))
    assert (await evse(site))["overrides"] == 0

    async def ten_more_wh() -> bool:
        return await meter_wh(site) >= paused_at + 10

    await wait_until(ten_more_wh, timeout_s=30)
    assert (await client.get("sim_vehicle", dev_id="E1", plugged=0))[0] == 200
    await wait_until(lambda: _closed(site, 3))
    ben_end = await meter_wh(site)

    rows = await transactions(site)
    assert [(r["user_id"], r["rfid"], r["status"]) for r in rows] == [
        (None, None, "closed"), (anna, CARD_A, "closed"), (ben, CARD_B, "closed")]
    assert rows[0]["energy_wh"] == 0
    for row, used in ((rows[1], anna_end - anna_start), (rows[2], ben_end - ben_start)):
        assert used > 0
        assert abs(row["energy_wh"] - used) <= 0.01 * used, (row, used)
        assert row["end_wh"] - row["start_wh"] == row["energy_wh"]
    assert rows[1]["energy_wh"] >= BUDGET_KWH * 1000
    assert rows[2]["user_name"] == "Ben" and rows[2]["energy_wh"] >= 10

    # each user sees their own transactions, with their card as credential
    own = await transactions(site, auth=None, rfid=CARD_B)
    assert [r["id"] for r in own] == [rows[2]["id"]]
    status, text = await client.get("get_transactions", auth=None, user=anna, format="csv")
    assert status == 200
    (line,) = list(csv.DictReader(io.StringIO(text)))
    assert (line["user_name"], line["rfid"]) == ("Anna", CARD_A)
    assert float(line["energy_kwh"]) == pytest.approx(rows[1]["energy_wh"] / 1000)


async def _closed(site, count: int) -> bool:
    rows = await transactions(site)
    return len(rows) == count and all(r["status"] == "closed" for r in rows)
