"""The OCPP 1.6J central system with the `ocpp` library's own ChargePoint as the box, over real
loopback WebSockets: boot, status and meter values, profiles from the plan, tags through the
users domain, transactions, disconnects, refused profiles and malformed messages."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from websockets.asyncio.client import connect

from chargebrain.sim.ocpp_box import SimBox
from tests.control.helpers import add, dev_info, device, push_meter, set_params
from tests.ocpp.support import ocpp_site, until
from tests.users.helpers import new_user


@pytest.fixture
async def site(tmp_path):
    async with ocpp_site(tmp_path / "data") as running:
        yield running


async def cycles(site, n: int = 2, step_s: float = 3.0) -> None:
    for _ in range(n):
        await site.app.cycle.run_once()
        site.clock.advance(step_s)


async def test_configured_box_is_accepted_and_set_up_unknown_box_rejected(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    # setup: the measurands, then a standing default (disable_policy 1: the minimum 6 A) and
    # a 0 A control profile: no current before the first plan
    assert box.configuration["MeterValuesSampledData"] == (
        "Current.Import,Power.Active.Import,Energy.Active.Import.Register")
    assert box.configuration["MeterValueSampleInterval"] == "10"
    levels = {(p["charging_profile_purpose"], p["stack_level"]):
              p["charging_schedule"]["charging_schedule_period"][0]["limit"]
              for p in box.received}
    assert levels == {("TxDefaultProfile", 0): 6.0, ("TxDefaultProfile", 1): 0.0}
    assert "duration" not in box.received[0]["charging_schedule"]  # standing: no end
    assert box.limit_a(1) == 0.0
    stranger = await site.box("NOBODY", boot=False)
    assert await stranger.boot() == "Rejected"
    assert site.central.unknown_boxes == ["NOBODY"]
    assert (await dev_info(site))["params"]["ocpp_unknown_boxes"] == ["NOBODY"]
    # added as a device, its next BootNotification is accepted and it leaves the list
    await add(site, dev_id="E3", dev_type="evse_ocpp", address="NOBODY", id=1)
    assert await stranger.boot() == "Accepted"
    assert site.central.unknown_boxes == []
    await box.close()
    await stranger.close()


async def test_status_and_meter_values_reach_get_dev_info(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.status(1, "Charging")
    await box.meter(1, (7.5, 7.4, 7.6), energy_wh=12_345, power_w=5150)
    await cycles(site, 1)
    info = await device(site, "E2")
    assert info["state"] == 3 and info["com_err"] is False
    assert [info[f"current_l{n}"] for n in (1, 2, 3)] == [7500, 7400, 7600]
    assert site.app.devices.get("E2").status.evse_reading.total_energy_wh == 12_345
    assert site.app.devices.get("E2").status.evse_reading.power_w == 5150
    # Faulted is a COM error with the box's error code
    await box.status(1, "Faulted", "GroundFailure")
    await cycles(site, 1)
    info = await device(site, "E2")
    assert info["com_err"] is True and "GroundFailure" in info["last_error"]
    await box.close()


async def test_two_boxes_share_20_a_and_follow_the_house_load(site):
    await set_params(site, max_total_current=20000)
    await add(site, dev_id="M3", dev_type="meter_ajax", role=1, com_timeout_ms=60000)
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="A", id=1)
    await add(site, dev_id="E3", dev_type="evse_ocpp", address="B", id=1)
    a, b = await site.box("A"), await site.box("B")
    for box in (a, b):
        await box.status(1, "Charging")
        await box.meter(1, (0, 0, 0), energy_wh=0)
    await push_meter(site, "M3", (0, 0, 0))
    await cycles(site, 3)
    assert (a.limit_a(1), b.limit_a(1)) == (10.0, 10.0)
    # the house (M3 measures its consumption) takes 4 A on every phase: 16 A left for both
    for box in (a, b):
        await box.meter(1, (10, 10, 10), energy_wh=100)
    await push_meter(site, "M3", (4000, 4000, 4000))
    await cycles(site, 3)
    assert (a.limit_a(1), b.limit_a(1)) == (8.0, 8.0)
    last = a.received[-1]
    assert last["connector_id"] == 1 and last["charging_schedule"]["charging_rate_unit"] == "A"
    assert 0 < last["charging_schedule"]["duration"] <= 60 + 60  # bounded (hold + backdate)
    await a.close()
    await b.close()


async def test_tags_authorise_through_the_users_domain(site):
    anna = await new_user(site, name="Anna", rfids=[{"id": "CARD-ANNA"}])
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1, users=[anna])
    box = await site.box("BOX-1")
    assert await box.authorize("CARD-ANNA") == "Accepted"
    assert await box.authorize("UNKNOWN") == "Invalid"
    await box.status(1, "Preparing")
    await cycles(site, 1)
    assert (await device(site, "E2"))["needs_auth"] in (True, 1)
    assert site.app.devices.get("E2").status.last_set_charging_cur_ma == 0
    _, status = await box.start_transaction(1, "UNKNOWN")
    assert status == "Invalid"
    _, status = await box.start_transaction(1, "CARD-ANNA")
    assert status == "Accepted"
    await box.status(1, "Charging")
    await cycles(site, 2)
    assert site.app.users.sessions.get("E2").user_id == anna
    assert box.limit_a(1) == 16.0  # authorised: the plan's current, as a TxProfile
    assert box.received[-1]["charging_profile_purpose"] == "TxProfile"
    await box.close()


async def test_open_box_accepts_any_tag(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="OPEN", id=1)
    box = await site.box("OPEN")
    assert await box.authorize("WHATEVER") == "Accepted"
    assert (await box.start_transaction(1, "WHATEVER"))[1] == "Accepted"
    await box.close()


async def test_a_transaction_lands_in_get_transactions_with_its_energy(site):
    anna = await new_user(site, name="Anna", rfids=[{"id": "CARD-ANNA"}])
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1, users=[anna])
    box = await site.box("BOX-1")
    await box.meter(1, (0, 0, 0), energy_wh=50_000)
    await box.status(1, "Preparing")
    await cycles(site, 1)
    await box.start_transaction(1, "CARD-ANNA")
    await box.status(1, "Charging")
    await cycles(site, 1)
    await box.meter(1, (16, 16, 16), energy_wh=52_500)
    await cycles(site, 1)
    box.connectors[1].energy_wh = 53_000
    await box.stop_transaction(1)
    await box.status(1, "Finishing")
    await cycles(site, 1)
    await box.status(1, "Available")
    await cycles(site, 1)
    status, rows = await site.client.get("get_transactions")
    assert status == 200 and len(rows) == 1
    assert rows[0]["dev_id"] == "E2" and rows[0]["user_id"] == anna
    assert rows[0]["energy_wh"] == 3000
    await box.close()


async def test_disconnect_is_com_error_and_reconnect_restores(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.status(1, "Charging")
    await cycles(site, 2)
    assert box.limit_a(1) == 16.0
    await box.close()
    link = site.central.link("BOX-1")
    await until(lambda: not link.connected)
    await cycles(site, 1)
    info = await device(site, "E2")
    assert info["com_err"] is True and "not connected" in info["last_error"]
    again = await site.box("BOX-1")
    await again.status(1, "Charging")
    assert again.limit_a(1) == 0.0  # after boot: nothing until the plan
    await cycles(site, 2)
    assert (await device(site, "E2"))["com_err"] is False
    assert again.limit_a(1) == 16.0
    await again.close()


async def test_a_box_that_reconnects_without_booting_is_set_up_again(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.close()
    link = site.central.link("BOX-1")
    await until(lambda: not link.connected)
    again = await site.box("BOX-1", boot=False)
    await until(lambda: link.ready, timeout_s=10)
    assert again.configuration["MeterValueSampleInterval"] == "10"
    await again.status(1, "Charging")
    await cycles(site, 2)
    assert again.limit_a(1) == 16.0
    await again.close()


async def test_a_box_that_rejects_profiles_is_a_com_error(tmp_path):
    async with ocpp_site(tmp_path / "data", hold_s=4) as site:
        await _rejecting_box(site)


async def _rejecting_box(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.status(1, "Charging")
    box.profile_status = "Rejected"
    await cycles(site, 2)
    info = await device(site, "E2")
    assert info["com_err"] is True and "Rejected" in info["last_error"]
    assert box.limit_a(1) == 0.0  # still the setup's 0 A
    box.profile_status = "Accepted"
    # the keeper retries the wanted limit after hold_s / 2 (2 s here) while the cycle reads
    for _ in range(8):
        await asyncio.sleep(0.5)
        await cycles(site, 1)
    assert (await device(site, "E2"))["com_err"] is False
    assert box.limit_a(1) == 16.0
    await box.close()


async def test_malformed_messages_get_a_call_error_and_disturb_nothing(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.status(1, "Charging")
    async with connect(f"{site.url}/RAW", subprotocols=["ocpp1.6"]) as raw:
        # a StatusNotification with an invalid status, and an action that does not exist
        await raw.send(json.dumps([2, "m1", "StatusNotification",
                                   {"connectorId": 1, "errorCode": "NoError",
                                    "status": "Exploded"}]))
        answer = json.loads(await asyncio.wait_for(raw.recv(), 5))
        assert answer[0] == 4 and answer[1] == "m1"
        assert answer[2] in ("FormatViolation", "FormationViolation", "PropertyConstraintViolation")
        await raw.send(json.dumps([2, "m2", "Teleport", {}]))
        answer = json.loads(await asyncio.wait_for(raw.recv(), 5))
        assert answer[0] == 4 and answer[1] == "m2" and answer[2] == "NotSupported"
        # a 1.6 message chargebrain does not handle
        await raw.send(json.dumps([2, "m4", "DiagnosticsStatusNotification",
                                   {"status": "Idle"}]))
        answer = json.loads(await asyncio.wait_for(raw.recv(), 5))
        assert answer[0] == 4 and answer[1] == "m4" and answer[2] == "NotImplemented"
        await raw.send(json.dumps([2, "m3", "Heartbeat", {}]))
        answer = json.loads(await asyncio.wait_for(raw.recv(), 5))
        assert answer[0] == 3 and answer[1] == "m3"
    await cycles(site, 2)
    assert (await device(site, "E2"))["com_err"] is False
    assert box.limit_a(1) == 16.0
    await box.close()


async def test_profiles_are_renewed_and_run_out_into_the_fallback(tmp_path):
    async with ocpp_site(tmp_path / "data", hold_s=2) as site:
        await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
        box = await site.box("BOX-1")
        await box.status(1, "Charging")
        await cycles(site, 2)
        sent = len(box.received)
        for _ in range(6):  # the cycle keeps reading: the keeper renews every hold_s / 2
            await asyncio.sleep(0.5)
            await cycles(site, 1)
        assert len(box.received) >= sent + 2
        assert box.limit_a(1) == 16.0
        # chargebrain stops caring (no reads): the profile runs out, the standing 6 A rules
        await asyncio.sleep(5)
        assert box.limit_a(1) == 6.0
        # disable_policy 0 (off): the standing default follows without a reboot
        await set_params(site, disable_policy=0)
        await until(lambda: box.limit_a(1) == 0.0)
        await box.close()


async def test_password_is_checked(tmp_path):
    async with ocpp_site(tmp_path / "data", password="s3cret") as site:
        await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
        with pytest.raises(Exception, match="401"):
            await SimBox.connect(site.url, "BOX-1")
        good = {"Authorization": "Basic " + base64.b64encode(b"BOX-1:s3cret").decode()}
        box = await SimBox.connect(site.url, "BOX-1", headers=good)
        assert await box.boot() == "Accepted"
        await box.close()


async def test_dev_info_lists_the_ocpp_box(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=2)
    info = await dev_info(site)
    assert any(d["dev_id"] == "E2" for d in info["devices"])
    status, body = await site.client.post(
        "set_device", {"devices": [{"dev_id": "E4", "dev_type": "evse_ocpp",
                                    "address": "bad id/with slash"}]})
    assert status == 400 and "ChargeBox ID" in str(body)


async def test_demo_has_an_ocpp_box_under_control(tmp_path):
    from chargebrain.sim.demo import DemoSite

    async with ocpp_site(tmp_path / "data") as site:
        demo = DemoSite(site.app)
        await demo.install()
        try:
            dev_id = demo.ids["ocpp"]
            link = None

            def connected() -> bool:
                nonlocal link
                link = site.central.link("demo-ocpp-1")
                return link is not None and link.ready
            await until(connected)
            for _ in range(20):
                await cycles(site, 1)
                await asyncio.sleep(0.2)
                if demo.ocpp_box is not None and (demo.ocpp_box.box.limit_a(1) or 0) >= 6:
                    break
            info = await device(site, dev_id)
            assert info["com_err"] is False
            assert info["last_set_charging_cur"] >= 6000
            # the plan's current, rounded down to the 0.1 A a profile carries
            assert demo.ocpp_box.box.limit_a(1) == info["last_set_charging_cur"] // 100 / 10
        finally:
            await demo.close()


async def test_phase_switching_where_the_box_reports_it(site):
    from chargebrain.devices.base import EvseSetpoint, evse_capabilities

    await add(site, dev_id="E2", dev_type="evse_ocpp", address="SWITCH", id=1)
    await add(site, dev_id="E3", dev_type="evse_ocpp", address="FIXED", id=1)
    switching, fixed = await site.box("SWITCH", phase_switching=True), await site.box("FIXED")
    e2, e3 = site.app.devices.get("E2"), site.app.devices.get("E3")
    assert evse_capabilities(e2.driver).phase_switching is True
    assert evse_capabilities(e3.driver).phase_switching is False
    assert (await e2.driver.read(site.clock())).phase_switching is True
    await e2.driver.apply(EvseSetpoint(10000, one_phase=True))
    period = switching.received[-1]["charging_schedule"]["charging_schedule_period"][0]
    assert period["number_phases"] == 1 and period["limit"] == 10.0
    await e2.driver.apply(EvseSetpoint(10000))
    period = switching.received[-1]["charging_schedule"]["charging_schedule_period"][0]
    assert "number_phases" not in period
    await switching.close()
    await fixed.close()


async def test_tls_with_a_configured_certificate(tmp_path):
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    async with ocpp_site(tmp_path / "data", tls_cert=cert, tls_key=key) as site:
        await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
        trust = ssl.create_default_context(cafile=str(cert))
        url = site.url.replace("ws://", "wss://")
        box = await SimBox.connect(url, "BOX-1", ssl_context=trust)
        assert await box.boot() == "Accepted"
        await box.close()
        with pytest.raises(Exception):  # noqa: B017 - plain ws:// to a TLS port fails
            await asyncio.wait_for(SimBox.connect(site.url, "BOX-1"), 5)


async def test_a_lost_box_is_still_booked_so_the_other_gets_no_more(site):
    await set_params(site, max_total_current=20000)
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="A", id=1)
    await add(site, dev_id="E3", dev_type="evse_ocpp", address="B", id=1)
    a, b = await site.box("A"), await site.box("B")
    for box in (a, b):
        await box.status(1, "Charging")
    await cycles(site, 2)
    for box in (a, b):
        await box.meter(1, (10, 10, 10), energy_wh=100)
    await cycles(site, 2)
    assert (a.limit_a(1), b.limit_a(1)) == (10.0, 10.0)
    await a.close()  # A is gone, but may still be charging at its 10 A (its profile holds)
    await until(lambda: not site.central.link("A").connected)
    await cycles(site, 3)
    assert (await device(site, "E2"))["com_err"] is True
    assert b.limit_a(1) == 10.0  # B does not get A's share while A may still draw it
    await b.close()


async def test_a_second_connection_of_the_same_box_replaces_the_first(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    first = await site.box("BOX-1")
    second = await site.box("BOX-1")
    await until(lambda: first.ws.close_code is not None)
    link = site.central.link("BOX-1")
    assert link.connected and link.connection is not None
    await second.status(1, "Charging")
    await cycles(site, 2)
    assert second.limit_a(1) == 16.0 and (await device(site, "E2"))["com_err"] is False
    await second.close()
    await first.close()


async def test_a_box_that_does_not_answer_in_time_is_a_com_error(tmp_path):
    async with ocpp_site(tmp_path / "data", hold_s=4) as site:
        await _slow_box(site)


async def _slow_box(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1,
              com_timeout_ms=5000)
    site.central.response_timeout_s = 0.3  # for the connections that follow
    box = await site.box("BOX-1")
    await box.status(1, "Charging")
    box.profile_delay_s = 1.0
    await cycles(site, 1)
    info = await device(site, "E2")
    assert info["com_err"] is True and "did not answer" in info["last_error"], info
    box.profile_delay_s = 0.0  # answers again: the keeper's retry ends the COM error
    for _ in range(12):  # the keeper retries after hold_s / 2 while the cycle reads
        await asyncio.sleep(0.5)
        await cycles(site, 1)
    await cycles(site, 2)
    assert (await device(site, "E2"))["com_err"] is False and box.limit_a(1) == 16.0
    await box.close()


async def test_a_box_with_two_connectors_is_two_devices(site):
    await set_params(site, max_total_current=20000)
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="TWIN", id=1)
    await add(site, dev_id="E3", dev_type="evse_ocpp", address="TWIN", id=2)
    box = await site.box("TWIN", connectors=2)
    standing = sorted(p["connector_id"] for p in box.received if p["stack_level"] == 0)
    assert standing == [1, 2]
    await box.status(1, "Charging")
    await box.status(2, "Preparing")
    await cycles(site, 2)
    assert (await device(site, "E2"))["state"] == 3 and (await device(site, "E3"))["state"] == 2
    assert box.limit_a(1) == 10.0 and box.limit_a(2) == 10.0
    await box.meter(2, (0, 0, 0), energy_wh=777)
    await cycles(site, 1)
    assert site.app.devices.get("E3").status.evse_reading.total_energy_wh == 777
    assert site.app.devices.get("E2").status.evse_reading.total_energy_wh is None
    await box.close()


async def test_override_c_stops_the_transaction_once_and_c_resumes(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.status(1, "Preparing")
    await cycles(site, 1)
    transaction_id, status = await box.start_transaction(1, "ANY-TAG")
    assert status == "Accepted"
    await box.status(1, "Charging")
    await cycles(site, 2)
    assert box.limit_a(1) == 16.0 and box.remote_stops == []
    assert await site.client.get("override_device", dev_id="E2", flags="C") == (200, "ok")
    await cycles(site, 3)
    await until(lambda: box.remote_stops == [transaction_id])
    assert box.limit_a(1) == 0.0
    # the box has not ended the transaction yet: more cycles send no second RemoteStop
    site.app.cycle._written.clear()  # even a rewrite of the same setpoint does not
    await cycles(site, 3)
    assert box.remote_stops == [transaction_id]
    await box.stop_transaction(1)
    await box.status(1, "SuspendedEVSE")
    await cycles(site, 1)
    # c: nothing is sent to the box but the profile; the car may charge again
    assert await site.client.get("override_device", dev_id="E2", flags="c") == (200, "ok")
    await cycles(site, 2)
    assert box.remote_stops == [transaction_id]
    assert box.limit_a(1) == 16.0
    await box.close()


async def test_override_c_without_a_transaction_sends_no_remote_stop(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.status(1, "Charging")
    await cycles(site, 2)
    assert await site.client.get("override_device", dev_id="E2", flags="C") == (200, "ok")
    await cycles(site, 2)
    await until(lambda: box.limit_a(1) == 0.0)
    assert box.remote_stops == []
    await box.close()


async def test_disabling_a_device_under_policy_minus_1_clears_its_profiles_once(site):
    await set_params(site, disable_policy=-1)
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.status(1, "Charging")
    await cycles(site, 2)
    await until(lambda: box.limit_a(1) == 16.0)
    assert box.cleared == 0 and box.connectors[1].profiles
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1, device_enabled=0)
    link = site.central.link("BOX-1")
    assert link is not None
    await until(lambda: 1 in link.cleared)
    assert not box.connectors[1].profiles
    calls = box.cleared
    assert calls == 3  # the standing, control and Tx profile ids, one call each
    await cycles(site, 2)
    await asyncio.sleep(1.5)  # the keeper ticks: nothing more is cleared
    assert box.cleared == calls
    assert box.limit_a(1) is None  # the box is left to itself
    # enabled again: a standing default and the plan's profile again
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1, device_enabled=1)
    await cycles(site, 2)
    await until(lambda: box.limit_a(1) == 16.0)
    await until(lambda: ("TxDefaultProfile", 0) in box.connectors[1].profiles)
    await box.close()


async def test_disabling_a_device_under_policy_1_keeps_the_standing_default(site):
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
    box = await site.box("BOX-1")
    await box.status(1, "Charging")
    await cycles(site, 2)
    await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1, device_enabled=0)
    await asyncio.sleep(1.5)
    assert box.cleared == 0
    assert box.connectors[1].profiles[("TxDefaultProfile", 0)]
    await box.close()
