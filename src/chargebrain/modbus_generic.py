"""Generic Modbus TCP access to other hosts (`cmd=modbus_get` / `cmd=modbus_set`).

The pure part turns typed values into 16-bit registers and back:
- `w` one register, unsigned (writes accept -32768…65535, two's complement);
- `d` 32-bit signed over 2 registers; `q` 64-bit signed over 4; `f` IEEE-754 float over 2;
- `s` a string over `cnt` registers, 2 bytes per register, NUL-padded, UTF-8.
`order` is `hl` (default: high word first for d/f/q, high byte first in each register for s)
or `lh` (low word first; low byte first for s). It does not change a single `w` register.

The I/O part opens one short-lived pymodbus TCP connection per request with a short timeout,
so a dead or slow host costs at most `TIMEOUT_S` and never more than that request.
Serial (`COMx,…`) addresses are refused: chargebrain has no serial Modbus.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

TIMEOUT_S = 2.0
DEFAULT_PORT = 502
MAX_READ_REGS = 125  # what one Modbus read may return
MAX_WRITE_REGS = 123  # what one function-16 write may carry
FLOAT32_MAX = 3.4028234663852886e38
TYPES = {"w": 1, "d": 2, "f": 2, "q": 4, "s": 1}  # registers per value (s: per `cnt`)
READ_FUNCTIONS = (3, 4)
WRITE_FUNCTIONS = (6, 16)
EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   10: "gateway path unavailable", 11: "gateway target device failed to respond"}

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")


class ModbusAccessError(ValueError):
    """A request that was refused (bad parameters) or failed (host, timeout, exception)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A Modbus TCP endpoint."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(addr: str) -> Target:
    """`IP:port`, `host:port`, `[v6]:port` or a bare host (port 502)."""
    text = addr.strip()
    if text[:3].upper() == "COM" or text.startswith("/dev/"):
        raise ModbusAccessError("serial ports are not supported: use IP:port (Modbus TCP)")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ModbusAccessError("bad addr: use IP:port")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ModbusAccessError("bad addr: use IP:port")
        port_text = rest[1:]
        valid_host = _IPV6.match(host) is not None
    else:
        if text.count(":") == 1:
            host, port_text = text.split(":")
        valid_host = _HOSTNAME.match(host) is not None
    if not valid_host:
        raise ModbusAccessError("bad addr: use IP:port")
    port = DEFAULT_PORT
    if port_text or text.endswith(":"):
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ModbusAccessError("bad addr: port must be 1 to 65535")
        port = int(port_text)
    return Target(host, port)


def register_count(kind: str, cnt: int) -> int:
    """How many registers a value of `kind` spans (`cnt` counts only for strings)."""
    return cnt if kind == "s" else TYPES[kind]


# -- encoding ---------------------------------------------------------------------------------

def _words_of(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def _ordered(words: list[int], order: str) -> list[int]:
    """hl: high word first (as encoded); lh: low word first."""
    return words if order == "hl" else list(reversed(words))


def encode(kind: str, value: int | float | str, *, order: str = "hl", cnt: int = 1
           ) -> list[int]:
    """The registers that carry `value` (already checked by `check_value`)."""
    if kind == "w":
        assert isinstance(value, int)
        return [value & 0xFFFF]
    if kind == "d":
        assert isinstance(value, int)
        return _ordered(_words_of((value & 0xFFFFFFFF).to_bytes(4, "big")), order)
    if kind == "q":
        assert isinstance(value, int)
        return _ordered(_words_of((value & (2**64 - 1)).to_bytes(8, "big")), order)
    if kind == "f":
        return _ordered(_words_of(struct.pack(">f", float(value))), order)
    raw = str(value).encode("utf-8").ljust(cnt * 2, b"\0")
    if order == "lh":
        raw = b"".join(raw[i:i + 2][::-1] for i in range(0, len(raw), 2))
    return _words_of(raw)


def decode(kind: str, words: list[int], *, order: str = "hl") -> int | float | str | None:
    """The value in `words`; a float that is NaN or infinite decodes to None (JSON has none)."""
    if kind == "w":
        return words[0]
    if kind == "s":
        raw = b"".join(w.to_bytes(2, "big" if order == "hl" else "little") for w in words)
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    raw = b"".join(w.to_bytes(2, "big") for w in _ordered(list(words), order))
    if kind == "f":
        number = struct.unpack(">f", raw)[0]
        return shortest_float32(number) if math.isfinite(number) else None
    return int.from_bytes(raw, "big", signed=True)


def shortest_float32(number: float) -> float:
    """The shortest decimal that is the same float32 (0.1, not 0.10000000149011612)."""
    packed = struct.pack(">f", number)
    for digits in range(6, 10):
        candidate = float(f"{number:.{digits}g}")
        if struct.pack(">f", candidate) == packed:
            return candidate
    return number


INT_RANGES = {"w": (-0x8000, 0xFFFF), "d": (-2**31, 2**32 - 1), "q": (-2**63, 2**64 - 1)}


def check_value(kind: str, value: int | float | str, cnt: int | None) -> int:
    """Check a value for writing; return the number of registers it needs."""
    if kind == "s":
        assert isinstance(value, str)
        size = len(value.encode("utf-8"))
        if cnt is None:
            cnt = max(1, (size + 1) // 2)
        if size > cnt * 2:
            raise ModbusAccessError(f"val does not fit in {cnt} registers")
        if cnt > MAX_WRITE_REGS:
            raise ModbusAccessError(f"a string may span at most {MAX_WRITE_REGS} registers")
        return cnt
    if kind == "f":
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise ModbusAccessError("val must be a finite number that fits a 32-bit float")
        return 2
    lo, hi = INT_RANGES[kind]
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ModbusAccessError(f"val out of range for type {kind}: {lo} to {hi}")
    return TYPES[kind]


# -- I/O --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReadRequest:
    target: Target
    unit_id: int
    func: int  # 3 holding, 4 input registers
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class WriteRequest:
    target: Target
    unit_id: int
    func: int  # 6 single register, 16 multiple
    address: int
    words: tuple[int, ...]


async def read_registers(req: ReadRequest, timeout_s: float = TIMEOUT_S) -> list[int]:
    """Read `count` registers; ModbusAccessError on any failure."""
    async def call(client: AsyncModbusTcpClient) -> object:
        if req.func == 4:
            return await client.read_input_registers(req.address, count=req.count,
                                                     device_id=req.unit_id)
        return await client.read_holding_registers(req.address, count=req.count,
                                                   device_id=req.unit_id)

    result = await _exchange(req.target, call, timeout_s)
    registers = list(getattr(result, "registers", None) or [])
    if len(registers) < req.count:
        raise ModbusAccessError(f"modbus error: {req.target} answered {len(registers)} "
                                f"registers, expected {req.count}")
    return registers[:req.count]


async def write_registers(req: WriteRequest, timeout_s: float = TIMEOUT_S) -> None:
    """Write the registers; ModbusAccessError on any failure."""
    async def call(client: AsyncModbusTcpClient) -> object:
        if req.func == 6:
            return await client.write_register(req.address, req.words[0],
                                               device_id=req.unit_id)
        return await client.write_registers(req.address, list(req.words),
                                            device_id=req.unit_id)

    await _exchange(req.target, call, timeout_s)


async def _exchange(target: Target,
                    call: Callable[[AsyncModbusTcpClient], Awaitable[object]],
                    timeout_s: float) -> object:
    client = AsyncModbusTcpClient(target.host, port=target.port, timeout=timeout_s,
                                  retries=0, reconnect_delay=0)
    try:
        # the outer bound covers name resolution and anything pymodbus does not time out
        async with asyncio.timeout(timeout_s * 2 + 1):
            if not await client.connect():
                raise ModbusAccessError(f"modbus error: cannot connect to {target}")
            result = await call(client)
    except (TimeoutError, ModbusIOException):  # pymodbus reports its timeout as an I/O error
        raise ModbusAccessError(f"modbus error: no answer from {target} "
                                f"within {timeout_s:g} s") from None
    except ModbusException as err:
        raise ModbusAccessError(f"modbus error: no valid answer from {target} "
                                f"({_short(err)})") from None
    except OSError as err:
        raise ModbusAccessError(f"modbus error: cannot reach {target} ({_short(err)})") from None
    finally:
        with contextlib.suppress(Exception):
            client.close()
    if result is None or getattr(result, "isError", lambda: False)():
        code = int(getattr(result, "exception_code", 0) or 0)
        name = EXCEPTION_NAMES.get(code, "error")
        raise ModbusAccessError(f"modbus error: exception {code} ({name}) from {target}")
    return result


def _short(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text[:120]
