"""The user table: CRUD with an in-memory copy, and credential lookup.

Users live in the `users` table (id, JSON). The whole table is small (hundreds of users at most
on a car park), so it is read once at start and kept in memory; every change is committed before
the in-memory copy is updated, so what the API acknowledged is what a restart reads back.

A credential (user id, PIN or RFID) is a secret: lookup compares the candidate against every
stored secret with `hmac.compare_digest` and never stops early, so the time a lookup takes does
not tell how much of a guess was right.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from chargebrain.store.db import Store
from chargebrain.users.model import Credential, User, user_from_stored, user_to_json


def norm(secret: str) -> bytes:
    """The form credentials are compared in (case-insensitive)."""
    return secret.strip().lower().encode()


class UserStore:
    """All users, backed by the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._users: dict[str, User] = {}
        rows = store.conn.execute("SELECT data FROM users ORDER BY rowid")
        for (data,) in rows:
            user = user_from_stored(json.loads(data))
            self._users[user.id] = user

    def all(self) -> list[User]:
        """Every user, in creation order."""
        return list(self._users.values())

    def get(self, user_id: str) -> User | None:
        """The user with this id, or None."""
        return self._users.get(user_id)

    def __len__(self) -> int:
        return len(self._users)

    def as_mapping(self) -> Mapping[str, User]:
        """A read-only view user id → user (for the pure gate; users are immutable)."""
        return MappingProxyType(self._users)

    # -- credentials --------------------------------------------------------------------------

    def resolve(self, secret: str) -> Credential | None:
        """The user (and card) a user id, PIN or RFID belongs to, or None.

        Case does not matter: wallboxes report card ids as hex in either case."""
        wanted = norm(secret)
        found: Credential | None = None
        for user in self._users.values():
            if hmac.compare_digest(norm(user.id), wanted) and found is None:
                found = Credential(user)
            for card in user.rfids:
                if hmac.compare_digest(norm(card.id), wanted) and found is None:
                    found = Credential(user, card)
        return found

    def taken_secrets(self, except_user: str | None = None) -> set[str]:
        """Every user id and RFID/PIN in use (normalised, see `norm`), leaving out those of
        `except_user`."""
        out: set[str] = set()
        for user in self._users.values():
            if user.id != except_user:
                out.update(norm(s).decode() for s in user.secrets())
        return out

    # -- writes ------------------------------------------------------------------------------

    @staticmethod
    def write(conn: sqlite3.Connection, user: User) -> None:
        """Upsert `user` inside a transaction the caller opened; call `cache()` after commit."""
        conn.execute(
            "INSERT INTO users(id, data) VALUES (?, ?)"
            " ON CONFLICT(id) DO UPDATE SET data=excluded.data",
            (user.id, json.dumps(user_to_json(user), separators=(",", ":"))))

    @staticmethod
    def erase(conn: sqlite3.Connection, user_id: str) -> None:
        """Delete a user inside a transaction the caller opened; call `forget()` after commit."""
        conn.execute("DELETE FROM users WHERE id=?", (user_id,))

    def cache(self, users: Iterable[User]) -> None:
        """Take committed users into the in-memory copy."""
        for user in users:
            self._users[user.id] = user

    def forget(self, user_id: str) -> None:
        """Drop a committed deletion from the in-memory copy."""
        self._users.pop(user_id, None)

    def save(self, user: User) -> None:
        """Write one user in its own transaction and cache it."""
        with self._store.transaction() as conn:
            self.write(conn, user)
        self.cache([user])
