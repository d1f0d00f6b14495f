"""Every topic chargebrain publishes or subscribes, under one prefix.

The prefix is `cfos_mqtt`, or `cfos_mqtt_<serial>` with the param `mqtt_topic_serial` (several
installations on one broker). Home Assistant discovery lives under `homeassistant/`.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE = "cfos_mqtt"
HA_PREFIX = "homeassistant"
HA_STATUS = f"{HA_PREFIX}/status"  # HA's birth message: re-announce the discovery configs


def prefix_for(serial: str, with_serial: bool) -> str:
    return f"{BASE}_{serial}" if with_serial and serial else BASE


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = BASE

    @property
    def dev_info(self) -> str:
        return f"{self.prefix}/get/dev_info"

    @property
    def params(self) -> str:
        return f"{self.prefix}/get/params"

    def device(self, dev_id: str) -> str:
        """The device's own get_dev_info entry."""
        return f"{self.prefix}/get/{dev_id}"

    @property
    def status(self) -> str:
        """Availability: `online` retained while connected, `offline` as the last will."""
        return f"{self.prefix}/status"

    @property
    def set_filter(self) -> str:
        return f"{self.prefix}/set/+"

    def set_res(self, dev_id: str) -> str:
        return f"{self.prefix}/set_res/{dev_id}"

    @property
    def api_filter(self) -> str:
        return f"{self.prefix}/api/#"

    @property
    def api_res(self) -> str:
        return f"{self.prefix}/api_res"

    def command(self, dev_id: str, what: str) -> str:
        """A Home Assistant command topic (`number`/`switch` entities write here)."""
        return f"{self.prefix}/ha/{dev_id}/{what}"

    @property
    def command_filter(self) -> str:
        return f"{self.prefix}/ha/+/+"

    @property
    def ctl(self) -> str:
        """Wallbox setpoints from an external controller (observation mode, `mqtt_ctl`)."""
        return f"{self.prefix}/ctl"

    def subscriptions(self, api: bool, ctl: bool = False) -> list[str]:
        filters = [self.set_filter, self.command_filter, HA_STATUS]
        if api:
            filters.append(self.api_filter)
        if ctl:
            filters.append(self.ctl)
        return filters

    def own(self, topic: str) -> bool:
        """A topic chargebrain subscribes or publishes state on: no answer may go there (an
        MQTT 5 response topic is checked against this)."""
        return (topic.startswith((f"{self.prefix}/", f"{HA_PREFIX}/")) or "+" in topic
                or "#" in topic or not topic)

    def split(self, topic: str) -> tuple[str, str] | None:
        """`(kind, rest)` of an incoming topic under the prefix: ("set", "M3"),
        ("api", "cmd=get_params"), ("ha", "E1/override"); None for anything else."""
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return None
        kind, sep, rest = topic[len(head):].partition("/")
        if not sep or not rest or kind not in ("set", "api", "ha"):
            return None
        return kind, rest
