"""The one asyncio Modbus client: a pool with one shared connection per `host:port` (TCP) or
per serial port (RTU).

Every device behind one gateway (and every `modbus_get` to it) uses the same TCP connection;
every meter on one RS-485 bus uses the same serial port, opened once with the settings of the
first address that named it (`/dev/ttyUSB0,9600,8N1`);
requests on a connection go one at a time (many gateways handle a single transaction only, and
it keeps a late answer from being taken for the next one). A connection lives while someone
holds a lease on it (`ModbusPool.acquire` … `release`) and is closed when the last one is
returned.

On a serial bus a unit that does not answer within its timeout is not asked again for a
back-off (the same `backoff_initial_s` doubling up to `backoff_max_s`, per unit): requests to
it fail at once meanwhile, so a dead meter holds up the others on its bus once per back-off,
not every cycle. Its first answer ends the back-off.

Failures: a request that times out or is cancelled drops the socket (a late answer must not be
mistaken for the next request's); the next request reconnects at once. A failed connect starts
an exponential back-off (`backoff_initial_s`, doubling up to `backoff_max_s`): until it ends,
requests fail at once with `ModbusConnectError` instead of each waiting for a dead host. The
first successful connect resets it. See docs/modbus.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from chargebrain.modbus.address import AnyEndpoint, Endpoint, SerialEndpoint
from chargebrain.modbus.batch import MAX_READ_REGISTERS, Span, plan_reads, split_answers

DEFAULT_TIMEOUT_S = 2.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
PYMODBUS_BACKSTOP_S = 600.0
MAX_WRITE_REGISTERS = 123  # what one function-16 write may carry
READ_HOLDING, READ_INPUT = 3, 4
WRITE_SINGLE, WRITE_MULTIPLE = 6, 16
EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   10: "gateway path unavailable", 11: "gateway target device failed to respond"}


class ModbusError(Exception):
    """A request that failed; the message names the endpoint and what went wrong."""


class ModbusConnectError(ModbusError):
    """No connection (refused, unreachable, or still in the back-off after a failure)."""


class ModbusTimeoutError(ModbusError):
    """The device did not answer within the timeout."""


class ModbusDeviceError(ModbusError):
    """The device answered with a Modbus exception (`code`)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class Connection:
    """One TCP connection (or one open serial port) to `endpoint`, shared by every unit id
    behind it."""

    def __init__(self, endpoint: AnyEndpoint, *, timeout_s: float, backoff_initial_s: float,
                 backoff_max_s: float, clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.leases = 0
        self.connects = 0  # TCP connections opened so far
        self.requests = 0  # Modbus requests sent so far
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._failures = 0  # failed connects in a row
        self._retry_at_s = 0.0
        # on a serial bus: units that did not answer, and when they are asked again
        self.bus = isinstance(endpoint, SerialEndpoint)
        self._unit_failures: dict[int, int] = {}
        self._unit_retry_at_s: dict[int, float] = {}

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def retry_at_s(self) -> float | None:
        """When the back-off ends (clock time), or None when there is none."""
        return self._retry_at_s if self._failures else None

    # -- requests ---------------------------------------------------------------------------

    async def read(self, unit_id: int, address: int, count: int, *, func: int = READ_HOLDING,
                   timeout_s: float | None = None) -> list[int]:
        """`count` (≤ 125) registers from `address`, function 3 (holding) or 4 (input)."""
        if func not in (READ_HOLDING, READ_INPUT):
            raise ValueError("reads use function 3 or 4")
        if not 1 <= count <= MAX_READ_REGISTERS:
            raise ValueError(f"a read carries 1 to {MAX_READ_REGISTERS} registers")

        def call(client: Client) -> Awaitable[Any]:
            method = client.read_input_registers if func == READ_INPUT \
                else client.read_holding_registers
            return method(address, count=count, device_id=unit_id)

        result = await self._exchange(call, timeout_s, unit_id)
        registers = list(getattr(result, "registers", None) or [])
        if len(registers) < count:
            raise ModbusError(f"{self.endpoint} answered {len(registers)} registers, "
                              f"expected {count}")
        return registers[:count]

    async def read_spans(self, unit_id: int, spans: list[Span], *, func: int = READ_HOLDING,
                         timeout_s: float | None = None,
                         max_count: int = MAX_READ_REGISTERS) -> list[list[int]]:
        """The registers of every span, read in as few requests as `batch.plan_reads` allows."""
        requests = plan_reads(spans, min(max_count, MAX_READ_REGISTERS))
        answers = [await self.read(unit_id, r.address, r.count, func=func, timeout_s=timeout_s)
                   for r in requests]
        return split_answers(spans, requests, answers)

    async def write(self, unit_id: int, address: int, values: list[int], *,
                    func: int = WRITE_MULTIPLE, timeout_s: float | None = None) -> None:
        """Write registers: function 6 (one register) or 16 (1 to 123)."""
        if func == WRITE_SINGLE and len(values) != 1:
            raise ValueError("function 6 writes exactly one register")
        if func not in (WRITE_SINGLE, WRITE_MULTIPLE) \
                or not 1 <= len(values) <= MAX_WRITE_REGISTERS:
            raise ValueError(f"writes use function 6 or 16 with 1 to {MAX_WRITE_REGISTERS} "
                             "registers")

        def call(client: Client) -> Awaitable[Any]:
            if func == WRITE_SINGLE:
                return client.write_register(address, values[0], device_id=unit_id)
            return client.write_registers(address, list(values), device_id=unit_id)

        await self._exchange(call, timeout_s, unit_id)

    # -- the connection ---------------------------------------------------------------------

    def unit_retry_at_s(self, unit_id: int) -> float | None:
        """On a serial bus: when a unit that did not answer is asked again (clock time)."""
        return self._unit_retry_at_s.get(unit_id)

    async def _exchange(self, call: Callable[[Client], Awaitable[Any]],
                        timeout_s: float | None, unit_id: int) -> Any:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self.bus:
            retry_at_s = self._unit_retry_at_s.get(unit_id)
            if retry_at_s is not None and self.clock() < retry_at_s:
                # a silent unit would hold the bus for its whole timeout, and every other
                # unit on it would wait: it is skipped until its back-off ends
                raise ModbusTimeoutError(
                    f"unit {unit_id} on {self.endpoint} did not answer; asked again in "
                    f"{retry_at_s - self.clock():.1f} s")
            sent: list[bool] = []
            try:
                result = await self._locked_exchange(call, timeout_s, sent)
            except ModbusDeviceError:
                self._unit_answered(unit_id)  # an exception is an answer
                raise
            except (ModbusTimeoutError, asyncio.CancelledError):
                if sent:  # (cancelled while waiting for the bus: the unit was not asked)
                    self._unit_silent(unit_id)
                raise
            self._unit_answered(unit_id)
            return result
        return await self._locked_exchange(call, timeout_s, [])

    def _unit_silent(self, unit_id: int) -> None:
        failures = self._unit_failures[unit_id] = self._unit_failures.get(unit_id, 0) + 1
        self._unit_retry_at_s[unit_id] = self.clock() + min(
            self.backoff_max_s, self.backoff_initial_s * 2 ** (failures - 1))

    def _unit_answered(self, unit_id: int) -> None:
        self._unit_failures.pop(unit_id, None)
        self._unit_retry_at_s.pop(unit_id, None)

    async def _locked_exchange(self, call: Callable[[Client], Awaitable[Any]],
                               timeout_s: float, sent: list[bool]) -> Any:
        async with self._lock:
            client = await self._connect(timeout_s)
            sent.append(True)
            self.requests += 1
            try:
                async with asyncio.timeout(timeout_s):
                    result = await call(client)
            except (TimeoutError, ModbusIOException):  # pymodbus' timeout is an I/O error
                self._drop()
                raise ModbusTimeoutError(f"no answer from {self.endpoint} "
                                         f"within {timeout_s:g} s") from None
            except ModbusException as err:
                self._drop()
                raise ModbusError(f"no valid answer from {self.endpoint} "
                                  f"({_short(err)})") from None
            except OSError as err:
                self._drop()
                raise ModbusConnectError(f"cannot reach {self.endpoint} ({_short(err)})"
                                         ) from None
            except BaseException:  # cancelled: the answer may still come, on a dead socket
                self._drop()
                raise
        if result is None or result.isError():
            code = int(getattr(result, "exception_code", 0) or 0)
            name = EXCEPTION_NAMES.get(code, "error")
            raise ModbusDeviceError(f"exception {code} ({name}) from {self.endpoint}", code)
        return result

    def _new_client(self) -> Client:
        # pymodbus' own timeout is fixed per client, but requests on a shared connection bring
        # their own: it is only a backstop, the timeouts that count are ours (asyncio.timeout)
        endpoint = self.endpoint
        if isinstance(endpoint, SerialEndpoint):
            return AsyncModbusSerialClient(
                endpoint.port, framer=FramerType.RTU, baudrate=endpoint.baudrate,
                bytesize=endpoint.bytesize, parity=endpoint.parity, stopbits=endpoint.stopbits,
                timeout=PYMODBUS_BACKSTOP_S, retries=0, reconnect_delay=0)
        return AsyncModbusTcpClient(endpoint.host, port=endpoint.port,
                                    timeout=PYMODBUS_BACKSTOP_S, retries=0, reconnect_delay=0)

    async def _connect(self, timeout_s: float) -> Client:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        if self._failures and self.clock() < self._retry_at_s:
            raise ModbusConnectError(f"cannot connect to {self.endpoint}")
        client = self._new_client()
        ok = False
        try:
            # the outer bound covers name resolution, which pymodbus does not time out
            async with asyncio.timeout(timeout_s * 2 + 1):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException):
            pass
        finally:
            if not ok:  # also when cancelled: leave no half-open socket behind
                with contextlib.suppress(Exception):
                    client.close()
        if not ok:
            self._failures += 1
            delay_s = min(self.backoff_max_s,
                          self.backoff_initial_s * 2 ** (self._failures - 1))
            self._retry_at_s = self.clock() + delay_s
            raise ModbusConnectError(f"cannot connect to {self.endpoint}")
        self._failures = 0
        self.connects += 1
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def close(self) -> None:
        """Close the socket (the next request would open a new one)."""
        self._drop()


class ModbusPool:
    """One `Connection` per endpoint, handed out as leases."""

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 backoff_initial_s: float = BACKOFF_INITIAL_S,
                 backoff_max_s: float = BACKOFF_MAX_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self._connections: dict[Endpoint | str, Connection] = {}

    def acquire(self, endpoint: AnyEndpoint) -> Connection:
        """The shared connection to `endpoint`; give it back with `release`.

        A serial port is one bus: every address naming it shares one connection, opened with
        the line settings of the first."""
        conn = self._connections.get(_key(endpoint))
        if conn is None:
            conn = Connection(endpoint, timeout_s=self.timeout_s,
                              backoff_initial_s=self.backoff_initial_s,
                              backoff_max_s=self.backoff_max_s, clock=self.clock)
            self._connections[_key(endpoint)] = conn
        conn.leases += 1
        return conn

    def release(self, conn: Connection) -> None:
        """Return a lease; the last one closes the connection."""
        conn.leases -= 1
        if conn.leases <= 0 and self._connections.get(_key(conn.endpoint)) is conn:
            del self._connections[_key(conn.endpoint)]
            conn.close()

    @contextlib.asynccontextmanager
    async def lease(self, endpoint: AnyEndpoint):  # type: ignore[no-untyped-def]
        """`async with pool.lease(endpoint) as conn:` for one-off requests."""
        conn = self.acquire(endpoint)
        try:
            yield conn
        finally:
            self.release(conn)

    def connection(self, endpoint: AnyEndpoint) -> Connection | None:
        """The open entry for `endpoint` (for status and tests), without taking a lease."""
        return self._connections.get(_key(endpoint))

    def __len__(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ModbusPool] = (
    weakref.WeakKeyDictionary())


def shared_pool() -> ModbusPool:
    """The pool of the running event loop: every driver and API request in it shares it.

    Sockets belong to one loop, so the pool is per loop rather than per process."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = ModbusPool()
    return pool


def _key(endpoint: AnyEndpoint) -> Endpoint | str:
    """What a shared connection is keyed by: the TCP endpoint, or the serial port's name."""
    return endpoint.port if isinstance(endpoint, SerialEndpoint) else endpoint


def _short(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text[:120]
