"""Admin authentication: HTTP Basic `admin`, scrypt-hashed password, constant-time compare.

The password is never stored or logged in plain text. When none was ever set, the first start
generates one, prints it once and stores only its hash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from chargebrain.api.commands import Access
from chargebrain.api.errors import ApiError
from chargebrain.api.request import ApiRequest, Principal
from chargebrain.params import Params
from chargebrain.store.db import Store

SECRET_NS = "secret"
ADMIN_KEY = "admin_password"
ADMIN_USER = "admin"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
LOCALHOST = {"127.0.0.1", "::1", "localhost"}


def hash_password(password: str, salt: bytes | None = None) -> dict[str, str]:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return {"alg": "scrypt", "salt": salt.hex(), "hash": digest.hex()}


def verify_password(password: str, stored: dict[str, str]) -> bool:
    salt = bytes.fromhex(stored["salt"])
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return hmac.compare_digest(digest.hex(), stored["hash"])


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


@dataclass
class _Failures:
    count: int = 0
    last_s: float = 0.0


@dataclass
class Authenticator:
    """Decides who a request comes from, and whether that is enough for a command."""

    store: Store
    params: Params
    _failures: dict[str, _Failures] = field(default_factory=dict)
    _verified: dict[str, bool] = field(default_factory=dict)  # header → ok, small cache

    FAIL_WINDOW_S = 300.0
    MAX_DELAY_S = 2.0

    def ensure_password(self, explicit: str | None) -> str | None:
        """Set the admin password from `explicit`, or create a random one on first start.
        Returns the generated password (to print once), else None."""
        if explicit:
            self.set_password(explicit)
            return None
        if self.store.kv_get(SECRET_NS, ADMIN_KEY) is None:
            generated = secrets.token_urlsafe(12)
            self.set_password(generated)
            return generated
        return None

    def set_password(self, password: str) -> None:
        self.store.kv_set(SECRET_NS, ADMIN_KEY, hash_password(password))
        self._verified.clear()

    def check_password(self, password: str) -> bool:
        stored = self.store.kv_get(SECRET_NS, ADMIN_KEY)
        return stored is not None and verify_password(password, stored)

    async def principal(self, authorization: str | None, remote: str) -> Principal:
        if remote in LOCALHOST and self.params["localhost_is_admin"]:
            return Principal(is_admin=True, via="localhost")
        creds = parse_basic(authorization)
        if creds is None:
            return Principal(basic_failed=authorization is not None)
        ok = self._verified.get(authorization or "")
        if ok is None:
            user, password = creds
            ok = user == ADMIN_USER and self.check_password(password)
            if len(self._verified) > 64:
                self._verified.clear()
            self._verified[authorization or ""] = ok
        if ok:
            self._failures.pop(remote, None)
            return Principal(is_admin=True, via="basic")
        await self._slow_down(remote)
        return Principal(basic_failed=True)

    async def _slow_down(self, remote: str) -> None:
        """Each failure from one address within the window waits longer (capped)."""
        now = time.monotonic()
        entry = self._failures.setdefault(remote, _Failures())
        if now - entry.last_s > self.FAIL_WINDOW_S:
            entry.count = 0
        entry.count += 1
        entry.last_s = now
        if entry.count > 3:
            await asyncio.sleep(min(self.MAX_DELAY_S, 0.1 * 2 ** (entry.count - 4)))

    def require(self, req: ApiRequest, access: Access) -> None:
        """Raise 401 when the command's access level is not met."""
        if access is Access.PUBLIC or access is Access.CHECKED:
            return
        if access is Access.READ and not self.params["api_read_needs_auth"]:
            return
        if not req.principal.is_admin:
            raise ApiError("authentication required", 401)


def require_admin(req: ApiRequest) -> None:
    """For handlers with Access.CHECKED that need admin for some forms."""
    if not req.principal.is_admin:
        raise ApiError("authentication required", 401)
