"""kill -9 while a car charges: the transaction survives (continued or closed as interrupted),
the last acknowledged user change is there, and the database passes its integrity check."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import urllib.request
from typing import Any

from chargebrain.store.db import DB_FILE
from tests.support.server import ADMIN_PASSWORD, ServerProcess

AUTH = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
CARD = "0c0c03"


def call(server: ServerProcess, query: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.base_url + "/cnf?" + query, data=data,
                                     headers={"Authorization": AUTH})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def stored_rows(data_dir) -> list[tuple]:
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        return conn.execute("SELECT id, status, energy_wh, note FROM transactions"
                            " ORDER BY id").fetchall()
    finally:
        conn.close()


def test_kill_9_while_charging(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, modbus=False, extra=["--cycle-ms", "250"])
    server.start()
    try:
        uid = call(server, "cmd=get_new_user_id")
        assert call(server, "cmd=set_user", {"id": uid, "name": "before", "dev_ids": ["E1"],
                                             "rfids": [{"id": CARD}]}) == "ok"
        call(server, f"cmd=sim_vehicle&dev_id=E1&plugged=1&soc=20&rfid={CARD}")

        def charging_with_energy() -> bool:
            rows = call(server, "cmd=get_transactions")
            return bool(rows) and rows[-1]["status"] == "running" and rows[-1]["energy_wh"] >= 3

        wait_for(charging_with_energy)
        seen = call(server, "cmd=get_transactions")[-1]["energy_wh"]
        # wait until the store has at least that much (the log writes every few seconds)
        wait_for(lambda: stored_rows(data)[-1][2] >= seen)
        assert call(server, "cmd=set_user", {"id": uid, "name": "after"}) == "ok"
        server.kill()  # SIGKILL: no shutdown code runs
    finally:
        server.kill()

    assert [row[1] for row in stored_rows(data)] == ["running"]
    server = ServerProcess(data, modbus=False, extra=["--cycle-ms", "250"])
    server.start()
    try:
        user = call(server, f"cmd=get_user&id={uid}")
        assert user["name"] == "after" and user["dev_ids"] == ["E1"]

        def settled() -> bool:
            (row,) = call(server, "cmd=get_transactions")
            return row["status"] == "interrupted" or "resumed after restart" in row["note"]

        wait_for(settled)
        (row,) = call(server, "cmd=get_transactions")
        assert row["user_id"] == uid and row["rfid"] == CARD
        assert row["energy_wh"] >= seen
    finally:
        assert server.stop() == 0
    conn = sqlite3.connect(data / DB_FILE)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
