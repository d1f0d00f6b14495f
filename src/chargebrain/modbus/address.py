"""`host:port` addresses of Modbus TCP endpoints: the one parser every caller uses.

Accepted: `192.168.2.10:502`, `meter.local:1502`, `[::1]:4701`, and, where the caller gives a
default port, a bare host (`10.0.0.1`). Serial addresses (`COM3,9600,…`, `/dev/tty…`) are
refused: chargebrain speaks Modbus TCP only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

DEFAULT_PORT = 502

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")

Problem = Literal["serial", "form", "port"]


class AddressError(ValueError):
    """An address that is not `host:port`; `problem` says which part is wrong."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A Modbus TCP endpoint; the key of a shared connection."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_port(address: str, default_port: int | None = None) -> Endpoint:
    """Split `host:port` (IPv6 as `[::1]:4701`); a bare host gets `default_port` if given.

    Raises AddressError: problem `serial` for serial ports, `port` for a port outside 1–65535
    (or missing when there is no default), `form` for anything else."""
    text = address.strip()
    if text[:3].upper() == "COM" or text.startswith("/dev/"):
        raise AddressError("serial", "serial ports are not supported: use IP:port (Modbus TCP)")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            raise AddressError("form", "use host:port")
        port_text = rest[1:]
        valid_host = _IPV6.match(host) is not None
    else:
        if text.count(":") == 1:
            host, port_text = text.split(":")
        valid_host = _HOSTNAME.match(host) is not None
    if not valid_host:
        raise AddressError("form", "use host:port")
    has_port = bool(port_text) or text.endswith(":")
    if not has_port:
        if default_port is None:
            raise AddressError("form", "use host:port")
        return Endpoint(host, default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise AddressError("port", "port must be 1 to 65535")
    return Endpoint(host, int(port_text))
