"""Charging sessions: who authorised an EVSE's current plug-in, and its overrides.

A session runs from plug-in to unplug. It remembers the credential that identified it (user,
card), and the per-session overrides of `override_device` (C: charging disabled, E: EVSE rules
off, U: user rules off, `mamps`: current cap), which end with the session. Overrides given while
no car is plugged in wait for the next session and start with it. A credential entered for an
EVSE before a car is plugged in waits there for a short while (`PREAUTH_WINDOW_S`) and is
applied at plug-in.

Sessions are persisted (key/value namespace `session`) on every change, so after a restart a car
that is still plugged in keeps its authorisation and overrides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from chargebrain.store.db import Store

SESSION_NS = "session"
PENDING_PREFIX = "pending:"
OVERRIDE_PREFIX = "override:"
OVERRIDE_FIELDS = frozenset({"charging_disabled", "evse_rules_off", "user_rules_off", "mamps",
                             "phases"})
PREAUTH_WINDOW_S = 120.0

OVERRIDE_C = 1  # bit0: charging disabled
OVERRIDE_E = 2  # bit1: EVSE charging rules off
OVERRIDE_U = 4  # bit2: user charging rules off


@dataclass(frozen=True, slots=True)
class Session:
    """One plug-in at one EVSE."""

    dev_id: str
    plugged_since_s: float
    user_id: str | None = None  # the user whose credential identified the session
    rfid: str | None = None  # the card/PIN presented (also an unknown one, for the log)
    auth_source: str = ""  # "enter_rfid", "wallbox", "fixed_rfid" or "" (nobody yet)
    charging_disabled: bool = False  # override C
    evse_rules_off: bool = False  # override E
    user_rules_off: bool = False  # override U
    mamps: int | None = None  # override current cap in mA
    phases: int | None = None  # override 1 or 3 phases (a switchable box); None = automatic
    wallbox_rfid: str | None = None  # last RFID the wallbox reported during this session

    @property
    def overrides(self) -> int:
        """The `overrides` bitfield of get_dev_info: bit0 C, bit1 E, bit2 U."""
        return ((OVERRIDE_C if self.charging_disabled else 0)
                | (OVERRIDE_E if self.evse_rules_off else 0)
                | (OVERRIDE_U if self.user_rules_off else 0))

    @property
    def identified(self) -> bool:
        """Some user's credential named this session."""
        return self.user_id is not None


@dataclass(frozen=True, slots=True)
class Pending:
    """A credential entered for an EVSE with no car yet; applied at the next plug-in."""

    dev_id: str
    secret: str
    until_s: float


class SessionBook:
    """Every EVSE's current session, persisted on each change."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._sessions: dict[str, Session] = {}
        self._pending: dict[str, Pending] = {}
        self._next_overrides: dict[str, dict[str, object]] = {}
        for key, raw in store.kv_all(SESSION_NS).items():
            if key.startswith(PENDING_PREFIX):
                pending = Pending(**raw)
                self._pending[pending.dev_id] = pending
            elif key.startswith(OVERRIDE_PREFIX):
                self._next_overrides[key[len(OVERRIDE_PREFIX):]] = {
                    k: v for k, v in raw.items() if k in OVERRIDE_FIELDS}
            else:
                self._sessions[key] = Session(**raw)

    def get(self, dev_id: str) -> Session | None:
        """The session at `dev_id`, None when no car is plugged in."""
        return self._sessions.get(dev_id)

    def all(self) -> dict[str, Session]:
        """Every session, by dev_id (a copy)."""
        return dict(self._sessions)

    def put(self, session: Session) -> Session:
        """Store a new or changed session (committed before it is returned)."""
        self._store.kv_set(SESSION_NS, session.dev_id, asdict(session))
        self._sessions[session.dev_id] = session
        return session

    def update(self, dev_id: str, **changes: object) -> Session:
        """Change fields of the session at `dev_id` (which must exist) and store it."""
        session = self._sessions[dev_id]
        return self.put(replace(session, **changes))  # type: ignore[arg-type]

    def end(self, dev_id: str) -> Session | None:
        """Remove the session of `dev_id` (unplug); return what it was."""
        session = self._sessions.get(dev_id)
        if session is not None:
            self._store.kv_delete(SESSION_NS, dev_id)
            del self._sessions[dev_id]
        return session

    # -- credentials entered before plug-in ---------------------------------------------------

    def set_pending(self, dev_id: str, secret: str, now_s: float) -> None:
        """Keep a credential for the next plug-in at `dev_id` (for PREAUTH_WINDOW_S)."""
        pending = Pending(dev_id, secret, now_s + PREAUTH_WINDOW_S)
        self._store.kv_set(SESSION_NS, PENDING_PREFIX + dev_id, asdict(pending))
        self._pending[dev_id] = pending

    def take_pending(self, dev_id: str, now_s: float) -> str | None:
        """The secret waiting for `dev_id`, if still within its window (removed either way)."""
        pending = self._pending.pop(dev_id, None)
        if pending is None:
            return None
        self._store.kv_delete(SESSION_NS, PENDING_PREFIX + dev_id)
        return pending.secret if now_s <= pending.until_s else None

    # -- overrides given with no car plugged in ------------------------------------------------

    def next_overrides(self, dev_id: str) -> dict[str, object]:
        """Overrides waiting for the next session at `dev_id` (Session field → value)."""
        return dict(self._next_overrides.get(dev_id, {}))

    def set_next_overrides(self, dev_id: str, changes: dict[str, object]) -> None:
        """Add override changes for the next session at `dev_id` (persisted)."""
        merged = {**self._next_overrides.get(dev_id, {}), **changes}
        self._store.kv_set(SESSION_NS, OVERRIDE_PREFIX + dev_id, merged)
        self._next_overrides[dev_id] = merged

    def take_next_overrides(self, dev_id: str) -> dict[str, object]:
        """The overrides waiting for `dev_id`, removed (a session starts, or the EVSE went)."""
        changes = self._next_overrides.pop(dev_id, None)
        if changes is None:
            return {}
        self._store.kv_delete(SESSION_NS, OVERRIDE_PREFIX + dev_id)
        return changes

    def forget_user(self, user_id: str) -> list[str]:
        """Sessions identified by a deleted user lose that identity; returns their dev_ids."""
        changed = []
        for dev_id, session in list(self._sessions.items()):
            if session.user_id == user_id:
                self.put(replace(session, user_id=None, auth_source=""))
                changed.append(dev_id)
        return changed
