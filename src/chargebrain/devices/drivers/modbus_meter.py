"""Modbus meters from a meter definition (`meter_sdm630`, `meter_abb_b23_b24`, user files…).

One driver for every rtype-0 definition: the variables' registers are read over the shared
Modbus connection to the device's `host:port` (TCP) or serial port (RTU, `/dev/ttyUSB0,9600,8N1`)
(chargebrain.modbus.client: one connection per endpoint however many meters sit behind a
gateway or on one bus, requests on it one at a time), batched into as few requests as the
definition allows (`modbus_read_max_registers`; with `modbus_allow_gaps` unused registers
between variables are read along, else every run of adjacent registers is its own request),
decoded by the one codec (type, word order) and multiplied by each variable's `resolution`;
then the `expr` variables are computed from them (defined.compute).
Identity variables (`once`) are read on the first successful read only. A raw value listed in
the definition's `reserved` counts as 0. Failures are `DeviceError`s (the registry turns them
into the COM-error status); the next read reconnects.
"""

from __future__ import annotations

from chargebrain.devices.base import DeviceError, MeterReading
from chargebrain.devices.definitions import MeterDefinition, Variable
from chargebrain.devices.drivers.defined import Value, compute, meter_reading
from chargebrain.modbus.address import AnyEndpoint
from chargebrain.modbus.batch import Span, cover_gaps
from chargebrain.modbus.client import Connection, ModbusError, ModbusPool, shared_pool
from chargebrain.modbus.codec import CodecError, DataType, decode


class ModbusMeter:
    """A meter read through its definition over Modbus TCP or RTU."""

    def __init__(self, definition: MeterDefinition, endpoint: AnyEndpoint, unit: int,
                 timeout_s: float, *, voltage_v: int, pool: ModbusPool | None = None) -> None:
        self.definition = definition
        self.endpoint, self.unit, self.timeout_s = endpoint, unit, timeout_s
        self.voltage_v = voltage_v
        self._pool = pool
        self._conn: Connection | None = None
        self._fixed: dict[str, Value] = {v.name: v.fixed for v in definition.variables
                                         if v.fixed is not None}
        read = [v for v in definition.variables if isinstance(v.address, int)]
        self._once = [v for v in read if v.once]
        self._periodic = [v for v in read if not v.once]
        self._identity: dict[str, Value] | None = None
        self._last: tuple[float, MeterReading] | None = None
        self.requests = 0  # Modbus requests this driver made (for tests and benchmarks)
        self.read_problem = ""  # `expr` variables the last read could not compute

    def _connection(self) -> Connection:
        if self._pool is None:
            self._pool = shared_pool()  # the running loop's: known only once a loop runs
        if self._conn is None:
            self._conn = self._pool.acquire(self.endpoint)
        return self._conn

    async def read(self, now_s: float) -> MeterReading:
        if self._last is not None and now_s - self._last[0] < self.definition.upd_delay_s:
            return self._last[1]  # the definition asks not to be read more often
        if self._identity is None:
            self._identity = await self._read_variables(self._once)
        values = {**self._fixed, **self._identity, **await self._read_variables(self._periodic)}
        values, problems = compute(self.definition, values)
        self.read_problem = "; ".join(problems)
        reading = meter_reading(self.definition, values, self.voltage_v)
        self._last = (now_s, reading)
        return reading

    async def _read_variables(self, variables: list[Variable]) -> dict[str, Value]:
        if not variables:
            return {}
        spans = [Span(v.address, v.registers) for v in variables]  # type: ignore[arg-type]
        definition = self.definition
        requests = cover_gaps(spans, definition.max_registers) if definition.allow_gaps \
            else spans
        conn = self._connection()
        before = conn.requests
        try:
            answers = await conn.read_spans(self.unit, requests, func=definition.modbus_read,
                                            timeout_s=self.timeout_s,
                                            max_count=definition.max_registers)
        except ModbusError as err:
            raise DeviceError(str(err)) from None
        finally:
            self.requests += conn.requests - before
        words: dict[int, int] = {}
        for request, answer in zip(requests, answers, strict=True):
            words.update(zip(range(request.address, request.end), answer, strict=True))
        return {v.name: self._value(v, [words[a] for a in range(span.address, span.end)])
                for v, span in zip(variables, spans, strict=True)}

    def _value(self, variable: Variable, registers: list[int]) -> Value:
        try:
            raw = decode(registers, variable.kind, variable.order)
        except CodecError as err:
            raise DeviceError(f"{variable.name}: {err}") from None
        if variable.kind is DataType.STR:
            return str(raw).strip()
        assert not isinstance(raw, str)
        if raw in self.definition.reserved:
            return 0.0
        return raw * variable.resolution

    async def close(self) -> None:
        if self._conn is not None and self._pool is not None:
            self._pool.release(self._conn)
            self._conn = None
