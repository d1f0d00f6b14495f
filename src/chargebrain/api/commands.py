"""The command table: `cmd` → handler and the access it needs.

Each handler module under `api/handlers/` exports `COMMANDS: dict[str, Command]`;
`api.handlers.all_commands` merges them. A handler is `async def handler(app, req) -> JSON value`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain


class Access(enum.Enum):
    PUBLIC = "public"  # anyone
    READ = "read"  # anyone, unless the param api_read_needs_auth asks for admin
    ADMIN = "admin"  # admin only
    CHECKED = "checked"  # the handler decides (admin or the user's own credential, …)


Handler = Callable[["ChargeBrain", "ApiRequest"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Command:
    handler: Handler
    access: Access

