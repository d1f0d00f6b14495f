"""`cmd=modbus`: the built-in Power Brain controller's registers over HTTP.

Forms (all of the seeds): `device=evse|meter1|meter2` and one of
- `read=ADDR[d|q|s]` → a number (or a string for `s`);
- `read=ADDR&count=N` → N raw 16-bit registers;
- `read=all` → every field of the unit, keys `ADDR<suffix>`;
- `write=ADDR[d|q|s]&value=V` or `write=ADDR&values=[a,b,…]` (raw registers), several pairs
  in one request → `"ok"`. All pairs are checked first (each seeing the ones before), then all
  are applied in order; if one is refused nothing is written.
Reads are public (admin when `api_read_needs_auth`); writes need admin. Every refusal is a JSON
string with HTTP 400 (see docs/registers.md for the list).
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from chargebrain.api.auth import require_admin
from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import ApiError, bad_request
from chargebrain.powerbrain import RegisterError, WriteOp
from chargebrain.powerbrain.registers import UNIT_NAMES

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain

MAX_COUNT = 125  # what one Modbus read may return
_ADDRESS = re.compile(r"^(\d{1,6})([A-Za-z]?)$")
_JUNK = " \t\r\n\"'"  # stray quotes/blanks some clients leave around values (seed: value=1")


def parse_address(raw: str) -> tuple[int, str]:
    """`8062d` → (8062, "d"); refuse anything that is not a decimal address + suffix."""
    text = raw.strip(_JUNK)
    match = _ADDRESS.match(text)
    if match is None:
        raise bad_request(f"bad register address: {raw[:40]}")
    suffix = match.group(2).lower()
    if suffix not in ("", "d", "q", "s"):
        raise bad_request(f"unknown register suffix: {match.group(2)} (use d, q or s)")
    return int(match.group(1)), suffix


def parse_number(raw: Any) -> int:
    """An integer value; `16000.0` is accepted, fractions, NaN and words are not."""
    if isinstance(raw, bool):
        raise bad_request("bad value: must be a number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        number = raw
    else:
        text = str(raw).strip(_JUNK)
        try:
            return int(text, 10)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise bad_request("bad value: must be a number") from None
    if not math.isfinite(number) or number != int(number):
        raise bad_request("bad value: must be a whole number")
    return int(number)


def parse_values(raw: str) -> tuple[int, ...]:
    """`[7,230,230,230 ]` (or `7,230`) → raw 16-bit words; −32768…−1 as two's complement."""
    text = raw.strip(_JUNK)
    if not text.startswith("["):
        text = f"[{text}]"
    try:
        items = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        raise bad_request("bad values: expected a list of numbers like [1,2,3]") from None
    if not isinstance(items, list) or not items:
        raise bad_request("bad values: expected a list of numbers like [1,2,3]")
    if len(items) > MAX_COUNT:
        raise bad_request(f"bad values: at most {MAX_COUNT} registers")
    words = []
    for item in items:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            raise bad_request("bad values: expected a list of numbers like [1,2,3]")
        word = parse_number(item)
        if not -0x8000 <= word <= 0xFFFF:
            raise bad_request("value out of range: values must be 16-bit registers "
                              "(-32768 to 65535)")
        words.append(word & 0xFFFF)
    return tuple(words)


def _refuse(name: str) -> Any:
    raise ValueError(name)


def parse_writes(pairs: list[tuple[str, str]]) -> list[WriteOp]:
    """Pair every `write` with its `value`/`values`, in the order they came."""
    targets = [v for k, v in pairs if k == "write"]
    values = [(k, v) for k, v in pairs if k in ("value", "values")]
    if len(values) < len(targets):
        raise bad_request("missing value: every write needs a value or values")
    if len(values) > len(targets):
        raise bad_request("value without write: every value needs a write=ADDR")
    ops = []
    for target, (kind, raw) in zip(targets, values, strict=True):
        address, suffix = parse_address(target)
        if kind == "values":
            ops.append(WriteOp(address, suffix, values=parse_values(raw)))
        elif suffix == "s":
            ops.append(WriteOp(address, suffix, value=raw.strip(_JUNK)))
        else:
            ops.append(WriteOp(address, suffix, value=parse_number(raw)))
    return ops


def _unit(req: ApiRequest) -> str:
    raw = req.text("device")
    if raw is None:
        raise bad_request("missing parameter device")
    unit = raw.strip(_JUNK).lower()
    if unit not in UNIT_NAMES:
        raise bad_request("unknown device: use evse, meter1 or meter2")
    return unit


async def modbus(app: ChargeBrain, req: ApiRequest) -> Any:
    """`cmd=modbus`: read or write the registers of one unit."""
    writes = "write" in req.query
    if writes:
        require_admin(req)
    else:
        app.auth.require(req, Access.READ)
    unit = _unit(req)
    pb = app.powerbrain
    try:
        if writes:
            if req.has("read"):
                raise bad_request("use either read or write, not both")
            pb.write(unit, parse_writes(req.pairs), pb.clock())
            return "ok"
        read = req.text("read")
        if read is None:
            raise bad_request("missing parameter read or write")
        if read.strip(_JUNK).lower() == "all":
            return pb.read_all(unit, pb.clock())
        address, suffix = parse_address(read)
        if req.has("count"):
            try:
                count = parse_number(req.text("count"))
            except ApiError:
                raise bad_request("bad value: count must be a number") from None
            if not 1 <= count <= MAX_COUNT:
                raise bad_request(f"count out of range: 1 to {MAX_COUNT}")
            if suffix:
                raise bad_request("count reads raw 16-bit registers: use read=ADDR "
                                  "without suffix")
            return pb.read_raw(unit, address, count, pb.clock())
        return pb.read_value(unit, address, suffix, pb.clock())
    except RegisterError as err:
        raise bad_request(err.message) from None


COMMANDS: dict[str, Command] = {
    "modbus": Command(modbus, Access.CHECKED),
}
