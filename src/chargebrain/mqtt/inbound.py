"""What an incoming MQTT message asks for, and the duplicate rule of the MQTT API.

`cfos_mqtt/api/<query>` runs `/cnf?<query>` (payload = POST body) as admin. A broker may deliver
a QoS 1 message more than once (after a reconnect, a bridge, a retained copy), so:

- commands in `READ_ONLY` (they change nothing) always run;
- every other command must carry a `msg_id=<id>` in its query. An id that was already seen
  (the last `SEEN_IDS` ids are remembered, in memory) is not run again: its first answer is
  published once more. A state-changing command without `msg_id` is refused.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson

from chargebrain.api.request import parse_query_pairs

READ_ONLY = frozenset({"get_dev_info", "get_params", "get_dev_types", "get_devices", "explain",
                       "get_cm_vars", "get_users", "get_user", "get_transactions", "modbus_get"})
MAX_ANSWER_BYTES = 64 * 1024  # an MQTT answer longer than this is refused (use HTTP)
SEEN_IDS = 1000
MSG_ID = "msg_id"


class ApiQuery:
    """One parsed `api/<query>` message."""

    def __init__(self, query: str) -> None:
        pairs = parse_query_pairs(query)
        self.msg_id = next((v for k, v in pairs if k == MSG_ID), None)
        self.pairs = [(k, v) for k, v in pairs if k != MSG_ID]
        self.cmd = next((v for k, v in self.pairs if k == "cmd"), "")

    @property
    def needs_msg_id(self) -> bool:
        return self.cmd not in READ_ONLY


class SeenIds:
    """The answers of the last `limit` message ids, oldest forgotten first."""

    def __init__(self, limit: int = SEEN_IDS) -> None:
        self.limit = limit
        self._answers: OrderedDict[str, bytes] = OrderedDict()

    def get(self, msg_id: str) -> bytes | None:
        return self._answers.get(msg_id)

    def remember(self, msg_id: str, answer: bytes) -> None:
        self._answers[msg_id] = answer
        self._answers.move_to_end(msg_id)
        while len(self._answers) > self.limit:
            self._answers.popitem(last=False)


def answer_bytes(result: Any) -> bytes:
    """A handler's value as the JSON the HTTP API would send; too long or not JSON → an
    error string."""
    if isinstance(result, bytes):
        body = result
    else:
        try:
            body = orjson.dumps(result)
        except TypeError:
            return orjson.dumps("this answer is not available over MQTT; use the HTTP API")
    if len(body) > MAX_ANSWER_BYTES:
        return orjson.dumps(f"answer too long for MQTT ({len(body)} bytes, at most "
                            f"{MAX_ANSWER_BYTES}); use the HTTP API")
    return body
