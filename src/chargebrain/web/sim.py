"""The simulation page `/ui/en/sim.htm`: admin only (clients use its 401 as their password check).

The page itself only posts `cmd=sim_vehicle` to `/cnf`; the command lives in `api/handlers/sim.py`.
"""

from __future__ import annotations

from aiohttp import web

from chargebrain.api.auth import AUTH_REALM, Authenticator, unauthorised_message
from chargebrain.api.http import Page

SIM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chargebrain - simulation</title>
<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left}</style>
</head><body>
<h1>Simulation</h1>
<p>Plug a virtual car into a simulated EVSE, or unplug it.</p>
<form id="f">
<label>EVSE <input name="dev_id" value="E1" size="6"></label>
<label>Phases <select name="phases"><option>3</option><option>1</option></select></label>
<label>Max current (mA) <input name="max_current" value="16000" size="7"></label>
<label>RFID <input name="rfid" size="12"></label>
<button name="plugged" value="1">Plug in</button>
<button name="plugged" value="0">Unplug</button>
</form>
<pre id="out"></pre>
<script>
document.getElementById("f").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams(new FormData(ev.target));
  q.set("plugged", ev.submitter.value);
  q.set("cmd", "sim_vehicle");
  const r = await fetch("/cnf?" + q.toString());
  document.getElementById("out").textContent = r.status + " " + await r.text();
});
</script>
</body></html>
"""


def sim_routes(auth: Authenticator) -> list[tuple[str, Page]]:
    """The page's route, guarded by `auth`."""

    async def sim_page(request: web.Request) -> web.StreamResponse:
        """`GET /ui/en/sim.htm`: 401 without valid admin credentials, the page otherwise."""
        principal = await auth.principal(request.headers.get("Authorization"),
                                         request.remote or "")
        if not principal.is_admin:
            return web.Response(status=401, text=unauthorised_message(principal) + "\n",
                                headers={"WWW-Authenticate": AUTH_REALM})
        return web.Response(text=SIM_PAGE, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    return [("/ui/en/sim.htm", sim_page)]
