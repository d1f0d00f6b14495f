"""Addresses of Modbus endpoints: the one parser every caller uses.

TCP (`parse_host_port`): `192.168.2.10:502`, `meter.local:1502`, `[::1]:4701`, and, where the
caller gives a default port, a bare host (`10.0.0.1`). Serial addresses are refused there.

RTU on a serial port (`parse_serial`, for meters): `/dev/ttyUSB0,9600,8N1` — the port (an
absolute device path, also `/dev/serial/by-id/…` or a pseudo terminal's link, or `COMn`), then
optionally the baud rate (default 9600) and the frame as data bits (7 or 8), parity (N, E, O)
and stop bits (1 or 2), e.g. `/dev/ttyAMA0,19200,8E1` or `COM3,38400,8N2`. `parse_address`
takes either form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

DEFAULT_PORT = 502

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")

Problem = Literal["serial", "form", "port"]
BAUD_RATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400)
DEFAULT_BAUD = 9600
_SERIAL_PORT = re.compile(r"^(/[A-Za-z0-9_./-]{1,200}|COM[1-9][0-9]{0,2})$", re.IGNORECASE)
_FRAME = re.compile(r"^([78])([NEO])([12])$", re.IGNORECASE)


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


@dataclass(frozen=True, slots=True)
class SerialEndpoint:
    """A serial port for Modbus RTU, with its line settings. One bus: one shared connection
    per `port`, whatever unit ids sit on it."""

    port: str
    baudrate: int = DEFAULT_BAUD
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    def __str__(self) -> str:
        return f"{self.port},{self.baudrate},{self.bytesize}{self.parity}{self.stopbits}"


AnyEndpoint = Endpoint | SerialEndpoint


def is_serial(address: str) -> bool:
    """The address names a serial port (a device path such as `/dev/ttyUSB0`, or `COMn`), not
    a host."""
    text = address.strip()
    return text[:3].upper() == "COM" or text.startswith("/")


def parse_serial(address: str) -> SerialEndpoint:
    """`port[,baud[,frame]]`, e.g. `/dev/ttyUSB0,9600,8N1`; AddressError (problem `form`)
    naming the part that is wrong."""
    parts = [p.strip() for p in address.strip().split(",")]
    if len(parts) > 3 or not _SERIAL_PORT.match(parts[0]) or ".." in parts[0]:
        raise AddressError("form", "use a serial port like /dev/ttyUSB0,9600,8N1")
    port = parts[0].upper() if parts[0][:3].upper() == "COM" else parts[0]
    baud = DEFAULT_BAUD
    if len(parts) > 1:
        if not parts[1].isdigit() or int(parts[1]) not in BAUD_RATES:
            raise AddressError("form", "baud rate must be one of "
                               + ", ".join(str(b) for b in BAUD_RATES))
        baud = int(parts[1])
    if len(parts) < 3:
        return SerialEndpoint(port, baud)
    frame = _FRAME.match(parts[2])
    if frame is None:
        raise AddressError("form", "frame must be data bits 7/8, parity N/E/O, stop bits 1/2 "
                           "(e.g. 8N1)")
    return SerialEndpoint(port, baud, int(frame.group(1)), frame.group(2).upper(),
                          int(frame.group(3)))


def parse_address(address: str, default_port: int | None = None) -> AnyEndpoint:
    """A serial port (`parse_serial`) or a TCP `host:port` (`parse_host_port`)."""
    if is_serial(address):
        return parse_serial(address)
    return parse_host_port(address, default_port)


def parse_host_port(address: str, default_port: int | None = None) -> Endpoint:
    """Split `host:port` (IPv6 as `[::1]:4701`); a bare host gets `default_port` if given.

    Raises AddressError: problem `serial` for serial ports, `port` for a port outside 1–65535
    (or missing when there is no default), `form` for anything else."""
    text = address.strip()
    if is_serial(text):
        raise AddressError("serial", "serial ports are not supported here: use IP:port "
                           "(Modbus TCP)")
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
