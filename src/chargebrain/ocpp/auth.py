"""Id tags from OCPP boxes, judged by the users domain (the same rules as cmd=enter_rfid).

A box's Authorize (no connector named) is answered `Accepted` when the tag would authorise at
one of the box's configured connectors; nothing is recorded. StartTransaction names the
connector: the tag is presented there (`UserService.present`, source "ocpp") — it becomes the
session's card (or waits for the plug-in like an entered RFID), with its budget and priority.
An open wallbox (no users assigned) accepts any tag; a known tag still names the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chargebrain.users.model import UserError
from chargebrain.users.service import UserService

log = logging.getLogger(__name__)

ACCEPTED = "Accepted"
INVALID = "Invalid"
BLOCKED = "Blocked"
EXPIRED = "Expired"


class TagAuthority:
    """`authorize(box_id, connector_id, id_tag, start)` for the central system.

    `dev_ids(box_id, connector_id)` are the EVSE devices of that box (connector None: all of
    them); `clock()` is the registry's clock (unix seconds)."""

    def __init__(self, users: UserService, dev_ids: Callable[[str, int | None], list[str]],
                 clock: Callable[[], float]) -> None:
        self.users = users
        self.dev_ids = dev_ids
        self.clock = clock

    def authorize(self, box_id: str, connector_id: int | None, id_tag: str,
                  start: bool) -> str:
        now = self.clock()
        targets = self.dev_ids(box_id, connector_id)
        if not targets:
            return INVALID
        if not start:
            answers = [self._check(dev_id, id_tag, now) for dev_id in targets]
            return ACCEPTED if ACCEPTED in answers else answers[0]
        dev_id = targets[0]
        answer = self._check(dev_id, id_tag, now)
        if answer != ACCEPTED:
            return answer
        try:
            self.users.present(dev_id, id_tag, now, "ocpp")
        except UserError as err:
            if self.users.evse(dev_id).needs_auth:
                log.info("OCPP tag at %s refused: %s", dev_id, err.message)
                return INVALID
        return ACCEPTED

    def _check(self, dev_id: str, id_tag: str, now: float) -> str:
        """Would `id_tag` authorise at `dev_id` now? (changes nothing)"""
        try:
            evse = self.users.evse(dev_id)
        except UserError:
            return INVALID
        if not evse.needs_auth:
            return ACCEPTED
        cred = self.users.resolve(id_tag)
        if cred is None or cred.user.id not in evse.users:
            return INVALID
        if cred.rfid is not None and (why := cred.rfid.usable(now)):
            return EXPIRED if why == "card expired" else BLOCKED
        if not cred.authorises and not (cred.rfid is not None and cred.rfid.ac_ovch):
            return INVALID
        return ACCEPTED
