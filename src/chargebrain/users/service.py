"""The users domain as one object (`app.users`): users, credentials, sessions, budgets.

API handlers and the control cycle talk to `UserService`; it owns the user store, the session
book and the budget ledger, and reaches the EVSE configurations (their `users` lists and
`fixed_rfid`) through a small `EvseDirectory` that the device registry provides. It performs no
I/O besides the store.

Errors are `UserError(message, status)`; handlers turn them into the JSON error answer.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import tzinfo
from typing import Any, Protocol

from chargebrain.store.db import Store
from chargebrain.users import budgets
from chargebrain.users.budgets import BudgetLedger, BudgetSpec, budget_owner
from chargebrain.users.gate import EvseAuth, Gate, gate, waiting_evses
from chargebrain.users.ids import new_user_id
from chargebrain.users.model import (
    Credential,
    User,
    UserError,
    admin_changes,
    budget_to_json,
    parse_user,
    rfid_to_json,
)
from chargebrain.users.sessions import Session, SessionBook
from chargebrain.users.store import UserStore, norm

log = logging.getLogger(__name__)

MIN_MAMPS = 6000
MAX_MAMPS = 1_000_000
OVERRIDE_FLAGS = set("CcEeUu")


class Prepared(Protocol):
    """A validated EVSE configuration change that writes itself inside a transaction."""

    def write(self, conn: sqlite3.Connection) -> None:
        """Write the change inside the caller's transaction."""
        ...


class EvseDirectory(Protocol):
    """What the users domain needs from the device registry."""

    def evse_auths(self) -> list[EvseAuth]:
        """`users` and `fixed_rfid` of every configured EVSE."""
        ...

    def device_kind(self, dev_id: str) -> str | None:
        """"evse", "other" (a known device that is not an EVSE) or None (unknown)."""
        ...

    def prepare_users(self, users_by_evse: Mapping[str, Sequence[str]]) -> list[Prepared]:
        """Validate new `users` lists for the given EVSEs; change nothing (UserError)."""
        ...

    async def activate(self, prepared: list[Prepared]) -> None:
        """Make committed changes from `prepare_users` live."""
        ...


class NoEvses:
    """A directory without EVSEs (when no device registry is wired in)."""

    def evse_auths(self) -> list[EvseAuth]:
        return []

    def device_kind(self, dev_id: str) -> str | None:
        return None

    def prepare_users(self, users_by_evse: Mapping[str, Sequence[str]]) -> list[Prepared]:
        if users_by_evse:
            raise UserError(f"unknown device {next(iter(users_by_evse))}", 404)
        return []

    async def activate(self, prepared: list[Prepared]) -> None:
        """Nothing to activate."""


class UserService:
    """Users, RFIDs/PINs, sessions and budgets of one installation."""

    def __init__(self, store: Store, tz: tzinfo | None, evses: EvseDirectory | None = None) -> None:
        self.store = store
        self.tz = tz
        self.evses: EvseDirectory = evses or NoEvses()
        self.users = UserStore(store)
        self.sessions = SessionBook(store)
        self.ledger = BudgetLedger(tz)
        self.ledger.load(store)
        self._idle_rfid: dict[str, str] = {}  # last card an EVSE reported while unplugged
        self._rfid_seq: dict[str, int] = {}  # last card-reading counter an EVSE reported
        self._reported_rfid: dict[str, str] = {}  # what each EVSE reported last
        self._learn_until = 0.0  # the "learn the next card" window closes then
        self._learned: tuple[str, str] | None = None  # (dev_id, rfid) taken in the window

    # -- EVSEs --------------------------------------------------------------------------------

    def evse(self, dev_id: str) -> EvseAuth:
        """The EVSE `dev_id`; 404 when unknown, 400 when it is not an EVSE."""
        kind = self.evses.device_kind(dev_id)
        if kind is None:
            raise UserError(f"unknown device {dev_id}", 404)
        if kind != "evse":
            raise UserError(f"{dev_id} is not an EVSE")
        for auth in self.evses.evse_auths():
            if auth.dev_id == dev_id:
                return auth
        return EvseAuth(dev_id)

    def dev_ids_of(self, user_id: str) -> list[str]:
        """The EVSEs whose `users` list names `user_id`."""
        return [e.dev_id for e in self.evses.evse_auths() if user_id in e.users]

    # -- reading users ------------------------------------------------------------------------

    def user_json(self, user: User, now_s: float) -> dict[str, Any]:
        """The API form of a user: stored fields, `dev_ids`, and budget consumption."""
        cards = []
        for card in user.rfids:
            data = rfid_to_json(card)
            data["budget"] = self._budget_json(f"rfid:{card.id}", card.budget, now_s)
            cards.append(data)
        return {
            "id": user.id, "name": user.name, "display": user.display,
            "show_tile": user.show_tile, "dev_ids": self.dev_ids_of(user.id), "prio": user.prio,
            "budget": self._budget_json(f"user:{user.id}", user.budget, now_s),
            "rfids": cards, "charging_rules": list(user.charging_rules),
        }

    def _budget_json(self, owner: str, spec: BudgetSpec | None,
                     now_s: float) -> dict[str, Any] | None:
        data = budget_to_json(spec)
        if data is None or spec is None:
            return None
        use = self.ledger.current(owner, spec, now_s)
        data["used"] = round(budgets.used_amount(spec, use), 3)
        return data

    def resolve(self, secret: str | None) -> Credential | None:
        """The user a user id / PIN / RFID belongs to."""
        if not secret:
            return None
        return self.users.resolve(secret)

    def new_user_id(self) -> str:
        """A fresh user id that is no credential of anybody yet."""
        return new_user_id(self.users.taken_secrets().__contains__)

    # -- writing users ------------------------------------------------------------------------

    async def save_user(self, obj: Any, *, is_admin: bool) -> User:
        """Create or update a user from a `set_user` body.

        Creating needs admin. Without admin the body's `id` must name an existing user (the id
        is the credential) and only the user's own settings may change: not `dev_ids`, `prio`,
        budgets, or a card's `prio`, `valid_until`, `max_uses`. Everything is validated before
        anything is written; the user row and the EVSE `users` lists are committed in one
        transaction before this returns.
        """
        uid = obj.get("id") if isinstance(obj, dict) else None
        existing = self.users.get(str(uid)) if isinstance(uid, (str, int)) else None
        if existing is None and not is_admin:
            raise UserError("creating a user needs the admin password", 401)
        if not isinstance(obj, dict):
            raise UserError("user must be a JSON object")
        if "id" not in obj:
            raise UserError("missing user id (get one with cmd=get_new_user_id)")
        user, dev_ids, clears = parse_user(obj, existing)
        if not is_admin:
            changed = admin_changes(existing, user)
            if dev_ids is not None and set(dev_ids) != set(self.dev_ids_of(user.id)):
                changed.insert(0, "dev_ids")
            if any(clears.values()):
                changed.append("budget.clear_used")
            if changed:
                raise UserError(f"only the admin may change {', '.join(changed)}", 403)
        taken = self.users.taken_secrets(except_user=user.id)
        for secret in user.secrets():
            if norm(secret).decode() in taken:
                what = "user id" if secret == user.id else f"rfid {secret}"
                raise UserError(f"{what} is already in use")
        assignment = self._assignment(user.id, dev_ids) if dev_ids is not None else {}
        prepared = self.evses.prepare_users(assignment)
        with self.store.transaction() as conn:
            self.users.write(conn, user)
            for change in prepared:
                change.write(conn)
        self.users.cache([user])
        await self.evses.activate(prepared)
        removed_cards = {c.id for c in existing.rfids} - {c.id for c in user.rfids} \
            if existing else set()
        for card_id in removed_cards:
            self.ledger.clear(f"rfid:{card_id}")
        if clears.get("user"):
            self.ledger.clear(f"user:{user.id}")
        for card in user.rfids:
            if clears.get(card.id):
                self.ledger.clear(f"rfid:{card.id}")
        self._write_ledger()
        return user

    def _assignment(self, user_id: str, dev_ids: list[str]) -> dict[str, list[str]]:
        """New `users` lists for the EVSEs whose assignment of `user_id` changes."""
        for dev_id in dev_ids:
            self.evse(dev_id)  # 404 / 400 before anything is written
        wanted = set(dev_ids)
        changes: dict[str, list[str]] = {}
        for auth in self.evses.evse_auths():
            has = user_id in auth.users
            if auth.dev_id in wanted and not has:
                changes[auth.dev_id] = [*auth.users, user_id]
            elif auth.dev_id not in wanted and has:
                changes[auth.dev_id] = [u for u in auth.users if u != user_id]
        return changes

    async def delete_user(self, user_id: str) -> None:
        """Delete a user, its EVSE assignments and its budgets' consumption."""
        user = self.users.get(user_id)
        if user is None:
            raise UserError(f"unknown user {user_id}", 404)
        prepared = self.evses.prepare_users(self._assignment(user_id, []))
        with self.store.transaction() as conn:
            self.users.erase(conn, user_id)
            for change in prepared:
                change.write(conn)
        self.users.forget(user_id)
        await self.evses.activate(prepared)
        self.ledger.clear(f"user:{user_id}")
        for card in user.rfids:
            self.ledger.clear(f"rfid:{card.id}")
        self._write_ledger()
        self.sessions.forget_user(user_id)

    def _write_ledger(self) -> None:
        rows = self.ledger.take_dirty()
        if rows:
            with self.store.transaction() as conn:
                budgets.write_rows(conn, rows)

    # -- session events (from the cycle and from enter_rfid) ----------------------------------

    def on_plug(self, dev_id: str, now: float) -> Session:
        """A car was plugged in at `dev_id`: start a session, apply a waiting credential or
        the EVSE's fixed RFID."""
        waiting = self.sessions.take_next_overrides(dev_id)
        session = self.sessions.put(replace(Session(dev_id, now), **waiting))  # type: ignore[arg-type]
        secret = self.sessions.take_pending(dev_id, now)
        if secret is not None:
            try:
                self.present(dev_id, secret, now, "enter_rfid")
            except UserError as err:
                log.info("credential entered before plug-in at %s refused: %s", dev_id,
                         err.message)
        session = self.sessions.get(dev_id) or session
        if session.user_id is None:
            session = self._apply_fixed_rfid(dev_id, session)
        return session

    def _apply_fixed_rfid(self, dev_id: str, session: Session) -> Session:
        fixed = next((e.fixed_rfid for e in self.evses.evse_auths() if e.dev_id == dev_id), "")
        if not fixed:
            return session
        cred = self.users.resolve(fixed)
        if cred is None or not cred.authorises or (cred.rfid and cred.rfid.usable(session
                                                                                  .plugged_since_s)):
            return self.sessions.put(replace(session, rfid=fixed))  # logged, not authorising
        return self.sessions.put(replace(session, user_id=cred.user.id, rfid=cred.rfid_id,
                                         auth_source="fixed_rfid"))

    def on_unplug(self, dev_id: str, now: float) -> Session | None:
        """The car left `dev_id`: the session and its overrides end."""
        return self.sessions.end(dev_id)

    def on_rfid(self, dev_id: str, rfid: str, now: float) -> str:
        """A wallbox reported a card for its current session. Unknown or refused cards are
        recorded for the log only. Returns what happened (see `present`) or "refused"."""
        session = self.sessions.get(dev_id)
        if session is None:
            return "refused"
        self.sessions.put(replace(session, wallbox_rfid=rfid))
        try:
            return self.present(dev_id, rfid, now, "wallbox")
        except UserError:
            session = self.sessions.get(dev_id)
            if session is not None and session.user_id is None:
                self.sessions.put(replace(session, rfid=rfid))
            return "refused"

    def track(self, dev_id: str, plugged: bool, now: float, rfid: str | None = None,
              rfid_seq: int | None = None) -> None:
        """Convenience for the cycle: turn one observation into on_plug / on_unplug / on_rfid.

        `rfid` is what the wallbox reports as its last card ("" or None: none). `rfid_seq`,
        when the wallbox has one, counts card readings (the Power Brain's register 8111): a
        change means a card was presented, even the same card as last time. Without it, some
        wallboxes (the Power Brain's register 8096) keep showing the last card after the car
        left, so a card counts as presented only when the report differs from what it was while
        nothing was plugged in, or changes during the session.
        """
        rfid = rfid or ""
        seq_before = self._rfid_seq.get(dev_id)
        if rfid_seq is not None:
            self._rfid_seq[dev_id] = rfid_seq
        presented = (bool(rfid) and rfid_seq is not None and seq_before is not None
                     and rfid_seq != seq_before)
        reported_before = self._reported_rfid.get(dev_id)
        self._reported_rfid[dev_id] = rfid
        if rfid and (presented or (reported_before is not None and rfid != reported_before)):
            self._card_seen(dev_id, rfid, now)  # a card was held to this wallbox
        session = self.sessions.get(dev_id)
        if not plugged:
            self._idle_rfid[dev_id] = rfid
            if session is not None:
                self.on_unplug(dev_id, now)
            return
        if session is None:
            self.on_plug(dev_id, now)
            session = self.sessions.get(dev_id)
            stale = rfid == self._idle_rfid.get(dev_id) and not presented
            if session is not None and rfid and stale:
                self.sessions.put(replace(session, wallbox_rfid=rfid))  # old card: not taken
                return
        if session is not None and (presented or (rfid and rfid != session.wallbox_rfid)):
            self.on_rfid(dev_id, rfid, now)

    def _card_seen(self, dev_id: str, rfid: str, now: float) -> None:
        if self._learned is None and now <= self._learn_until:
            self._learned = (dev_id, rfid)
            self._learn_until = now  # one card per window

    def learn_card(self, now: float, *, start: bool, window_s: float = 60.0) -> dict[str, Any]:
        """The "learn the next card" window: `start` opens it for `window_s`; the answer tells
        whether it is open and the first card (known or not) a wallbox reported in it."""
        if start:
            self._learn_until = now + window_s
            self._learned = None
        remaining = max(0.0, self._learn_until - now)
        dev_id, rfid = self._learned or (None, None)
        return {"open": remaining > 0, "remaining_s": round(remaining, 1), "rfid": rfid,
                "dev_id": dev_id}

    def present(self, dev_id: str, secret: str, now: float, source: str) -> str:
        """Apply a credential to an EVSE; returns "authorised", "toggled" or "pending".

        Raises UserError 403 when the credential is unknown or may not do it, 404 for an
        unknown EVSE.
        """
        evse = self.evse(dev_id)
        cred = self.users.resolve(secret)
        if cred is None:
            raise UserError("unknown RFID/PIN", 403)
        if evse.needs_auth and cred.user.id not in evse.users:
            raise UserError(f"this user may not charge at {dev_id}", 403)
        if cred.rfid is not None and (why := cred.rfid.usable(now)):
            raise UserError(why, 403)
        session = self.sessions.get(dev_id)
        if session is None:
            if not cred.authorises:
                raise UserError("this card does not authorise charging", 403)
            self.sessions.set_pending(dev_id, secret, now)
            return "pending"
        if session.user_id == cred.user.id:
            # The session's own user again: a (de)activate card toggles charging; another
            # authorising card of the user becomes the session's card (its budget, priority).
            if cred.rfid is not None and cred.rfid.ac_ovch:
                self.sessions.put(replace(session,
                                          charging_disabled=not session.charging_disabled))
                return "toggled"
            if cred.rfid is not None and cred.authorises and cred.rfid_id != session.rfid:
                self.sessions.put(replace(session, rfid=cred.rfid_id, auth_source=source))
                self._count_use(cred)
            return "authorised"
        if session.user_id is not None and session.auth_source != "fixed_rfid":
            raise UserError(f"{dev_id} is in use by another user", 403)
        if not cred.authorises:
            raise UserError("this card does not authorise charging", 403)
        self.sessions.put(replace(session, user_id=cred.user.id, rfid=cred.rfid_id,
                                  auth_source=source))
        self._count_use(cred)
        return "authorised"

    def _count_use(self, cred: Credential) -> None:
        if cred.rfid is None:
            return
        user = self.users.get(cred.user.id)
        if user is None:
            return
        cards = tuple(replace(c, uses=c.uses + 1) if c.id == cred.rfid.id else c
                      for c in user.rfids)
        self.users.save(replace(user, rfids=cards))

    def enter_rfid(self, secret: str, dev_id: str | None, now: float) -> str:
        """`cmd=enter_rfid`: apply a PIN/RFID/user id at `dev_id`, or at the one EVSE waiting
        for this user. Returns the EVSE it was applied to."""
        if dev_id is not None:
            self.present(dev_id, secret, now, "enter_rfid")
            return dev_id
        cred = self.users.resolve(secret)
        if cred is None:
            raise UserError("unknown RFID/PIN", 403)
        evses = self.evses.evse_auths()
        sessions = self.sessions.all()
        targets = waiting_evses(evses, sessions, cred.user.id)
        if not targets and cred.rfid is not None and cred.rfid.ac_ovch:
            targets = [d for d, s in sessions.items() if s.user_id == cred.user.id]
        if not targets:
            mine = [e.dev_id for e in evses if cred.user.id in e.users
                    and e.dev_id not in sessions]
            if len(mine) == 1:
                targets = mine  # nothing plugged in yet: wait at the user's only EVSE
        if not targets:
            raise UserError("no EVSE is waiting for this RFID/PIN; give dev_id")
        if len(targets) > 1:
            raise UserError(f"several EVSEs could take this RFID/PIN ({', '.join(targets)});"
                            " give dev_id")
        self.present(targets[0], secret, now, "enter_rfid")
        return targets[0]

    # -- overrides ----------------------------------------------------------------------------

    def override(self, dev_id: str, flags: str, mamps: int | None, *, is_admin: bool,
                 cred: Credential | None, phases: int | None = None) -> None:
        """`cmd=override_device`: session flags C/c E/e U/u and a current cap, until unplug.

        C/c and `mamps`: admin or a credential of the session's user (or, on an unidentified
        session or with no car, of a user who may charge there); U/u: the same (the admin may
        too); E/e: admin only. `mamps` = 0 removes the cap. With no car plugged in (or before
        its session is known) the overrides wait for the next session and start with it.
        `phases` 1 or 3 switches a box that can switch phases to that many for the session
        (it beats the `switch_phases` variable and the automatic); 0 gives it back to them;
        it needs what `mamps` needs.
        """
        evse = self.evse(dev_id)
        bad = sorted(set(flags) - OVERRIDE_FLAGS)
        if bad:
            raise UserError(f"unknown override flag {bad[0]} (use C c E e U u)")
        if mamps is not None and mamps != 0 and not MIN_MAMPS <= mamps <= MAX_MAMPS:
            raise UserError(f"mamps must be 0 (no cap) or {MIN_MAMPS} to {MAX_MAMPS}")
        if phases is not None and phases not in (0, 1, 3):
            raise UserError("phases must be 1, 3 or 0 (automatic)")
        if not flags and mamps is None and phases is None:
            raise UserError("nothing to override: give flags, mamps and/or phases")
        session = self.sessions.get(dev_id)
        if not is_admin:
            if cred is None:
                raise UserError("admin password or the user's RFID/PIN required", 401)
            if set(flags) & set("Ee"):
                raise UserError("flags E/e need the admin password", 403)
            if not _may_override(evse, session, cred):
                raise UserError(f"this RFID/PIN may not override {dev_id}", 403)
        changes: dict[str, Any] = {}
        for flag in flags:
            key = {"c": "charging_disabled", "e": "evse_rules_off",
                   "u": "user_rules_off"}[flag.lower()]
            changes[key] = flag.isupper()
        if mamps is not None:
            changes["mamps"] = mamps or None
        if phases is not None:
            changes["phases"] = phases or None
        if session is None:
            self.sessions.set_next_overrides(dev_id, changes)
        else:
            self.sessions.put(replace(session, **changes))

    # -- the control cycle --------------------------------------------------------------------

    def gate_for(self, dev_id: str, config: Mapping[str, Any] | Any, now: float) -> Gate:
        """The gate of one EVSE this cycle (see users.gate)."""
        session = self.sessions.get(dev_id)
        result = gate(EvseAuth.from_config(dev_id, config), session,
                      self.users.as_mapping(), self.ledger.view(), now, self.tz)
        if session is None and (waiting := self.sessions.next_overrides(dev_id)):
            # shown at once (get_dev_info), applied when the next session starts
            preview = replace(Session(dev_id, now), **waiting)  # type: ignore[arg-type]
            result = replace(result, overrides=preview.overrides, ov_cur=preview.mamps or 0)
        return result

    def budget_for(self, rfid: str | None, user_id: str | None) -> tuple[str, BudgetSpec] | None:
        """The budget a session with this card / user consumes (for the transaction log)."""
        user = self.users.get(user_id) if user_id else None
        card = user.rfid(rfid) if user is not None and rfid else None
        return budget_owner(user, card)

    def user_name(self, user_id: str) -> str:
        """The name of a user ("" when unknown; for the transaction log)."""
        user = self.users.get(user_id)
        return user.name if user is not None else ""


def _may_override(evse: EvseAuth, session: Session | None, cred: Credential) -> bool:
    if (session is not None and session.user_id is not None
            and session.auth_source != "fixed_rfid"):
        return session.user_id == cred.user.id
    return not evse.needs_auth or cred.user.id in evse.users
