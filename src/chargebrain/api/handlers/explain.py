"""`cmd=explain&dev_id=E1`: why a wallbox gets the current it gets (public).

The answer comes from the last control cycle (`app.cycle.explain`, rendered by
control/explain.py): the setpoint, the binding reason (code, text, group, phase), the timers,
the EVSE's demand and the per-phase accounting of every node above it. docs/api.md `## explain`
documents every field. 404 for an unknown dev_id, 400 for a meter or a charging group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import bad_request, not_found
from chargebrain.devices.types import Kind

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain


async def explain(app: ChargeBrain, req: ApiRequest) -> dict[str, Any]:
    """Why the wallbox `dev_id` gets its current."""
    dev_id = req.required_text("dev_id").strip()
    device = app.devices.get(dev_id)
    if device is None:
        raise not_found("unknown device")
    if device.kind is Kind.METER:
        raise bad_request(f"{dev_id} is a meter; explain works for wallboxes")
    if device.is_group:
        raise bad_request(f"{dev_id} is a charging group; explain works for wallboxes")
    return app.cycle.explain(dev_id)


COMMANDS: dict[str, Command] = {
    "explain": Command(explain, Access.PUBLIC),
}
