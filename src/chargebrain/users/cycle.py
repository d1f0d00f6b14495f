"""What the control cycle calls for every EVSE on every cycle: one function.

`observe_evse` turns one observation of a wallbox into the users domain's events (plug-in,
unplug, a card the wallbox reports), keeps the transaction log and the budgets up to date, and
returns the EVSE's `Gate`. With the device's runtime `status` it also fills the fields
get_dev_info shows (`needs_auth`, `ov_cur`, `overrides`, `ta_en`).

How the cycle uses the gate for the allocator's demand (`core.model.EvseDemand`):
- `wants_charge` only when `gate.may_charge`; otherwise `not_charging_reason = gate.reason_text`;
- `max_ma = min(max_ma, gate.max_ma)` when `gate.max_ma` is set (override `mamps`);
- `priority = gate.priority` when set (user/card priority), else the EVSE's `prio`;
- `phases_mask = gate.phases_mask` (before rotation) when set (card `used_phases`);
- charging rules: the EVSE's rules only when `gate.evse_rules`, the user's when `gate.user_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chargebrain.users.gate import Gate
from chargebrain.users.service import UserService
from chargebrain.users.transactions import TransactionLog


def observe_evse(users: UserService, log: TransactionLog, *, dev_id: str,
                 config: Mapping[str, Any] | Any, plugged: bool, charging: bool,
                 energy_wh: int | None, rfid: str | None, now: float,
                 status: Any = None, rfid_seq: int | None = None) -> Gate:
    """Record one observation of EVSE `dev_id` and decide its gate for this cycle.

    `plugged`/`charging` come from the EVSE's state (B/C/D, C/D), `energy_wh` is its meter
    reading (attached meter or soft meter; None when unknown), `rfid` the card it reports
    ("" / None: none) and `rfid_seq` its card-reading counter if it has one (see
    `UserService.track`), `now` unix seconds (`time.time()` clock: transactions store it).
    """
    users.track(dev_id, plugged, now, rfid, rfid_seq)
    session = users.sessions.get(dev_id)
    run = log.observe(dev_id, plugged, charging, energy_wh,
                      session.rfid if session else None, session.user_id if session else None,
                      now)
    gate = users.gate_for(dev_id, config, now)
    if status is not None:
        status.needs_auth = gate.needs_auth
        status.ov_cur_ma = gate.ov_cur
        status.overrides = gate.overrides
        status.ta_en_wh = run.energy_wh if run is not None else 0
    return gate


def device_changed(users: UserService, log: TransactionLog, dev_id: str, now: float) -> None:
    """A device was created, changed or deleted (the registry's `on_change`): when `dev_id`
    is no EVSE any more, its session ends and its running transaction is closed."""
    if users.evses.device_kind(dev_id) == "evse":
        return
    users.sessions.end(dev_id)
    users.sessions.take_pending(dev_id, now)
    users.sessions.take_next_overrides(dev_id)
    log.device_removed(dev_id, now)
