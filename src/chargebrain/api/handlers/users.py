"""User, RFID and authentication commands, and the transaction log.

Credentials as parameters (the original leaves their names open; these are ours):
- `get_user&id=<user id>` or `get_user&rfid=<PIN/RFID>`: the admin, or that user themselves
  (the id/PIN/RFID is the credential).
- `set_user` (POST one user object): create needs admin; an update may also be sent by the user,
  the body's `id` being the credential.
- `enter_rfid&rfid=<PIN/RFID or user id>[&dev_id=E1]`: the credential itself; public.
- `override_device&dev_id=E1&flags=Cc…&mamps=16000[&phases=1|3|0][&rfid=<PIN/RFID or user id>]`.
- `get_transactions[&user=<user id> | &rfid=<PIN/RFID>][&dev_id=E1][&from=ts][&to=ts]`
  `[&format=csv]`: admin sees all (`user=` filters); a user sees their own.

Without admin and without a credential parameter these answer 401; a credential that does not
match answers 403 and counts as a failed attempt for the per-address slowdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from chargebrain.api.auth import unauthorised_message
from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import ApiError
from chargebrain.api.request import ApiRequest
from chargebrain.users.model import Credential, UserError
from chargebrain.users.transactions import to_csv

if TYPE_CHECKING:
    from chargebrain.app import ChargeBrain


def _api_error(err: UserError) -> ApiError:
    return ApiError(err.message, err.status)


def _unauthorised(req: ApiRequest, what: str = "admin password or the user's id/PIN/RFID"
                  ) -> ApiError:
    if req.principal.basic_failed:
        return ApiError(unauthorised_message(req.principal), 401)
    return ApiError(f"authentication required: {what}", 401)


async def _credential(app: ChargeBrain, req: ApiRequest, names: tuple[str, ...]
                      ) -> Credential | None:
    """The user credential in the first of `names` that is present; None when none is.

    An unknown one is refused with 403 and counted as a failure for the slowdown."""
    for name in names:
        secret = req.text(name)
        if secret is None:
            continue
        cred = app.users.resolve(secret)
        if cred is None:
            await app.auth.note_failure(req.remote)
            raise ApiError(f"unknown {_what(name)}", 403)
        return cred
    return None


def _what(name: str) -> str:
    return {"id": "user id", "user": "user id", "rfid": "RFID/PIN"}.get(name, name)


# -- users ------------------------------------------------------------------------------------

async def get_users(app: ChargeBrain, req: ApiRequest) -> Any:
    """All users (admin)."""
    now = app.devices.clock()
    return [app.users.user_json(user, now) for user in app.users.users.all()]


async def get_user(app: ChargeBrain, req: ApiRequest) -> Any:
    """One user: the admin names it by `id` (or a card by `rfid`); a user by their own."""
    now = app.devices.clock()
    if req.principal.is_admin:
        uid, rfid = req.text("id"), req.text("rfid")
        if uid is None and rfid is None:
            raise ApiError("missing parameter id")
        user = app.users.users.get(uid) if uid is not None else None
        if user is None and rfid is not None:
            cred = app.users.resolve(rfid)
            user = cred.user if cred else None
        if user is None:
            raise ApiError("unknown user", 404)
        return app.users.user_json(user, now)
    cred = await _credential(app, req, ("id", "rfid"))
    if cred is None:
        raise _unauthorised(req)
    return app.users.user_json(cred.user, now)


async def set_user(app: ChargeBrain, req: ApiRequest) -> Any:
    """Create (admin) or update (admin, or the user by their id) one user object."""
    body = req.json_body()
    try:
        await app.users.save_user(body, is_admin=req.principal.is_admin)
    except UserError as err:
        if err.status == 401:
            if isinstance(body, dict) and "id" in body:
                await app.auth.note_failure(req.remote)
            raise _unauthorised(req, "creating a user needs the admin password") from None
        if not req.principal.is_admin and "already in use" in err.message:
            # tells whether a PIN exists: slow down anyone probing for them this way
            await app.auth.note_failure(req.remote)
        raise _api_error(err) from None
    return "ok"


async def del_user(app: ChargeBrain, req: ApiRequest) -> Any:
    """Delete a user (admin); their EVSE assignments go with them, their transactions stay."""
    uid = req.required_text("id")
    try:
        await app.users.delete_user(uid)
    except UserError as err:
        raise _api_error(err) from None
    return "ok"


async def get_new_user_id(app: ChargeBrain, req: ApiRequest) -> Any:
    """A fresh, unguessable user id (admin)."""
    return app.users.new_user_id()


async def learn_rfid(app: ChargeBrain, req: ApiRequest) -> Any:
    """The "learn the next card" window (admin): `start=1` opens it for 60 s; every call answers
    `{"open", "remaining_s", "rfid", "dev_id"}`, the first card a wallbox reported in the window
    (null until one is), so a new user's card need not be typed in."""
    return app.users.learn_card(app.devices.clock(), start=req.flag("start"))


# -- authorisation at the EVSE ----------------------------------------------------------------

async def enter_rfid(app: ChargeBrain, req: ApiRequest) -> Any:
    """Present a PIN/RFID (or user id) at `dev_id`, or at the one EVSE waiting for it."""
    secret = req.required_text("rfid")
    dev_id = req.text("dev_id") or None
    try:
        applied_at = app.users.enter_rfid(secret, dev_id, app.devices.clock())
    except UserError as err:
        if err.status == 403 and app.users.resolve(secret) is None:
            await app.auth.note_failure(req.remote)
        raise _api_error(err) from None
    app.cycle.refresh_gate(applied_at)
    return "ok"


async def override_device(app: ChargeBrain, req: ApiRequest) -> Any:
    """Session overrides until unplug: flags C/c E/e U/u, `mamps` and `phases` (see
    UserService.override)."""
    is_admin = req.principal.is_admin
    if not is_admin and not req.has("rfid"):
        raise _unauthorised(req, "admin password or the user's PIN/RFID")
    dev_id = req.required_text("dev_id")
    flags = req.text("flags", "") or ""
    mamps = req.integer("mamps")
    phases = req.integer("phases")
    cred = None if is_admin else await _credential(app, req, ("rfid",))
    try:
        app.users.override(dev_id, flags, mamps, is_admin=is_admin, cred=cred, phases=phases)
    except UserError as err:
        raise _api_error(err) from None
    app.cycle.refresh_gate(dev_id)  # get_dev_info shows it now; the next plan follows at once
    return "ok"


# -- the transaction log ----------------------------------------------------------------------

async def get_transactions(app: ChargeBrain, req: ApiRequest) -> Any:
    """The transaction log as JSON (default) or CSV (`format=csv`)."""
    fmt = (req.text("format", "json") or "json").lower()
    if fmt not in ("json", "csv"):
        raise ApiError("format must be json or csv")
    since = req.integer("from")
    until = req.integer("to")
    dev_id = req.text("dev_id") or None
    if req.principal.is_admin:
        user_id = req.text("user") or None
        if user_id is None and req.has("rfid"):
            cred = app.users.resolve(req.required_text("rfid"))
            if cred is None:
                raise ApiError("unknown RFID/PIN", 404)
            user_id = cred.user.id
    else:
        cred = await _credential(app, req, ("user", "rfid"))
        if cred is None:
            raise _unauthorised(req)
        user_id = cred.user.id
    records = app.transactions.query(user_id=user_id, dev_id=dev_id, since=since, until=until)
    if fmt == "csv":
        return web.Response(text=to_csv(records, app.users.tz), content_type="text/csv",
                            charset="utf-8",
                            headers={"Content-Disposition":
                                     'attachment; filename="transactions.csv"'})
    return [record.to_json() for record in records]


# -- admin password ---------------------------------------------------------------------------

async def change_admin_pwd(app: ChargeBrain, req: ApiRequest) -> Any:
    """Change the admin password: `old_pwd` must match, `new_pwd` 8-128 characters."""
    old = req.required_text("old_pwd")
    new = req.required_text("new_pwd")
    await app.auth.change_password(old, new, req.remote)
    return "ok"


COMMANDS: dict[str, Command] = {
    "get_users": Command(get_users, Access.ADMIN),
    "get_user": Command(get_user, Access.CHECKED),
    "set_user": Command(set_user, Access.CHECKED),
    "del_user": Command(del_user, Access.ADMIN),
    "get_new_user_id": Command(get_new_user_id, Access.ADMIN),
    "learn_rfid": Command(learn_rfid, Access.ADMIN),
    "enter_rfid": Command(enter_rfid, Access.PUBLIC),
    "override_device": Command(override_device, Access.CHECKED),
    "get_transactions": Command(get_transactions, Access.CHECKED),
    "change_admin_pwd": Command(change_admin_pwd, Access.ADMIN),
}
