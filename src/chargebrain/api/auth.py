"""Admin authentication: HTTP Basic `admin`, scrypt-hashed password, constant-time compare.

The password is never stored or logged in plain text: the store keeps a salted scrypt hash, and
the small cache of recently checked `Authorization` headers is keyed by a SHA-256 of the header.
When no password was ever set, the first start generates one, prints it once and stores only its
hash; `--admin-password` / `CHARGEBRAIN_ADMIN_PASSWORD` set it explicitly.

Failed credentials (a wrong admin password, and unknown user PINs/RFIDs reported by the users
API) slow down further attempts from the same address: after `FREE_FAILURES` failures within
`FAIL_WINDOW_S`, every further failure waits twice as long as the one before, up to
`max_delay_s`. The clock and the sleep are injectable so tests can drive this without waiting.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chargebrain.api.commands import Access
from chargebrain.api.errors import ApiError
from chargebrain.api.request import ApiRequest, Principal
from chargebrain.params import Params
from chargebrain.store.db import Store

SECRET_NS = "secret"
ADMIN_KEY = "admin_password"
ADMIN_USER = "admin"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
LOCALHOST = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
MIN_PASSWORD_LEN = 8
MAX_PASSWORD_LEN = 128
AUTH_REALM = 'Basic realm="chargebrain"'


# Commands that change nothing: a browser may send them from any page (the same-origin policy
# keeps the answer from that page). Every other command changes state and is refused when the
# request is cross-site (see `cross_site_refusal`).
READ_ONLY_COMMANDS = frozenset({
    "get_dev_info", "get_params", "get_dev_types", "get_devices", "explain", "get_cm_vars",
    "get_users", "get_user", "get_new_user_id", "get_transactions", "modbus_get",
    "get_usage"})  # get_usage: the usage graphs' data (arrives with the recorder)
SAME_SITE_FETCH = frozenset({"same-origin", "none"})


def cross_site_refusal(cmd: str, headers: Mapping[str, str], host: str) -> ApiError | None:
    """The 403 for a state-changing command sent cross-site by a browser, else None.

    A browser attaches cached Basic credentials to any request to this host, also to an
    `<img>`, a form or a fetch on another site's page. Such requests carry `Sec-Fetch-Site`
    (anything but `same-origin`/`none` is another page's) or an `Origin` that is not `host`
    (`scheme://host:port`; `null` from sandboxed or privacy-sensitive contexts counts as
    foreign). Clients that send neither header (curl, integrations, scripts) are not browsers
    acting for another site and are let through; so are the read-only commands."""
    if cmd in READ_ONLY_COMMANDS:
        return None
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.strip().lower() not in SAME_SITE_FETCH:
        return ApiError(f"cross-site request refused ({cmd} changes state)", 403)
    origin = headers.get("Origin")
    if origin is not None and not _same_host(origin, host):
        return ApiError(f"cross-site request refused ({cmd} changes state)", 403)
    return None


def _same_host(origin: str, host: str) -> bool:
    """True when the `Origin` header names `host` (the request's `Host`, with port)."""
    try:
        parts = urlsplit(origin.strip())
        netloc = parts.netloc.lower()
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not netloc:
        return False
    host = host.strip().lower()
    default = {"http": ":80", "https": ":443"}[parts.scheme]
    return netloc == host or netloc + default == host or netloc == host + default


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """A salted scrypt hash record of `password` (what the store keeps)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return {"alg": "scrypt", "n": _SCRYPT["n"], "r": _SCRYPT["r"], "p": _SCRYPT["p"],
            "salt": salt.hex(), "hash": digest.hex()}


def verify_password(password: str, stored: dict[str, Any]) -> bool:
    """True when `password` matches the hash record; compares in constant time.

    A malformed record never matches (and never raises)."""
    try:
        salt = bytes.fromhex(stored["salt"])
        expected = bytes.fromhex(stored["hash"])
        params = {"n": int(stored.get("n", _SCRYPT["n"])), "r": int(stored.get("r", _SCRYPT["r"])),
                  "p": int(stored.get("p", _SCRYPT["p"])), "dklen": len(expected)}
        digest = hashlib.scrypt(password.encode(), salt=salt, **params)
    except (KeyError, TypeError, ValueError):
        return False
    return hmac.compare_digest(digest, expected)


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an HTTP Basic `Authorization` header, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


def failure_delay_s(count: int, free: int, max_delay_s: float) -> float:
    """How long the `count`-th failure within the window waits: nothing for the first `free`,
    then 0.1 s doubling per failure, capped at `max_delay_s`."""
    if count <= free:
        return 0.0
    return min(max_delay_s, 0.1 * 2 ** min(count - free - 1, 30))


@dataclass
class _Failures:
    count: int = 0
    last_s: float = 0.0


@dataclass
class Authenticator:
    """Decides who a request comes from, and whether that is enough for a command."""

    store: Store
    params: Params
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    max_delay_s: float = 2.0
    _failures: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)
    _verified: OrderedDict[bytes, bool] = field(default_factory=OrderedDict)
    _hash_lock: asyncio.Lock | None = None
    _generation: int = 0  # grows with every password change (guards the cache)

    FAIL_WINDOW_S = 300.0
    FREE_FAILURES = 3
    MAX_TRACKED = 10000  # addresses remembered for the slowdown
    MAX_CACHED = 64  # verified headers remembered

    # -- the password -------------------------------------------------------------------------

    def ensure_password(self, explicit: str | None) -> str | None:
        """Set the admin password from `explicit`, or create a random one on first start.

        Returns the generated password (for the caller to print once), else None."""
        if explicit:
            if not self.check_password(explicit):
                self.set_password(explicit)
            return None
        if self.store.kv_get(SECRET_NS, ADMIN_KEY) is None:
            generated = secrets.token_urlsafe(12)
            self.set_password(generated)
            return generated
        return None

    def set_password(self, password: str) -> None:
        """Store the hash of a new admin password (committed before it returns)."""
        self.store.kv_set(SECRET_NS, ADMIN_KEY, hash_password(password))
        self._verified.clear()
        self._generation += 1

    def check_password(self, password: str) -> bool:
        """True when `password` is the admin password (blocking: runs scrypt)."""
        stored = self.store.kv_get(SECRET_NS, ADMIN_KEY)
        return isinstance(stored, dict) and verify_password(password, stored)

    async def change_password(self, old: str, new: str, remote: str) -> None:
        """`change_admin_pwd`: `old` must be the current password; `new` 8-128 characters.

        Raises ApiError 403 for a wrong old password (counted as a failure) and 400 for an
        unacceptable new one."""
        if not MIN_PASSWORD_LEN <= len(new) <= MAX_PASSWORD_LEN:
            raise ApiError(f"new_pwd must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters",
                           400)
        if any(ord(ch) < 32 for ch in new):
            raise ApiError("new_pwd must not contain control characters", 400)
        if not await self._check_async(old):
            await self.note_failure(remote)
            raise ApiError("old_pwd is wrong", 403)
        self.set_password(new)

    async def _check_async(self, password: str) -> bool:
        # scrypt takes tens of ms: run it off the event loop, one at a time, so a flood of
        # wrong passwords neither stalls the control cycle nor eats every core. The store is
        # read here, on the loop's thread (the connection belongs to it); only the hashing
        # runs in the worker thread.
        stored = self.store.kv_get(SECRET_NS, ADMIN_KEY)
        if not isinstance(stored, dict):
            return False
        if self._hash_lock is None:
            self._hash_lock = asyncio.Lock()
        async with self._hash_lock:
            return await asyncio.to_thread(verify_password, password, stored)

    # -- who is asking ------------------------------------------------------------------------

    async def principal(self, authorization: str | None, remote: str) -> Principal:
        """The principal of a request: admin via localhost (if allowed) or Basic, or nobody."""
        if remote in LOCALHOST and self.params["localhost_is_admin"]:
            return Principal(is_admin=True, via="localhost")
        if authorization is None:
            return Principal()
        creds = parse_basic(authorization)
        ok = False
        if creds is not None:
            key = hashlib.sha256(authorization.encode()).digest()
            cached = self._verified.get(key)
            if cached is None:
                user, password = creds
                generation = self._generation
                cached = user == ADMIN_USER and await self._check_async(password)
                if generation == self._generation:  # not if the password changed meanwhile
                    self._verified[key] = cached
                    while len(self._verified) > self.MAX_CACHED:
                        self._verified.popitem(last=False)
            ok = cached
        if ok:
            self._failures.pop(remote, None)
            return Principal(is_admin=True, via="basic")
        await self.note_failure(remote)
        return Principal(basic_failed=True)

    async def note_failure(self, remote: str) -> None:
        """Count a failed credential from `remote` and wait as `failure_delay_s` says."""
        now = self.clock()
        entry = self._failures.pop(remote, None) or _Failures()
        if now - entry.last_s > self.FAIL_WINDOW_S:
            entry.count = 0
        entry.count += 1
        entry.last_s = now
        self._failures[remote] = entry  # most recent last, so the oldest is evicted first
        while len(self._failures) > self.MAX_TRACKED:
            self._failures.popitem(last=False)
        delay = failure_delay_s(entry.count, self.FREE_FAILURES, self.max_delay_s)
        if delay > 0:
            await self.sleep(delay)

    def failures(self, remote: str) -> int:
        """Failures counted for `remote` in the current window."""
        entry = self._failures.get(remote)
        if entry is None or self.clock() - entry.last_s > self.FAIL_WINDOW_S:
            return 0
        return entry.count

    # -- what a command needs -----------------------------------------------------------------

    def require(self, req: ApiRequest, access: Access) -> None:
        """Raise 401 when the command's access level is not met (CHECKED: the handler decides)."""
        if access is Access.PUBLIC or access is Access.CHECKED:
            return
        if access is Access.READ and not self.params["api_read_needs_auth"]:
            return
        require_admin(req)


def require_admin(req: ApiRequest) -> None:
    """Raise 401 unless the request comes from the admin."""
    if not req.principal.is_admin:
        raise ApiError(unauthorised_message(req.principal), 401)


def unauthorised_message(principal: Principal) -> str:
    """The 401 text: whether credentials were missing or wrong."""
    return "wrong user name or password" if principal.basic_failed else "authentication required"
