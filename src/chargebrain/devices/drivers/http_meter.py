"""HTTP/JSON meters from a meter definition (rtype 1, e.g. `meter_shelly_3em`, user files).

Each variable names a URL (`address`: absolute, a path relative to the device's `address`, or
empty for the device's address itself) and a `query` into the JSON answer
(devices/json_query.py) or a `regex` for answers that are not JSON (the whole match, or the
first group). Every URL is fetched once per read, all of them concurrently, with aiohttp's
client and the device's timeout; a refused connection, a timeout, an HTTP error status, an
answer that is not JSON or a query that finds nothing are `DeviceError`s (COM errors). Then the
`expr` variables are computed from the values read (defined.compute).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any
from urllib.parse import urljoin

import aiohttp

from chargebrain.devices.base import DeviceError, MeterReading
from chargebrain.devices.definitions import MeterDefinition, Variable
from chargebrain.devices.drivers.defined import Value, compute, meter_reading
from chargebrain.devices.json_query import QueryError, parse_query, run_query

MAX_ANSWER_BYTES = 1_000_000


class HttpMeter:
    """A meter read through its definition over HTTP."""

    def __init__(self, definition: MeterDefinition, address: str, timeout_s: float, *,
                 voltage_v: int) -> None:
        self.definition = definition
        self.address = address
        self.timeout_s = timeout_s
        self.voltage_v = voltage_v
        self._fixed: dict[str, Value] = {v.name: v.fixed for v in definition.variables
                                         if v.fixed is not None}
        self._read = [v for v in definition.variables if isinstance(v.address, str)]
        self._queries = {v.name: parse_query(v.query) for v in self._read if v.query}
        self._session: aiohttp.ClientSession | None = None
        self._once: dict[str, Value] | None = None
        self._last: tuple[float, MeterReading] | None = None
        self.read_problem = ""  # `expr` variables the last read could not compute

    def url(self, variable: Variable) -> str:
        """The URL a variable is read from."""
        target = str(variable.address or "")
        if not target:
            return self.address
        return urljoin(self.address if self.address.endswith("/") or "://" in target
                       else self.address + "/", target)

    async def read(self, now_s: float) -> MeterReading:
        if self._last is not None and now_s - self._last[0] < self.definition.upd_delay_s:
            return self._last[1]
        wanted = [v for v in self._read if not (v.once and self._once is not None)]
        urls = sorted({self.url(v) for v in wanted})
        answers = dict(zip(urls, await asyncio.gather(*(self._fetch(u) for u in urls)),
                           strict=True))
        values = {v.name: self._value(v, answers[self.url(v)]) for v in wanted}
        if self._once is None:
            self._once = {v.name: values[v.name] for v in self._read if v.once}
        values, problems = compute(self.definition, {**self._fixed, **self._once, **values})
        self.read_problem = "; ".join(problems)
        reading = meter_reading(self.definition, values, self.voltage_v)
        self._last = (now_s, reading)
        return reading

    async def _fetch(self, url: str) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    raise DeviceError(f"{url}: HTTP {response.status}")
                body = await response.content.read(MAX_ANSWER_BYTES + 1)
        except TimeoutError:
            raise DeviceError(f"no answer from {url} within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as err:
            raise DeviceError(f"cannot reach {url} ({type(err).__name__})") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise DeviceError(f"{url}: answer larger than {MAX_ANSWER_BYTES} bytes")
        return body.decode("utf-8", errors="replace")

    def _value(self, variable: Variable, text: str) -> Value:
        found: Any = text
        if variable.query is not None:
            try:
                found = run_query(json.loads(text), self._queries[variable.name])
            except json.JSONDecodeError:
                raise DeviceError(f"{variable.name}: the answer is not JSON") from None
            except QueryError as err:
                raise DeviceError(f"{variable.name}: {err}") from None
        if variable.regex is not None:
            match = re.search(variable.regex, str(found))
            if match is None:
                raise DeviceError(f"{variable.name}: regex finds nothing")
            found = match.group(1) if match.groups() else match.group(0)
        if variable.kind.value == "str":
            return str(found)
        if isinstance(found, bool):
            found = int(found)
        try:
            number = float(found)
        except (TypeError, ValueError):
            raise DeviceError(f"{variable.name}: {str(found)[:40]!r} is not a number") from None
        if not math.isfinite(number):
            raise DeviceError(f"{variable.name}: not a finite number")
        if number in self.definition.reserved:
            return 0.0
        return number * variable.resolution

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
