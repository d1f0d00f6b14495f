"""Device and configuration commands: get_dev_info, get_params, set_params, …"""

from __future__ import annotations

from chargebrain import API_VERSION
from chargebrain.api.commands import Access, Command


async def get_dev_info(app, req):
    return {"params": {"version": API_VERSION, **app.params.as_dict()}, "devices": [],
            "auth_cnt": 0, "loadmgr_disabled": False}


COMMANDS: dict[str, Command] = {
    "get_dev_info": Command(get_dev_info, Access.READ),
}
