"""SQLite persistence: one database file in the data dir, WAL mode, named migrations.

Writes are committed before the API acknowledges them (`synchronous=FULL`), so an acknowledged
change survives a kill -9. The store is used from the event loop thread only; statements are
short, so they run inline.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chargebrain.store.schema import MIGRATIONS

DB_FILE = "chargebrain.sqlite3"


class Store:
    """The project's database. Open with `Store.open(data_dir)`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / DB_FILE
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        store = cls(conn, path)
        store.migrate()
        return store

    def close(self) -> None:
        self.conn.close()

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply every migration of `schema.MIGRATIONS` not applied yet; return their names."""
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " name TEXT PRIMARY KEY, position INTEGER NOT NULL, applied_at REAL NOT NULL)"
        )
        done = {row[0] for row in self.conn.execute("SELECT name FROM schema_version")}
        applied = []
        for position, (name, sql) in enumerate(MIGRATIONS, start=1):
            if name in done:
                continue
            with self.transaction():
                for statement in _split_sql(sql):
                    self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO schema_version(name, position, applied_at) VALUES (?, ?, ?)",
                    (name, position, time.time()),
                )
            applied.append(name)
        return applied

    def schema_names(self) -> list[str]:
        rows = self.conn.execute("SELECT name FROM schema_version ORDER BY position")
        return [r[0] for r in rows]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- key/value namespaces (params, flash registers, secrets, CM variables) ----------------

    def kv_get(self, ns: str, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM kv WHERE ns=? AND key=?", (ns, key)).fetchone()
        return default if row is None else json.loads(row[0])

    def kv_all(self, ns: str) -> dict[str, Any]:
        rows = self.conn.execute("SELECT key, value FROM kv WHERE ns=? ORDER BY key", (ns,))
        return {k: json.loads(v) for k, v in rows}

    def kv_set(self, ns: str, key: str, value: Any) -> None:
        self.kv_set_many(ns, {key: value})

    def kv_set_many(self, ns: str, values: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO kv(ns, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT(ns, key) DO UPDATE SET value=excluded.value",
                [(ns, k, json.dumps(v)) for k, v in values.items()],
            )

    def kv_delete(self, ns: str, key: str | None = None) -> None:
        with self.transaction() as c:
            if key is None:
                c.execute("DELETE FROM kv WHERE ns=?", (ns,))
            else:
                c.execute("DELETE FROM kv WHERE ns=? AND key=?", (ns, key))

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
