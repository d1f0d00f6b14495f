"""Hostile HTTP requests against every `/cnf` command of a real `chargebrain serve` process.

Every command of `chargebrain.api.handlers.all_commands()` (new commands are covered without
touching this file) gets random and hostile query parameters and bodies: huge, negative, NaN
and infinite numbers, broken JSON, wrong JSON types, unknown keys, 10k-character strings,
unicode, odd percent-encoding; as admin, without credentials and with wrong ones. For every
request:
- the status is never 5xx, the answer is JSON (CSV only for a successful CSV export) and
  carries no traceback;
- a refused request (4xx) changes nothing: the configuration seen through get_devices,
  get_params, get_users and get_cm_vars is the same before and after;
- the server still answers get_dev_info.
At the end the server log shows no internal error and SQLite's integrity check is ok.

Only loopback is ever contacted: parameters and body fields that name a network address
(`addr`, `address`) only take loopback or malformed values.

`CHARGEBRAIN_FUZZ_EXAMPLES=N` raises the number of random examples for a long run.
"""

from __future__ import annotations

import base64
import http.client
import inspect
import json
import re
import sqlite3
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargebrain.api.handlers import HANDLER_MODULES, all_commands
from chargebrain.devices import types
from chargebrain.params import SPECS
from chargebrain.store.db import DB_FILE
from tests.reliability.support import PROBE_TIMEOUT_S, fuzz_examples, start_server
from tests.support.ports import free_port
from tests.support.server import ADMIN_AUTH, basic

COMMANDS = sorted(all_commands())
CYCLE_MS = "60000"  # a slow cycle: nothing but the fuzz changes the configuration
MAX_REQUEST_LINE = 8190  # aiohttp answers a longer request line with a plain-text 400
MAX_BODY = 1 << 20  # the server refuses longer bodies (413) and may close the connection
CLOSED = -1  # status when the server closed the connection instead of answering

# -- what the server is asked with ------------------------------------------------------------


_PARAM_CALL = re.compile(
    r"""(?:text|required_text|integer|flag|has)\(\s*["']([a-z_0-9]+)["']""")


def _command_params() -> dict[str, list[str]]:
    """For every command, the query parameters its handler module reads (found in the
    source), so the fuzz reaches new parameters without being told."""
    by_module = {module: sorted(set(_PARAM_CALL.findall(inspect.getsource(module))) - {"cmd"})
                 for module in HANDLER_MODULES}
    table = {}
    for module in HANDLER_MODULES:
        for name in module.COMMANDS:
            table[name] = by_module[module] or ["dev_id"]
    return table


def _body_keys() -> list[str]:
    from pydantic import BaseModel

    from chargebrain.devices import config
    from chargebrain.users import model

    keys = set(SPECS) | {"devices", "vars", "name", "expr", "value", "id", "rfids", "budget"}
    for obj in vars(config).values():
        if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj is not BaseModel:
            keys.update(obj.model_fields)
    for name in ("USER_KEYS", "RFID_KEYS", "BUDGET_KEYS"):
        keys.update(getattr(model, name, ()))
    keys.update({"voltage", "current", "power_w", "import_wh", "import_vah", "export_wh",
                 "charging_enabled", "state", "max_total_power", "max_total_cur_prc"})
    return sorted(keys)


COMMAND_PARAMS = _command_params()
PARAM_NAMES = sorted({n for names in COMMAND_PARAMS.values() for n in names}
                     | {"read", "write", "value", "values", "device", "count", "dev_id", "id"})
BODY_KEYS = _body_keys()
NETWORK_KEYS = frozenset({"addr", "address"})
CLOSED_PORT = free_port()

hostile_text = st.sampled_from([
    "", " ", "0", "1", "-1", "16000.0", "1234.00", "1.5", "-0", "+5", "1e3", "1e309", "-1e309",
    "nan", "NaN", "inf", "-inf", "Infinity", "1e-400", "0x10", "0b1", "1_000", "9" * 400,
    str(2**63), str(2**64), str(-2**63 - 1), "\u0661\u0662\u0663", "\u00b2", "true", "false",
    "null", "[]", "{}", "[1,2", '{"a":', '"', "'", "\\", "%", "%ZZ", "%00", "%ff", "%%",
    "\x00", "\r\n", "\t", "E1", "E2", "E999999", "M1", "M2", "M0", "E0", "e1", "E1 ", "all",
    "evse", "meter1", "meter2", "8093", "8093d", "8096s", "8058q", "8000", "[7,230,230]",
    "[1e400]", "C", "cCeEuU", "Cc" * 50, "'; DROP TABLE kv;--", "../../etc/passwd",
    "<script>x</script>", "x" * 10_000, "\u00e9" * 5_000, "\U0001f50c" * 100, "\ud7ff",
    "csv", "json", "s", "d", "w", "f", "q", "hl", "lh"])
any_text = st.one_of(hostile_text, st.text(max_size=40),
                     st.integers(-2**70, 2**70).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))
safe_address = st.sampled_from([
    "", "evse", "meter1", "meter2", "COM1,9600,8,N,1", "COM3", "bad host!:1", "[::1:1",
    "127.0.0.1:0", "127.0.0.1:99999", f"127.0.0.1:{CLOSED_PORT}", "127.0.0.1", "x" * 5000,
    "localhost:", ":502", "@"])


PLAUSIBLE = {  # values that get a request past its first checks, so the fuzz goes deeper
    "dev_id": ["E1", "M1", "M2", "E2"], "device": ["evse", "meter1", "meter2"],
    "read": ["8093", "all", "8058q", "8096s", "8000d"], "write": ["8093", "8091", "8058q"],
    "value": ["100", "0", "60"], "values": ["[100,1]", "[7]"], "count": ["2", "125"],
    "acc": ["1", "0"], "enable": ["0"], "format": ["csv", "json"], "flags": ["C", "cE", "U"],
    "mamps": ["16000", "6000.0"], "plugged": ["1", "0"], "phases": ["1", "3"],
    "name": ["a", "var_1"], "val": ["1", "2.5", "CM.a+1"], "reg": ["8093", "0x1F9D"],
    "type": ["w", "d", "f", "q", "s"], "order": ["hl", "lh"], "func": ["3", "4", "6", "16"],
    "clear": ["0", "1"], "tmp": ["0", "1"], "id": ["1", "0"]}


def _value_for(draw: st.DrawFn, name: str) -> str:
    if name in NETWORK_KEYS:
        return draw(safe_address)
    if name in PLAUSIBLE and draw(st.booleans()):
        return draw(st.sampled_from(PLAUSIBLE[name]))
    return draw(any_text)


@st.composite
def query_params(draw: st.DrawFn, cmd: str) -> list[tuple[str, str]]:
    """Parameters for `cmd`: each one its handler reads with even chance, plus a few from
    other commands or invented; values plausible or hostile, network addresses only loopback
    or malformed."""
    params = [(name, _value_for(draw, name))
              for name in COMMAND_PARAMS.get(cmd, []) if draw(st.booleans())]
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=12)))
        params.append((name, _value_for(draw, name)))
    return draw(st.permutations(params))


json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-2**80, 2**80),
    st.floats(allow_nan=True, allow_infinity=True), any_text,
    st.sampled_from([0, -1, 1, 6000, 16000, 16000.0, 32000, 10**12, -10**12, 1e308, 0.5]))
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(BODY_KEYS), st.text(max_size=10)), inner,
                        max_size=5)),
    max_leaves=20)


@st.composite
def device_like(draw: st.DrawFn) -> dict[str, Any]:
    """An object close to a device configuration, with one or more hostile fields."""
    obj = {"dev_id": draw(st.sampled_from(["E1", "M1", "M2", "E2", "M3", "E7", "E0", "X1"])),
           "dev_type": draw(st.sampled_from([*types.labels(), "nonsense"])),
           "name": draw(any_text)}
    for key in draw(st.lists(st.sampled_from(BODY_KEYS), max_size=5)):
        obj[key] = draw(json_scalar)
    return obj


@st.composite
def structured_body(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return {"devices": draw(st.lists(device_like(), max_size=2))}
    if kind == 1:
        return {"vars": draw(st.lists(st.fixed_dictionaries(
            {"name": any_text, "expr": json_scalar}), max_size=4))}
    if kind == 2:
        return {key: draw(json_scalar) for key in
                draw(st.lists(st.sampled_from(sorted(SPECS)), min_size=1, max_size=4))}
    if kind == 3:  # a user-like object
        return {"id": draw(any_text), "name": draw(any_text),
                "rfids": draw(st.lists(st.fixed_dictionaries({"id": any_text}), max_size=2)),
                "budget": draw(json_value)}
    return draw(json_value)


def _safe(value: Any, draw: st.DrawFn) -> Any:
    """Replace every network address field with a loopback or malformed one."""
    if isinstance(value, dict):
        return {k: draw(safe_address) if k in NETWORK_KEYS else _safe(v, draw)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_safe(v, draw) for v in value]
    return value


BROKEN_JSON = [b"{", b"[", b'{"devices": [', b'{"a" 1}', b"{'a': 1}", b'{"a": NaN}',
               b'{"a": Infinity}', b"\xff\xfe\x00", b'"\\ud800"', b'{"a": 1}{"b": 2}',
               b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 5000, b"\x00" * 100, b"null",
               b"  ", b'{"vars": [{"name": "a", "expr": 1e99999}]}']


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.integers(0, 29))
    if kind <= 2:
        return None
    if kind == 3:
        return b"[" * (1 << 20) + b"]"  # more than the 1 MB the server reads
    if kind <= 6:
        return draw(st.binary(max_size=300))
    if kind <= 10:
        return draw(st.sampled_from(BROKEN_JSON))
    value = _safe(draw(structured_body() if kind <= 22 else json_value), draw)
    return json.dumps(value, allow_nan=True).encode()


AUTHS = [ADMIN_AUTH, None, basic("admin", "wrong-password"), basic("wusel", "x"),
         "Basic !!!", "Basic " + base64.b64encode(b"admin").decode(), "Bearer abc",
         "Basic " + "A" * 5000]

# -- talking to the server --------------------------------------------------------------------


class Api:
    """A keep-alive HTTP/1.1 client that sends exactly what it is given."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path_qs: str, body: bytes | None = None,
                auth: str | None = ADMIN_AUTH) -> tuple[int, str, bytes]:
        headers = {"Authorization": auth} if auth else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path_qs, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, resp.getheader("Content-Type", ""), data
            except (http.client.HTTPException, ConnectionError):
                # a keep-alive connection the server closed meanwhile: once more on a new one;
                # a second break means the server refused the request and closed
                self.conn.close()
                if attempt:
                    return CLOSED, "", b""
        raise AssertionError("unreachable")

    def get_json(self, cmd: str) -> Any:
        status, _, data = self.request("GET", f"/cnf?cmd={cmd}")
        assert status == 200, (cmd, status, data[:300])
        return json.loads(data)


def _config_params(params: dict[str, Any]) -> dict[str, Any]:
    # overdraft_cur is maintained by the control cycle, the rest of get_params is live data
    return {k: params.get(k) for k in SPECS if k != "overdraft_cur"}


def _users(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Users without budget consumption (it advances while a car charges)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "used"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(users)


def snapshot(api: Api) -> dict[str, Any]:
    """The configuration as the API shows it."""
    return {"devices": api.get_json("get_devices"),
            "params": _config_params(api.get_json("get_params")),
            "users": _users(api.get_json("get_users")),
            "cm_vars": _cm_vars(api.get_json("get_cm_vars"))}


def _cm_vars(answer: Any) -> Any:
    """The variables' configuration (name, expression): their values and the predefined
    `CM._*` values are live (the cycle changes `_dt`, `_surplus` …), not configuration."""
    if not isinstance(answer, dict):
        return answer
    return sorted((v.get("name"), repr(v.get("expr"))) for v in answer.get("vars", []))


def check_answer(status: int, ctype: str, data: bytes, what: str, target_len: int,
                 body_len: int) -> None:
    if status == CLOSED:  # only for what HTTP itself refuses before a handler runs
        assert target_len > MAX_REQUEST_LINE or body_len > MAX_BODY, what
        return
    assert status < 500, (what, status, data[:500])
    text = data.decode("utf-8", errors="replace")
    assert "Traceback" not in text and 'File "' not in text, (what, text[:500])
    if target_len > MAX_REQUEST_LINE:
        assert status == 400, what  # aiohttp's HTTP parser refuses it before /cnf sees it
        return
    if ctype.startswith("text/csv"):
        assert status == 200, what
        return
    assert ctype.startswith("application/json"), (what, status, ctype, text[:300])
    json.loads(text)  # valid JSON


def build_path(cmd: str, params: list[tuple[str, str]], style: int) -> str:
    """The request target: plainly encoded, with the whole query percent-encoded once more
    (compat.md), with a doubled slash, or with names/values sent raw where that is ASCII."""
    pairs = [("cmd", cmd), *params]
    if style == 3:
        pairs = [*params, ("cmd", cmd)]  # cmd last
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    if style == 1:
        return "/cnf?" + quote(query, safe="")
    if style == 2:
        return "//cnf?" + query
    if style == 4:
        raw = "&".join(f"{k}={v}" for k, v in pairs)
        if raw.isascii() and raw.isprintable() and " " not in raw and "#" not in raw:
            return "/cnf?" + raw
    return "/cnf?" + query


# -- the server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = start_server(tmp_path_factory.mktemp("http-fuzz") / "data",
                        extra=["--cycle-ms", CYCLE_MS])
    try:
        yield proc
        assert proc.proc is not None and proc.proc.poll() is None, "server died"
    finally:
        proc.stop()
    log = proc.log_path.read_text(errors="replace")
    # aiohttp logs malformed HTTP with its own traceback; none may pass through our code
    assert "internal error" not in log, log[-4000:]
    assert not re.search(r'File "[^"]*/chargebrain/', log), log[-4000:]
    with sqlite3.connect(proc.data_dir / DB_FILE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class Fuzzer:
    """Sends one request, checks the answer, the configuration and liveness."""

    def __init__(self, port: int) -> None:
        self.api = Api(port)
        self.config = snapshot(self.api)
        self.statuses: dict[int, int] = {}

    def send(self, method: str, path_qs: str, body: bytes | None, auth: str | None) -> int:
        status, ctype, data = self.api.request(method, path_qs, body, auth)
        what = f"{method} {path_qs[:300]} body={body[:200] if body else body!r} auth={auth!r:.40}"
        check_answer(status, ctype, data, what, len(path_qs), len(body or b""))
        self.statuses[status] = self.statuses.get(status, 0) + 1
        after = snapshot(self.api)
        if 400 <= status < 500 or status == CLOSED:
            assert after == self.config, f"refused request changed the configuration: {what}"
        self.config = after
        status_info, _, info = self.api.request("GET", "/cnf?cmd=get_dev_info")
        assert status_info == 200, info[:300]
        return status


@pytest.fixture(scope="module")
def fuzzer(server):
    fuzzer = Fuzzer(server.port)
    yield fuzzer
    fuzzer.api.close()


# -- every command, a fixed hostile matrix (deterministic coverage) ---------------------------

FIXED_QUERIES: list[list[tuple[str, str]]] = [
    [],
    [("dev_id", "x" * 10_000)],  # longer than a request line may be
    *[[(name, "x" * 5_000)] for name in ("dev_id", "id", "rfid", "name", "val", "read")],
    [(name, "nan") for name in PARAM_NAMES if name not in NETWORK_KEYS],
    [(name, "-1e309") for name in PARAM_NAMES if name not in NETWORK_KEYS],
    [(name, str(2**70)) for name in PARAM_NAMES if name not in NETWORK_KEYS],
    [(name, "-1") for name in PARAM_NAMES if name not in NETWORK_KEYS],
    [(name, "\u00e9\U0001f50c\x00") for name in PARAM_NAMES if name not in NETWORK_KEYS],
    [("dev_id", "E1"), ("addr", "COM1"), ("device", "evse"), ("read", "all"), ("rfid", "")],
    [("dev_id", "E999"), ("addr", f"127.0.0.1:{CLOSED_PORT}"), ("reg", "1"), ("val", "1")],
]
FIXED_BODIES: list[bytes | None] = [None, b"{", b"[]", b"null", b'"text"', b"1e999",
                                    b'{"unknown_key": 1}', b'{"devices": "E1"}',
                                    b'{"vars": [{"name": "a", "expr": {}}]}',
                                    b"[" * 50_000 + b"]" * 50_000]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_survives_the_fixed_hostile_matrix(fuzzer, cmd):
    for auth in (ADMIN_AUTH, None):
        for params in FIXED_QUERIES:
            fuzzer.send("GET", build_path(cmd, params, 0), None, auth)
        for body in FIXED_BODIES:
            fuzzer.send("POST", build_path(cmd, [], 0), body, auth)


# -- random requests --------------------------------------------------------------------------

@settings(max_examples=fuzz_examples(8000), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_random_requests_never_5xx_and_refusals_change_nothing(fuzzer, data):
    known = data.draw(st.integers(0, 19)) > 0
    cmd = data.draw(st.sampled_from(COMMANDS) if known else any_text, label="cmd")
    params = data.draw(query_params(cmd), label="params")
    method = data.draw(st.sampled_from(["GET", "GET", "POST", "POST", "PUT"]), label="method")
    body = data.draw(bodies(), label="body") if method != "GET" or \
        data.draw(st.integers(0, 9)) == 0 else None
    auth = data.draw(st.sampled_from([ADMIN_AUTH] * 6 + [None] * 2 + AUTHS), label="auth")
    style = data.draw(st.sampled_from([0] * 6 + [1, 2, 3, 4]), label="style")
    fuzzer.send(method, build_path(cmd, params, style), body, auth)


@pytest.mark.parametrize("name", ["from", "to"])
def test_get_transactions_from_2_pow_63_is_refused(fuzzer, name):
    """Found by this fuzz: 2**63 passed the integer check and overflowed SQLite (a 500)."""
    fuzzer.send("GET", f"/cnf?cmd=get_transactions&{name}=9223372036854775808", None,
                ADMIN_AUTH)
    status, _, data = fuzzer.api.request("GET", f"/cnf?cmd=get_transactions&{name}=" +
                                         str(2**63))
    assert status == 400, (status, data[:200])


def test_refusals_were_exercised(fuzzer):
    """The fuzz above must have produced refusals and acceptances, or it tested nothing."""
    fuzzer.send("GET", "/cnf?cmd=set_cm_vars&name=a%20b&val=1", None, ADMIN_AUTH)
    fuzzer.send("GET", "/cnf?cmd=get_dev_info", None, None)
    assert fuzzer.statuses.get(400, 0) > 0 and fuzzer.statuses.get(200, 0) > 0


# -- malformed HTTP itself --------------------------------------------------------------------

RAW_REQUESTS = [
    b"GET /cnf?cmd=get_dev_info HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /cnf?cmd=get_dev_info HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /cnf?cmd=set_params HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    b"POST /cnf?cmd=set_params HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /cnf?cmd=get_dev_info HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # a TLS hello
    b"GET /cnf?cmd=get_dev_info HTTP/9.9\r\n\r\n",
    b"BREW /cnf HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\n\r\n\r\n",
]


@pytest.mark.parametrize("raw", RAW_REQUESTS, ids=range(len(RAW_REQUESTS)))
def test_malformed_http_is_refused_and_the_server_stays(fuzzer, server, raw):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=PROBE_TIMEOUT_S) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass  # a reset is a fine answer to garbage
    if answer.startswith(b"HTTP/"):
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:300]
    assert fuzzer.api.get_json("get_dev_info")["devices"] is not None
    assert snapshot(fuzzer.api) == fuzzer.config
