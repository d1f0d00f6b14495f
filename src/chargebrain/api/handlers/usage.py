"""`cmd=get_usage`: the recorded measurements of a device or the site, in buckets (read).

`dev_id=E1|M1|…|site&span=hour|day|week|month|year[&end=<unix s>][&tz_offset_s=s]
[&format=json|csv]`. The data comes from the usage recorder (recorder/, `app.recorder`); the
query runs in a worker thread. docs/api.md `## Usage graphs` documents the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import ApiError, bad_request, not_found
from chargebrain.recorder.recorder import UsageUnavailable
from chargebrain.recorder.samples import SITE, SITE_SERIES, site_key
from chargebrain.recorder.tiers import SPANS

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain

MAX_END_S = 2**40
MAX_TZ_OFFSET_S = 14 * 3600
SITE_KEYS = frozenset(site_key(flow) for flow in SITE_SERIES)


async def get_usage(app: ChargeBrain, req: ApiRequest) -> Any:
    """One chart's rows: JSON (default) or CSV with a header row."""
    dev_id = req.required_text("dev_id").strip()
    span = (req.text("span", "day") or "").strip().lower()
    if span not in SPANS:
        raise bad_request(f"span must be one of {', '.join(SPANS)}")
    fmt = (req.text("format", "json") or "").strip().lower()
    if fmt not in ("json", "csv"):
        raise bad_request("format must be json or csv")
    end_s = req.integer("end", lo=0, hi=MAX_END_S)
    offset_s = req.integer("tz_offset_s", 0, lo=-MAX_TZ_OFFSET_S, hi=MAX_TZ_OFFSET_S)
    assert offset_s is not None
    if dev_id not in (SITE, *SITE_KEYS) and app.devices.get(dev_id) is None:
        raise not_found("unknown device")
    end = int(app.devices.clock()) if end_s is None else end_s
    try:
        chart = await app.recorder.chart(dev_id, span, end, offset_s)
    except UsageUnavailable as err:
        raise ApiError(f"usage data unavailable: {err}", 503) from None
    if fmt == "csv":
        return web.Response(text=chart.as_csv(), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition":
                                     f'attachment; filename="usage-{dev_id}-{span}.csv"'})
    return chart.as_json()


COMMANDS: dict[str, Command] = {
    "get_usage": Command(get_usage, Access.READ),
}
