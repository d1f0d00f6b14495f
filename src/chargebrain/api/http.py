"""The aiohttp application: `/cnf?cmd=…` dispatch, JSON answers, errors, and the web UI.

Handlers are thin; this module parses, authorises (via `app.auth`), calls the handler and shapes
the answer. Every refusal is a JSON string with a 4xx status; nothing here ever sends a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from chargebrain.api.auth import cross_site_refusal
from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import ApiError
from chargebrain.api.handlers import all_commands
from chargebrain.api.request import ApiRequest, Principal, parse_query_pairs

if TYPE_CHECKING:
    from chargebrain.app import ChargeBrain

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
# Commands that change nothing get_dev_info/get_params show directly (a Modbus write reaches
# them through the next cycle's read); every other command marks the state snapshot changed
# when it has run (accepted or refused: marking is cheap).
STATE_READS = frozenset({"get_dev_info", "get_params", "get_dev_types", "get_devices",
                         "explain", "get_cm_vars", "get_users", "get_user", "get_new_user_id",
                         "get_transactions", "modbus", "modbus_get", "modbus_set",
                         "get_usage"})
Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(value: Any) -> str:
    """Compact JSON, as the original answers (`{"8000d":-821755904,…}`)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_bytes(value: Any) -> bytes:
    """`dumps(value)` as UTF-8 bytes, through orjson where it can (the same compact JSON;
    a NaN becomes null instead of an error); json for what orjson refuses (huge integers)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return dumps(value).encode()


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=json_bytes(value), status=status,
                        content_type="application/json", charset="utf-8", headers=headers)


def json_bytes_response(body: bytes, status: int = 200) -> web.Response:
    """An answer that is already serialised JSON (the state snapshot's bytes)."""
    return web.Response(body=body, status=status, content_type="application/json",
                        charset="utf-8")


def error_response(err: ApiError) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="chargebrain"'} if err.status == 401 else None
    return json_response(err.message, err.status, headers)


class CnfDispatcher:
    """Routes `/cnf` requests to the command table."""

    def __init__(self, app: ChargeBrain) -> None:
        self.app = app
        self.commands: dict[str, Command] = all_commands()

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._handle(request)
        except ApiError as err:
            return error_response(err)
        except Exception:  # a bug must not leak a traceback to the client
            log.exception("internal error in %s", request.path_qs)
            return json_response("internal error", 500)

    async def _handle(self, request: web.Request) -> web.Response:
        pairs = parse_query_pairs(request.query_string)
        query = _first_values(pairs)
        cmd, _ = self._command(query)  # an unknown command is refused before its body is read
        refusal = cross_site_refusal(cmd, request.headers, request.host)
        if refusal is not None:  # before credentials are looked at: nothing runs
            raise refusal
        body = b""
        if request.can_read_body:
            if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
                raise ApiError("request body too large", 413)
            body = await request.content.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise ApiError("request body too large", 413)
        remote = request.remote or ""
        principal = await self.app.auth.principal(request.headers.get("Authorization"), remote)
        result = await self.call(pairs, body, principal, remote, query)
        if isinstance(result, bytes):  # pre-serialised JSON
            return json_bytes_response(result)
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result)

    async def call(self, pairs: list[tuple[str, str]], body: bytes, principal: Principal,
                   remote: str, query: dict[str, str] | None = None) -> Any:
        """Run one command for `principal` (authorised here); the HTTP and the MQTT API both
        come through this. Returns the handler's value; refusals raise ApiError. `query` is
        `pairs` as a mapping (first occurrence wins) when the caller has built it already."""
        if query is None:
            query = _first_values(pairs)
        cmd, command = self._command(query)
        req = ApiRequest(cmd=cmd, query=query, body=body, remote=remote, principal=principal,
                         pairs=pairs)
        self.app.auth.require(req, command.access)
        try:
            return await command.handler(self.app, req)
        finally:
            if cmd not in STATE_READS:  # it may have changed what the snapshot shows
                self.app.state.mark_changed()


    def _command(self, query: dict[str, str]) -> tuple[str, Command]:
        cmd = query.get("cmd", "")
        command = self.commands.get(cmd)
        if command is None:
            raise ApiError("unknown command" if cmd else "missing parameter cmd")
        return cmd, command


def _first_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The query as a mapping: the first occurrence of a name wins."""
    query: dict[str, str] = {}
    for key, value in pairs:
        query.setdefault(key, value)
    return query


def build_web_app(app: ChargeBrain, pages: Iterable[tuple[str, Page]] = ()) -> web.Application:
    """The `/cnf` API plus the `pages` (path, GET handler) served beside it."""
    dispatcher = CnfDispatcher(app)
    web_app = web.Application(client_max_size=MAX_BODY_BYTES)
    web_app.router.add_route("*", "/cnf", dispatcher.handle)
    for path, page in pages:
        web_app.router.add_get(path, page)
    # last, so it costs nothing on the paths above: only a path nothing else matched gets here
    web_app.router.add_route("*", "/{tail:.*}", _collapse_slashes)
    return web_app


async def _collapse_slashes(request: web.Request) -> web.StreamResponse:
    """Serve `//cnf?…` like `/cnf?…` (some clients double the slash); else 404."""
    if "//" not in request.path:
        raise web.HTTPNotFound()
    path = "/" + "/".join(part for part in request.path.split("/") if part)
    request = request.clone(rel_url=request.rel_url.with_path(path)
                            .with_query(request.query_string))
    match = await request.app.router.resolve(request)
    if match.handler is _collapse_slashes:
        raise web.HTTPNotFound()
    request._match_info = match  # type: ignore[attr-defined]
    return await match.handler(request)


__all__ = ["Access", "build_web_app", "dumps", "json_bytes_response", "json_response"]
