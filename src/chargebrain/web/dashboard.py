"""The live dashboard: `/` → `/ui/`, the page, its static files and the `/ui/events` stream.

The page is plain HTML, CSS and one vanilla-JS file shipped in `web/static/` (no build step,
nothing from a CDN). It reads the very bytes of `get_dev_info` from the state snapshot
(`app.state`): pushed as Server-Sent Events by `/ui/events` (one `state` event per new snapshot,
latest-value semantics, so a slow browser skips snapshots instead of queueing them), and polled
from `/cnf?cmd=get_dev_info` while the stream is down.

Access is the API's: the page and the stream are READ (open unless `api_read_needs_auth`, then
HTTP Basic admin, so the browser asks once and reuses the credentials for the stream); callers
without admin see the public snapshot (secret URLs redacted). The static files hold no data.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from importlib import resources

from aiohttp import web

from chargebrain.api.auth import AUTH_REALM, Authenticator, unauthorised_message
from chargebrain.api.http import Page
from chargebrain.params import Params
from chargebrain.state import StatePublisher

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
PAGES = {"/ui/config": "config.html", "/ui/transactions": "transactions.html"}
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing a quiet stream


def _static_files() -> dict[str, tuple[bytes, str]]:
    """name → (content, content type) of every file in `web/static/`, read once; files in
    its folders (`vendor/uplot/uPlot.iife.min.js`) by their path."""
    files: dict[str, tuple[bytes, str]] = {}
    folders = [("", resources.files("chargebrain.web").joinpath("static"))]
    while folders:
        prefix, folder = folders.pop()
        for entry in folder.iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if entry.is_dir() and not entry.name.startswith((".", "_")):
                folders.append((f"{prefix}{entry.name}/", entry))
            elif entry.is_file() and suffix in STATIC_TYPES:
                files[prefix + entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


@dataclass
class Dashboard:
    """The dashboard's routes; `close()` ends the open event streams (before a shutdown)."""

    state: StatePublisher
    auth: Authenticator
    params: Params
    files: dict[str, tuple[bytes, str]] = field(default_factory=_static_files)
    _streams: set[asyncio.Task[object]] = field(default_factory=set)
    _closed: bool = False

    def routes(self) -> list[tuple[str, Page]]:
        return [("/", self.root), ("/ui", self.root), ("/ui/", self.index),
                ("/ui/static/{name}", self.static), ("/ui/events", self.events),
                ("/ui/whoami", self.whoami),
                *[(path, self._page(name)) for path, name in PAGES.items()]]

    def _page(self, name: str) -> Page:
        """A page that holds no data itself: it reads everything through `/cnf` (whose
        access rules apply), so it is served like the dashboard (READ access)."""

        async def page(request: web.Request) -> web.StreamResponse:
            refusal, _ = await self._refusal(request)
            if refusal is not None:
                return refusal
            body, content_type = self.files[name]
            return web.Response(body=body, content_type=content_type, charset="utf-8",
                                headers={"Cache-Control": "no-store"})

        return page

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        """`GET /ui/whoami`: `{"admin": bool, "via": …, "charts": bool}` for the request's
        credentials (`charts`: this build has the usage graphs page). Never a 401
        challenge, so checking a password from a page does not pop up the browser's dialog;
        a wrong password counts as a failure for the slowdown as on `/cnf`."""
        principal = await self.auth.principal(request.headers.get("Authorization"),
                                              request.remote or "")
        return web.json_response({"admin": principal.is_admin, "via": principal.via,
                                  "charts": "charts.html" in self.files},
                                 headers={"Cache-Control": "no-store"})

    async def _refusal(self, request: web.Request) -> tuple[web.Response | None, bool]:
        """(401 answer or None, is_admin) for a READ request."""
        principal = await self.auth.principal(request.headers.get("Authorization"),
                                              request.remote or "")
        if principal.is_admin or not self.params["api_read_needs_auth"]:
            return None, principal.is_admin
        return web.Response(status=401, text=unauthorised_message(principal) + "\n",
                            headers={"WWW-Authenticate": AUTH_REALM}), False

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def index(self, request: web.Request) -> web.StreamResponse:
        refusal, _ = await self._refusal(request)
        if refusal is not None:
            return refusal
        body, content_type = self.files["index.html"]
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """`GET /ui/events`: the get_dev_info snapshot now, then after every change."""
        refusal, is_admin = await self._refusal(request)
        if refusal is not None:
            return refusal
        if self._closed:
            return web.Response(status=503, text="stopping\n")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        updates = self.state.updates()
        sent = -1
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    snapshot = await asyncio.wait_for(anext(updates), KEEPALIVE_S)
                except TimeoutError:  # the timeout closed the generator: start a new one
                    await response.write(b": keep-alive\n\n")
                    updates = self.state.updates()
                    continue
                if snapshot.version == sent:  # the new generator's first, already sent
                    continue
                sent = snapshot.version
                # orjson output has no newline, so the snapshot is one `data:` line
                await response.write(b"event: state\nid: %d\ndata: %s\n\n"
                                     % (snapshot.version, snapshot.dev_info_for(is_admin)))
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the browser left, or the server is stopping
        finally:
            self._streams.discard(task)
            await updates.aclose()
        return response

    def chart_routes(self) -> list[tuple[str, Page]]:
        """The usage graphs page (`/ui/charts`, READ like the dashboard; its data comes from
        `cmd=get_usage`) and the vendored chart library under `/ui/static/vendor/`."""
        return [("/ui/charts", self.charts), ("/ui/static/vendor/{name:.+}", self.vendor)]

    async def charts(self, request: web.Request) -> web.StreamResponse:
        refusal, _ = await self._refusal(request)
        if refusal is not None:
            return refusal
        body, content_type = self.files["charts.html"]
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def vendor(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get("vendor/" + request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "max-age=86400"})

    async def close(self) -> None:
        """End every open event stream (a server stop must not wait for browsers)."""
        self._closed = True
        streams = list(self._streams)
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
