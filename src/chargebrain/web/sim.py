"""The simulation page `/ui/en/sim.htm`: admin only (clients use its 401 as their password check).

The page (`static/sim.html`, `sim.js`) only talks to `/cnf`: `cmd=sim_vehicle` (in
`api/handlers/sim.py`) for the virtual cars, `set_device` with `sim_power_w` for `meter_sim`
meters. It is guarded here with the browser's own HTTP Basic prompt, as the original's.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from chargebrain.api.auth import AUTH_REALM, Authenticator, unauthorised_message
from chargebrain.api.http import Page

SIM_PAGE = resources.files("chargebrain.web").joinpath("static", "sim.html").read_bytes()


def sim_routes(auth: Authenticator) -> list[tuple[str, Page]]:
    """The page's route, guarded by `auth`."""

    async def sim_page(request: web.Request) -> web.StreamResponse:
        """`GET /ui/en/sim.htm`: 401 without valid admin credentials, the page otherwise."""
        principal = await auth.principal(request.headers.get("Authorization"),
                                         request.remote or "")
        if not principal.is_admin:
            return web.Response(status=401, text=unauthorised_message(principal) + "\n",
                                headers={"WWW-Authenticate": AUTH_REALM})
        return web.Response(body=SIM_PAGE, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    return [("/ui/en/sim.htm", sim_page)]
