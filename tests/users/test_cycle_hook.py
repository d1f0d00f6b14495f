"""`observe_evse`, the cycle's one call per EVSE: sessions from observations, wallbox cards
(also stale ones), transactions, budgets and the get_dev_info status fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC

import pytest

from chargebrain.devices.status import DeviceStatus
from chargebrain.store.db import Store
from chargebrain.users.cycle import device_changed, observe_evse
from chargebrain.users.gate import EvseAuth
from chargebrain.users.service import UserService
from chargebrain.users.transactions import TransactionLog

T0 = 1_715_000_000.0


class Evses:
    """A minimal EVSE directory over a dict (the registry's part in these unit tests)."""

    def __init__(self, configs: dict[str, dict]) -> None:
        self.configs = configs

    def evse_auths(self) -> list[EvseAuth]:
        return [EvseAuth.from_config(d, c) for d, c in self.configs.items()]

    def device_kind(self, dev_id: str) -> str | None:
        return "evse" if dev_id in self.configs else None

    def prepare_users(self, users_by_evse: Mapping[str, Sequence[str]]) -> list:
        return [_Assign(self.configs, d, list(u)) for d, u in users_by_evse.items()]

    async def activate(self, prepared: list) -> None:
        for change in prepared:
            change.apply()


class _Assign:
    def __init__(self, configs, dev_id, users):
        self.configs, self.dev_id, self.users = configs, dev_id, users

    def write(self, conn) -> None:
        """The test directory keeps configurations in memory only."""

    def apply(self) -> None:
        self.configs[self.dev_id]["users"] = self.users


@pytest.fixture
async def world(tmp_path):
    store = Store.open(tmp_path)
    evses = Evses({"E1": {"users": []}, "E2": {}})
    users = UserService(store, UTC, evses)
    log = TransactionLog(store, ledger=users.ledger, budget_for=users.budget_for,
                         name_of=users.user_name)
    uid = "555"
    await users.save_user({"id": uid, "name": "Anna", "dev_ids": ["E1"],
                           "budget": {"reset": "once", "amount": 1.0},
                           "rfids": [{"id": "04A1B2C3"}, {"id": "CAFE", "ac_ovch": True}]},
                          is_admin=True)
    return store, evses, users, log, uid


def step(world, t, *, plugged, charging=False, energy=0, rfid="", dev_id="E1"):
    _, evses, users, log, _ = world
    status = DeviceStatus()
    gate = observe_evse(users, log, dev_id=dev_id, config=evses.configs[dev_id],
                        plugged=plugged, charging=charging, energy_wh=energy, rfid=rfid,
                        now=T0 + t, status=status)
    return gate, status


async def test_wallbox_card_authorises_and_the_transaction_follows(world):
    _, _, users, log, uid = world
    gate, status = step(world, 0, plugged=False)
    assert (gate.may_charge, status.needs_auth) == (False, False)
    gate, status = step(world, 3, plugged=True, energy=100)
    assert (gate.may_charge, gate.reason, status.needs_auth) == (False, "auth", True)
    gate, status = step(world, 6, plugged=True, energy=100, rfid="04a1b2c3")
    assert gate.may_charge and gate.user_id == uid and not status.needs_auth
    gate, status = step(world, 9, plugged=True, charging=True, energy=100, rfid="04a1b2c3")
    gate, status = step(world, 12, plugged=True, charging=True, energy=400, rfid="04a1b2c3")
    assert status.ta_en_wh == 300 and gate.budget_left == pytest.approx(0.7)
    # the budget (1 kWh) runs out: charging stops, the session stays
    gate, status = step(world, 15, plugged=True, charging=True, energy=1100, rfid="04a1b2c3")
    assert (gate.may_charge, gate.reason, status.ta_en_wh) == (False, "budget", 1000)
    step(world, 18, plugged=False, energy=1100, rfid="04a1b2c3")
    (record,) = log.query()
    assert (record.user_id, record.rfid, record.energy_wh, record.status) == (
        uid, "04A1B2C3", 1000, "closed")
    assert users.sessions.get("E1") is None


async def test_a_card_left_in_the_register_does_not_authorise_the_next_car(world):
    _, _, users, _, uid = world
    step(world, 0, plugged=True, rfid="04a1b2c3")
    assert users.sessions.get("E1").user_id == uid
    step(world, 3, plugged=False, rfid="04a1b2c3")  # the register keeps the last card
    gate, status = step(world, 6, plugged=True, rfid="04a1b2c3")
    assert (gate.reason, status.needs_auth) == ("auth", True)
    # presenting a card (a different one, or the same one after another) is taken
    gate, _ = step(world, 9, plugged=True, rfid="cafe")
    assert gate.may_charge and gate.rfid == "CAFE"


async def test_ac_ovch_card_toggles_charging_and_override_bits_show(world):
    _, _, users, _, _ = world
    step(world, 0, plugged=True, rfid="cafe")
    gate, status = step(world, 3, plugged=True, rfid="cafe")
    assert gate.may_charge and status.overrides == 0
    assert users.present("E1", "CAFE", T0 + 4, "enter_rfid") == "toggled"
    gate, status = step(world, 6, plugged=True, rfid="cafe")
    assert (gate.reason, status.overrides) == ("override", 1)
    users.override("E1", "c", 8000, is_admin=True, cred=None)
    gate, status = step(world, 9, plugged=True, rfid="cafe")
    assert gate.may_charge and (status.ov_cur_ma, gate.max_ma) == (8000, 8000)


async def test_free_evse_charges_and_logs_without_anyone(world):
    _, _, _, log, _ = world
    gate, status = step(world, 0, plugged=True, charging=True, energy=50, dev_id="E2")
    gate, status = step(world, 3, plugged=True, charging=True, energy=80, dev_id="E2")
    assert gate.may_charge and status.ta_en_wh == 30 and not status.needs_auth
    assert log.query()[0].user_id is None


async def test_sessions_survive_a_restart(world, tmp_path):
    store, evses, users, _, uid = world
    step(world, 0, plugged=True, rfid="04a1b2c3")
    users.override("E1", "C", None, is_admin=True, cred=None)
    store.close()
    store = Store.open(tmp_path)
    again = UserService(store, UTC, evses)
    session = again.sessions.get("E1")
    assert (session.user_id, session.charging_disabled) == (uid, True)


async def test_a_deleted_evse_ends_its_session_and_transaction(world):
    _, evses, users, log, _ = world
    step(world, 0, plugged=True, charging=True, energy=10, rfid="04a1b2c3")
    step(world, 3, plugged=True, charging=True, energy=40, rfid="04a1b2c3")
    device_changed(users, log, "E1", T0 + 4)  # still an EVSE: nothing happens
    assert users.sessions.get("E1") is not None and log.running("E1") is not None
    del evses.configs["E1"]
    device_changed(users, log, "E1", T0 + 5)
    assert users.sessions.get("E1") is None and log.running("E1") is None
    (record,) = log.query()
    assert (record.status, record.energy_wh, record.end_ts) == ("closed", 30, T0 + 5)
    assert "device removed" in record.note


async def test_a_second_card_of_the_same_user(world):
    _, _, users, _, uid = world
    await users.save_user({"id": uid, "rfids": [{"id": "04A1B2C3"},
                                                {"id": "CAFE", "ac_ovch": False},
                                                {"id": "5EC0", "ac_auth": False,
                                                 "ac_ovch": True}]}, is_admin=True)
    step(world, 0, plugged=True, rfid="04a1b2c3")
    # a (de)activate-only card of the session's user toggles charging
    assert users.present("E1", "5EC0", T0 + 1, "enter_rfid") == "toggled"
    assert users.sessions.get("E1").charging_disabled
    assert users.present("E1", "5ec0", T0 + 2, "enter_rfid") == "toggled"
    assert not users.sessions.get("E1").charging_disabled
    # another authorising card of the same user becomes the session's card
    assert users.present("E1", "CAFE", T0 + 3, "enter_rfid") == "authorised"
    session = users.sessions.get("E1")
    assert (session.user_id, session.rfid) == (uid, "CAFE")


async def test_a_card_reading_counter_lets_the_same_card_start_the_next_session(world):
    _, _, users, _, uid = world
    track = users.track
    track("E1", False, T0, "04a1b2c3", rfid_seq=7)  # the last card from yesterday
    track("E1", True, T0 + 1, "04a1b2c3", rfid_seq=7)  # plugged in, no new reading
    assert users.sessions.get("E1").user_id is None
    track("E1", True, T0 + 2, "04a1b2c3", rfid_seq=8)  # the same card presented again
    assert users.sessions.get("E1").user_id == uid
    track("E1", False, T0 + 3, "04a1b2c3", rfid_seq=8)
    track("E1", True, T0 + 4, "04a1b2c3", rfid_seq=9)  # plugged in with the card at once
    assert users.sessions.get("E1").user_id == uid
