"""kill -9 at random moments during a stream of acknowledged writes; restart; nothing
acknowledged is lost and SQLite's integrity check passes every time.

One writer thread sends a mixed stream to a real `chargebrain serve` process: global params
(set_params), devices (set_device create/update, del_device), users (set_user), CM variables
(set_cm_vars, some with tmp=1 which must not survive), while a simulated car charges at E1 so
the transaction log is written too. The main thread sends SIGKILL after a random delay. After
each kill:
- `PRAGMA integrity_check` on the database file is ok (before anything opens it again);
- after a restart, every acknowledged write is there: for each key the value is the last
  acknowledged one, or the one that was in flight at the kill (a write is all or nothing);
- every transaction the API had shown is still in the log, with the same start.
Every third round the process is also killed while it starts up.

CHARGEBRAIN_CRASH_KILLS=N sets the number of kills (CI default 6); CHARGEBRAIN_CRASH_SEED
replays a run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargebrain.store.db import DB_FILE
from tests.reliability.support import start_server
from tests.support.server import ADMIN_PASSWORD, ServerProcess

AUTH = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
KILLS = int(os.environ.get("CHARGEBRAIN_CRASH_KILLS", "6") or 6)
DEVICE_IDS = [f"E{n}" for n in range(10, 16)] + [f"M{n}" for n in range(10, 16)]
USER_IDS = [f"7100{n}" for n in range(6)]
VAR_NAMES = [f"v{n}" for n in range(8)]
TMP_NAMES = [f"tmp{n}" for n in range(3)]
SERVER_ARGS = ["--cycle-ms", "250"]


class Killed(Exception):
    """The server went away while a request was in flight."""


def call(base_url: str, query: str, body: Any = None, timeout_s: float = 15.0) -> Any:
    """One request as admin; the decoded answer of a 200, AssertionError on another status,
    Killed when the connection breaks."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + "/cnf?" + query, data=data,
                                     headers={"Authorization": AUTH})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{query}: HTTP {err.code} {err.read()[:300]!r}") from None
    except (OSError, urllib.error.URLError) as err:
        raise Killed(str(err)) from None


@dataclass
class Expected:
    """What must be there after a restart: per key, the acknowledged value, plus the values a
    write in flight at the kill may have left (either is fine, nothing else is)."""

    acked: dict[tuple[str, str], Any] = field(default_factory=dict)
    in_flight: dict[tuple[str, str], Any] = field(default_factory=dict)
    transactions: dict[int, float] = field(default_factory=dict)  # id → start
    acks: int = 0

    def allowed(self, key: tuple[str, str]) -> list[Any]:
        values = [self.acked.get(key, ABSENT)]
        if key in self.in_flight:
            values.append(self.in_flight[key])
        return values


ABSENT = object()


class Writer(threading.Thread):
    """Sends writes until the server is killed; records what was acknowledged."""

    def __init__(self, base_url: str, expected: Expected, rng: random.Random, round_no: int
                 ) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.expected = expected
        self.rng = rng
        self.round_no = round_no
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            seq = 0
            while True:
                seq += 1
                self.one_write(f"{self.round_no}.{seq}")
        except Killed:
            return
        except BaseException as err:  # reported by the test
            self.error = err

    def write(self, changes: dict[tuple[str, str], Any], query: str, body: Any = None
              ) -> None:
        self.expected.in_flight = dict(changes)
        answer = call(self.base_url, query, body)
        assert answer == "ok", (query, answer)
        self.expected.acked.update(changes)
        self.expected.in_flight = {}
        self.expected.acks += 1

    def one_write(self, tag: str) -> None:
        kind = self.rng.randrange(7)
        if kind == 0:
            self.write({("param", "title"): tag}, "cmd=set_params", {"title": tag})
        elif kind in (1, 2):
            dev_id = self.rng.choice(DEVICE_IDS)
            dev_type = "evse_sim" if dev_id.startswith("E") else "meter_sim"
            self.write({("device", dev_id): tag}, "cmd=set_device",
                       {"devices": [{"dev_id": dev_id, "dev_type": dev_type, "name": tag}]})
        elif kind == 3:
            dev_id = self.rng.choice(DEVICE_IDS)
            if self.expected.acked.get(("device", dev_id), ABSENT) is ABSENT:
                return
            self.write({("device", dev_id): ABSENT}, f"cmd=del_device&dev_id={dev_id}")
        elif kind == 4:
            uid = self.rng.choice(USER_IDS)
            self.write({("user", uid): tag}, "cmd=set_user", {"id": uid, "name": tag})
        elif kind == 5:
            name = self.rng.choice(VAR_NAMES)
            value = self.rng.randrange(10**9)
            self.write({("var", name): value}, f"cmd=set_cm_vars&name={name}&val={value}")
        else:
            # tmp=1 is not persisted: it must not survive, whatever was acknowledged
            call(self.base_url, f"cmd=set_cm_vars&tmp=1&name={self.rng.choice(TMP_NAMES)}"
                                f"&val={self.rng.randrange(100)}")
            self.note_transactions()

    def note_transactions(self) -> None:
        for row in call(self.base_url, "cmd=get_transactions"):
            self.expected.transactions.setdefault(int(row["id"]), float(row["start"]))


def integrity(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / DB_FILE) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def observed(base_url: str) -> dict[tuple[str, str], Any]:
    """The state of every key the writer touches, read through the API after a restart."""
    state: dict[tuple[str, str], Any] = {}
    state[("param", "title")] = call(base_url, "cmd=get_params")["title"]
    devices = {d["dev_id"]: d for d in call(base_url, "cmd=get_devices")}
    for dev_id in DEVICE_IDS:
        state[("device", dev_id)] = devices[dev_id]["name"] if dev_id in devices else ABSENT
    users = {u["id"]: u for u in call(base_url, "cmd=get_users")}
    for uid in USER_IDS:
        state[("user", uid)] = users[uid]["name"] if uid in users else ABSENT
    cm_vars = {v["name"]: v["expr"] for v in call(base_url, "cmd=get_cm_vars")["vars"]}
    for name in VAR_NAMES + TMP_NAMES:
        state[("var", name)] = cm_vars.get(name, ABSENT)
    return state


def plug_car(base_url: str) -> None:
    answer = call(base_url, "cmd=sim_vehicle&dev_id=E1&plugged=1&soc=10&capacity=1000000")
    assert answer["plugged"] is True


def kill_during_start(data_dir: Path, rng: random.Random) -> None:
    """Start a process and SIGKILL it at a random moment of its start-up."""
    proc = ServerProcess(data_dir, extra=SERVER_ARGS)
    starter = threading.Thread(target=_start_quietly, args=(proc,), daemon=True)
    starter.start()
    while proc.proc is None and starter.is_alive():
        time.sleep(0.001)
    time.sleep(rng.uniform(0.0, 0.4))
    proc.kill()
    starter.join(timeout=30)


def _start_quietly(proc: ServerProcess) -> None:
    with contextlib.suppress(RuntimeError):  # killed before it answered: that is the point
        proc.start()


def check_state(base_url: str, expected: Expected, context: str) -> None:
    state = observed(base_url)
    for key, value in state.items():
        if key[1] in TMP_NAMES:
            assert value is ABSENT, f"{context}: tmp variable {key} was persisted"
            continue
        assert value in expected.allowed(key), (
            f"{context}: {key} is {value!r}, expected one of {expected.allowed(key)!r}")
    # a write is all or nothing: what survived of the in-flight write becomes acknowledged
    for key, value in state.items():
        if key[1] not in TMP_NAMES:
            expected.acked[key] = value
    expected.in_flight = {}
    rows = {int(r["id"]): float(r["start"]) for r in call(base_url, "cmd=get_transactions")}
    for ta_id, start in expected.transactions.items():
        assert rows.get(ta_id) == start, f"{context}: transaction {ta_id} lost or changed"


def test_kill_9_during_acknowledged_writes_loses_nothing(tmp_path):
    seed = int(os.environ.get("CHARGEBRAIN_CRASH_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    expected = Expected()
    for round_no in range(1, KILLS + 1):
        context = f"seed {seed}, round {round_no}"
        server = start_server(data_dir, extra=SERVER_ARGS)
        try:
            if round_no > 1:
                check_state(server.base_url, expected, context)
            plug_car(server.base_url)
            writer = Writer(server.base_url, expected, rng, round_no)
            writer.start()
            time.sleep(rng.uniform(0.2, 1.5))
            server.kill()  # SIGKILL: no shutdown code runs
            writer.join(timeout=30)
            assert not writer.is_alive(), context
            assert writer.error is None, f"{context}: {writer.error!r}"
        finally:
            server.kill()
        assert integrity(data_dir) == "ok", context
        if round_no % 3 == 0:
            kill_during_start(data_dir, rng)
            assert integrity(data_dir) == "ok", f"{context}, killed while starting"
    server = start_server(data_dir, extra=SERVER_ARGS)
    try:
        check_state(server.base_url, expected, f"seed {seed}, final")
    finally:
        assert server.stop() == 0
    assert integrity(data_dir) == "ok"
    assert expected.acks >= KILLS, "too few writes were acknowledged to prove anything"
    assert expected.transactions, "no transaction was seen: the log was not exercised"
