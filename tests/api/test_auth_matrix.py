"""The authentication matrix: every registered command × {no auth, wrong password, a user's
credential, admin} answers the status the spec's table says (spec §3), and a refused request
changes nothing.

The commands come from the dispatcher's table, so a command added later is covered at once.
The expected access comes from the spec's table (`SPEC`), not from what a command declares:
the "nothing" row is a complete list, so any command not in it (or in the "admin or user" row)
is admin-only. `REQUESTS` gives forms that would change something. Choices pinned down here:
- admin-only commands answer 401 to everything but the admin, also to a user's credential
  (a user credential is not an admin credential; 403 is for a valid credential without the
  right, e.g. a user's PIN asking for override flag E);
- read-only commands ignore credentials, unless `api_read_needs_auth` is set;
- `enter_rfid` is public (the PIN is the credential);
- `get_user`, `set_user` of an existing user, `override_device` C/c/U/u and `get_transactions`
  take the admin or the user's own id/PIN/RFID; without either they answer 401.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from chargebrain.api.commands import Access
from chargebrain.api.handlers import all_commands
from tests.support.ports import free_port
from tests.support.server import ADMIN_AUTH, basic
from tests.users.helpers import new_user, plug

WRONG = basic("admin", "not-the-password")
PIN = "4711"
VARIANTS = ("none", "wrong", "user", "admin")


@dataclass(frozen=True)
class Req:
    """One form of a command. Values "{uid}" / "{pin}" / "{spare}" are filled in per run;
    `user` replaces/extends the parameters for the user-credential variant, `body_none`
    replaces the body for the no-credential variants."""

    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    user: dict[str, Any] = field(default_factory=dict)
    body_user: Any = None
    expect: str = ""  # "" = from the command's Access


ADMIN_ONLY, READ, PUBLIC, OWN = "admin-only", "read", "public", "own"
USER_CRED = {"id": "{uid}", "rfid": "{pin}", "user": "{uid}"}

# Forms that would change something (so that "nothing changed" means something).
REQUESTS: dict[str, list[Req]] = {
    "modbus": [Req({"device": "evse", "write": "8093", "value": "100"}),
               Req({"device": "evse", "read": "8093"}, expect=PUBLIC)],
    "set_params": [Req(body={"title": "changed"})],
    "set_device": [Req(body={"devices": [{"dev_id": "E1", "name": "changed"}]})],
    "del_device": [Req({"dev_id": "M2"})],
    "reset_device": [Req({"dev_id": "E1"})],
    "soft_meter": [Req({"dev_id": "E1", "val": "5"})],
    "set_diag_logging": [Req({"enable": "1"})],
    "accept_license": [Req({"acc": "1", "allow_usage_stats": "0"})],
    "sim_vehicle": [Req({"dev_id": "E1", "soc": "100"})],
    "set_ajax_meter": [Req({"dev_id": "M3"}, body={"power_w": 5})],  # HTTP input devices
    "set_ajax_evse": [Req({"dev_id": "E2"}, body={"state": 3})],  # (made in the fixture)
    "set_cm_vars": [Req({"name": "x", "val": "42"})],
    "set_cm_var": [Req({"name": "y", "val": "1"})],
    "modbus_set": [Req({"addr": "127.0.0.1:{closed_port}", "func": "6", "id": "1", "reg": "1",
                        "val": "1"})],
    "get_users": [Req()],
    "get_new_user_id": [Req()],
    "del_user": [Req({"id": "{spare}"})],
    "change_admin_pwd": [Req({"old_pwd": "{admin_pw}", "new_pwd": "{admin_pw}"})],
    "get_user": [Req({}, user=USER_CRED, expect=OWN)],
    "set_user": [Req(body={"id": "100000000000", "name": "x"}, body_user={"id": "{uid}",
                                                                         "name": "renamed"},
                     expect=OWN)],
    "override_device": [Req({"dev_id": "E1", "flags": "C"}, user={"rfid": "{pin}"},
                            expect=OWN),
                        Req({"dev_id": "E1", "flags": "E"}, user={"rfid": "{pin}"},
                            expect="admin-403")],
    "get_transactions": [Req({}, user=USER_CRED, expect=OWN),
                         Req({"format": "csv"}, user={"user": "{uid}"}, expect=OWN)],
    "enter_rfid": [Req({"rfid": "{pin}", "dev_id": "E1"}, expect=PUBLIC),
                   Req({"rfid": "0000", "dev_id": "E1"}, expect="bad-credential")],
}

# spec §3: "nothing" and "admin or the user's own id/PIN/RFID"; everything else is admin-only
SPEC = {"get_dev_info": READ, "get_params": READ, "get_dev_types": READ, "explain": READ,
        "get_usage": READ,
        "enter_rfid": PUBLIC,
        "get_user": OWN, "set_user": OWN, "override_device": OWN, "get_transactions": OWN}


def kind_of(name: str, req: Req) -> str:
    return req.expect or SPEC.get(name, ADMIN_ONLY)


def expected(kind: str, variant: str, read_needs_auth: bool = False) -> set[int] | str:
    """Allowed statuses, or "accepted" (any 2xx/4xx except 401/403, never 5xx)."""
    if variant == "admin":
        return {403} if kind == "bad-credential" else "accepted"
    if kind == ADMIN_ONLY or (kind == READ and read_needs_auth):
        return {401}
    if kind in (READ, PUBLIC):
        return "accepted"
    if kind == "bad-credential":
        return {403}
    if kind == OWN:
        return {200} if variant == "user" else {401}
    if kind == "admin-403":
        return {403} if variant == "user" else {401}
    raise AssertionError(f"unknown kind {kind}")


def test_declared_access_matches_the_spec():
    """Commands the spec lists as needing nothing must not be declared admin, and vice
    versa (the matrix below checks the answers; this names the declaration at fault)."""
    table = all_commands()
    assert {"get_user", "set_user", "enter_rfid", "override_device", "get_transactions",
            "change_admin_pwd", "get_users", "get_new_user_id", "del_user"} <= set(table)
    for name, command in table.items():
        kind = SPEC.get(name, ADMIN_ONLY)
        if kind == READ:
            assert command.access in (Access.READ, Access.PUBLIC), name
        elif kind == PUBLIC:
            assert command.access is Access.PUBLIC, name
        elif kind == OWN:
            assert command.access is Access.CHECKED, name
        else:
            assert command.access in (Access.ADMIN, Access.CHECKED), name


def fill(value: Any, ctx: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ctx)
    if isinstance(value, dict):
        return {k: fill(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ctx) for v in value]
    return value


async def send(site, cmd: str, req: Req, variant: str, ctx: dict[str, str]) -> tuple[int, Any]:
    params = dict(req.params)
    body = req.body
    if variant == "user":
        params.update(req.user)
        if req.body_user is not None:
            body = req.body_user
    auth = {"none": None, "wrong": WRONG, "user": None, "admin": ADMIN_AUTH}[variant]
    method = "POST" if body is not None else "GET"
    return await site.client.call(method, cmd, body=fill(body, ctx), auth=auth,
                                  **fill(params, ctx))


VOLATILE_PARAMS = {"time", "cycle_time", "cons_evse_power", "avail_evse_power", "grid_pwr",
                   "cons_pwr", "surplus_power", "error_pwr", "consumed_evse_power",
                   "remaining_evse_power", "overdraft_cur", "overdraft"}
VOLATILE_TA = {"end_wh", "energy_wh", "duration_s", "charging_s", "end"}


async def snapshot(site) -> dict[str, Any]:
    """Everything a refused request must leave alone, without live measurements."""
    client = site.client
    out: dict[str, Any] = {}
    for cmd in ("get_devices", "get_params", "get_users", "get_transactions"):
        status, value = await client.get(cmd, auth=ADMIN_AUTH)
        assert status == 200, (cmd, value)
        out[cmd] = value
    out["get_params"] = {k: v for k, v in out["get_params"].items() if k not in VOLATILE_PARAMS}
    for device in out["get_devices"]:
        device.pop("soft_meter", None)
    out["get_transactions"] = [{k: v for k, v in t.items() if k not in VOLATILE_TA}
                               for t in out["get_transactions"]]
    out["reg8093"] = await client.get("modbus", auth=ADMIN_AUTH, device="evse", read="8093")
    out["car"] = site.app.powerbrain.car
    out["sessions"] = site.app.users.sessions.all()
    out["password"] = site.app.store.kv_get("secret", "admin_password")
    out["cm_vars"] = site.app.store.kv_all("cm_vars")
    out["license"] = site.app.store.kv_all("license")
    return out


@pytest.fixture
async def site(cb):
    cb.app.auth.max_delay_s = 0.0  # the slowdown is tested in test_auth.py; here it would wait
    uid = await new_user(cb, name="matrix user", dev_ids=["E1"], rfids=[{"id": PIN}])
    spare = await new_user(cb, name="spare")
    for dev_type in ("evse_ajax", "meter_ajax"):  # E2, M3: HTTP input devices
        status, body = await cb.client.post("set_device", {"devices": [{"dev_type": dev_type}]})
        assert status == 200, body
    await plug(cb, soc=100)  # a full car: plugged in, draws nothing, nothing changes by itself
    assert await cb.client.get("enter_rfid", auth=None, rfid=PIN, dev_id="E1") == (200, "ok")
    from tests.support.server import ADMIN_PASSWORD

    cb.ctx = {"uid": uid, "pin": PIN, "spare": spare, "admin_pw": ADMIN_PASSWORD,
              "closed_port": str(free_port())}
    return cb


def cases(read_needs_auth: bool = False):
    for name in sorted(all_commands()):
        for req in REQUESTS.get(name, [Req()]):
            kind = kind_of(name, req)
            for variant in VARIANTS:
                yield name, req, variant, expected(kind, variant, read_needs_auth)


def check(status: int, want: set[int] | str, what: str) -> None:
    assert status < 500, what
    if want == "accepted":
        assert status not in (401, 403), what
    else:
        assert status in want, what


async def test_auth_matrix(site):
    ctx = site.ctx
    refused = [c for c in cases() if isinstance(c[3], set) and min(c[3]) >= 400]
    accepted = [c for c in cases() if c not in refused]
    assert refused and accepted
    before = await snapshot(site)
    for name, req, variant, want in refused:
        status, body = await send(site, name, req, variant, ctx)
        what = f"{name} {req.params} as {variant}: {status} {body!r}, expected {want}"
        check(status, want, what)
        assert isinstance(body, str), what  # errors are JSON strings
        after = await snapshot(site)
        assert after == before, f"{what} changed something"
    # api_read_needs_auth: read-only commands now need the admin too
    assert (await site.client.post("set_params", {"api_read_needs_auth": True}))[0] == 200
    before = await snapshot(site)
    for name, req, variant, want in cases(read_needs_auth=True):
        declared = all_commands()[name].access
        if variant == "admin" or kind_of(name, req) != READ:
            continue
        if declared is not Access.READ and name != "get_dev_info":
            continue  # the param is about get_dev_info; other reads may stay public
        status, body = await send(site, name, req, variant, ctx)
        check(status, want, f"{name} as {variant} with api_read_needs_auth: {status} {body!r}")
    assert await snapshot(site) == before
    assert (await site.client.post("set_params", {"api_read_needs_auth": False}))[0] == 200
    # the accepted forms last (they may change things)
    for name, req, variant, want in accepted:
        status, body = await send(site, name, req, variant, ctx)
        check(status, want, f"{name} {req.params} as {variant}: {status} {body!r}, "
                            f"expected {want}")
