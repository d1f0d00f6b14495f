"""`mqtt_url` → broker address, credentials, TLS and protocol version.

`mqtt://[user:pw@]host[:port]` (MQTT 3.1.1, port 1883), `mqtts://` (TLS, port 8883),
`mqtt3://` / `mqtt5://` pin the protocol version (`mqtts3://`, `mqtts5://` with TLS).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEMES: dict[str, tuple[bool, int]] = {  # scheme → (TLS, protocol version 3 or 5)
    "mqtt": (False, 3), "mqtt3": (False, 3), "mqtt5": (False, 5),
    "mqtts": (True, 3), "mqtts3": (True, 3), "mqtts5": (True, 5),
}


class BrokerUrlError(ValueError):
    """`mqtt_url` cannot be used; the message says why (never the password)."""


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    version: int = 3  # 3 = MQTT 3.1.1, 5 = MQTT 5

    def describe(self) -> str:
        """For log lines: no password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}{self.version}://{user}{self.host}:{self.port}"


def is_broker_url(address: str) -> bool:
    """`address` is written as a broker URL (`mqtt://…`, `mqtts5://…`), usable or not."""
    scheme, sep, _ = address.strip().partition("://")
    return bool(sep) and scheme.lower().startswith("mqtt")


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse `mqtt_url`; raise BrokerUrlError for anything unusable."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BrokerUrlError(f"mqtt_url scheme must be one of {', '.join(SCHEMES)}")
    tls, version = SCHEMES[scheme]
    try:
        port = parts.port
    except ValueError:
        raise BrokerUrlError("mqtt_url port must be between 1 and 65535") from None
    host = parts.hostname
    if not host:
        raise BrokerUrlError("mqtt_url has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError("mqtt_url must be scheme://[user:pw@]host[:port]")
    return BrokerUrl(host=host, port=port or (8883 if tls else 1883),
                     username=unquote(parts.username) if parts.username else None,
                     password=unquote(parts.password) if parts.password is not None else None,
                     tls=tls, version=version)
