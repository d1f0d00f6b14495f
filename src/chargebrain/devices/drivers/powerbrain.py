"""Power Brain devices (`evse_powerbrain`, `meter_powerbrain`), local or remote.

Both speak the Power Brain register layout; only the transport differs:
- built in (`address` `evse`, `meter1`, `meter2`): the in-process register model of
  `app.powerbrain`, through `LocalRegisters`;
- remote (`address` `host:port`): Modbus TCP through the shared connection pool of
  chargebrain.modbus (one connection per `host:port`), through `ModbusTcpRegisters`.

So one `PowerBrainEvse` / `PowerBrainMeter` decodes registers for both. Addresses, sizes and
types come from the one register table (powerbrain/registers.py), values are decoded by the one
codec (chargebrain.modbus.codec). Fields used: the identity block (name, version, serial) for
the model string; on the EVSE cable_current … s0_inputs (8090–8113), and the meter block
(meter_flags … current_l3, 8057–8069) when has_meter; written charging_cur_limit and
charging_enable (adjacent: one request), relay_select. An S0 meter adds its nominal voltages.
Currents are 0.1 A in registers, mA here.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from chargebrain.devices.base import (
    STATE_CHARGING,
    STATE_ERROR,
    STATE_STANDBY,
    STATE_VEHICLE_DETECTED,
    STATE_VENTILATION,
    DeviceError,
    EvseCapabilities,
    EvseReading,
    EvseSetpoint,
    MeterReading,
)
from chargebrain.modbus.address import Endpoint
from chargebrain.modbus.client import Connection, ModbusError, ModbusPool, shared_pool
from chargebrain.powerbrain.registers import LAYOUTS, Register, UnitLayout
from chargebrain.powerbrain.registers import decode as decode_field
from chargebrain.powerbrain.registers import encode as encode_field
from chargebrain.units import ALL_PHASES_MASK, Phases

CP_STATES = {0: (STATE_STANDBY, "Standby"), 1: (STATE_VEHICLE_DETECTED, "Vehicle detected"),
             2: (STATE_CHARGING, "Charging"), 3: (STATE_VENTILATION, "Charging with ventilation"),
             4: (STATE_ERROR, "No power"), 5: (STATE_ERROR, "Error"),
             9: (STATE_ERROR, "DC sensor error")}


@dataclass(frozen=True, slots=True)
class Block:
    """Consecutive fields of one unit, read with one request."""

    fields: tuple[Register, ...]

    @classmethod
    def of(cls, layout: UnitLayout, first: str, last: str) -> Block:
        """The fields from `first` to `last` (by name); they must leave no gap."""
        lo, hi = layout.by_name[first].address, layout.by_name[last].address
        fields = tuple(r for r in layout.fields if lo <= r.address <= hi)
        for before, after in pairwise(fields):
            if before.address + before.size != after.address:
                raise ValueError(f"{layout.unit}: gap after {before.name}")
        return cls(fields)

    @property
    def address(self) -> int:
        return self.fields[0].address

    @property
    def count(self) -> int:
        return self.fields[-1].address + self.fields[-1].size - self.address

    async def read(self, regs: Registers) -> dict[str, int | str]:
        """Every field's value by name."""
        words = await regs.read(self.address, self.count)
        out = {}
        for reg in self.fields:
            start = reg.address - self.address
            out[reg.name] = decode_field(reg, words[start:start + reg.size])
        return out


EVSE_FIELDS = LAYOUTS["evse"].by_name
IDENTITY = Block.of(LAYOUTS["evse"], "vendor_id", "name")  # the same on every unit
EVSE_BLOCK = Block.of(LAYOUTS["evse"], "cable_current", "s0_inputs")
METER_BLOCK = Block.of(LAYOUTS["evse"], "meter_flags", "current_l3")  # same on S0 meters
VOLTAGES = Block.of(LAYOUTS["meter1"], "voltage_l1", "voltage_l3")
LIMIT = EVSE_FIELDS["charging_cur_limit"]
ENABLE = EVSE_FIELDS["charging_enable"]
RELAY_SELECT = EVSE_FIELDS["relay_select"]  # 0 = three phases, 1 = one phase
FAIL_SAFE_DURATION = EVSE_FIELDS["fail_safe_duration"]
FAIL_SAFE_CURRENT = EVSE_FIELDS["fail_safe_current"]
assert FAIL_SAFE_CURRENT.address == FAIL_SAFE_DURATION.address + FAIL_SAFE_DURATION.size
# a remote box falls back to this when chargebrain has been silent for the duration: stop
# charging (0) after 60 s (20 cycles of 3 s); see docs/meters.md
REMOTE_FAIL_SAFE = (60, 0)
LIMIT_MIN_DA, LIMIT_MAX_DA = LIMIT.allowed[0]  # 6.0 … 63.0 A in 0.1 A
assert ENABLE.address == LIMIT.address + LIMIT.size  # apply() writes both in one request
# a Power Brain keeps its limit in 0.1 A, at most 63 A (charging_cur_limit), and switches
# phases through relay_select
POWERBRAIN_EVSE = EvseCapabilities(step_ma=100, max_current_ma=LIMIT_MAX_DA * 100,
                                   phase_switching=True)


class Registers(Protocol):
    """Raw 16-bit holding registers of one Power Brain unit."""

    async def read(self, address: int, count: int) -> list[int]:
        """Read `count` consecutive registers; raise DeviceError on failure."""
        ...

    async def write(self, address: int, values: list[int]) -> None:
        """Write consecutive registers; raise DeviceError on failure."""
        ...

    async def close(self) -> None:
        """Release the transport."""
        ...


# -- decoding -----------------------------------------------------------------------------------


def model_string(identity: dict[str, int | str]) -> str:
    """`name,device version,firmware version,serial` from the identity block."""
    version = int(identity["product_version"])  # high word major.minor bytes, low word build
    major, minor, build = version >> 24, (version >> 16) & 0xFF, version & 0xFFFF
    serial = str(identity["serial_no"]).strip()
    name = str(identity["name"]).strip()
    return f"{name},{major}.{minor},{major}.{minor}.{build},{serial}"


def currents_ma(block: dict[str, int | str]) -> Phases:
    """The three phase currents (0.1 A in registers) as mA."""
    return (int(block["current_l1"]) * 100, int(block["current_l2"]) * 100,
            int(block["current_l3"]) * 100)


# -- devices ------------------------------------------------------------------------------------


class PowerBrainEvse:
    """A Power Brain wallbox behind `Registers`."""

    def __init__(self, regs: Registers, *, voltage_v: int, used_phases: int,
                 fail_safe: tuple[int, int] | None = None) -> None:
        self.regs = regs
        self.voltage_v = voltage_v
        self.used_phases = used_phases & ALL_PHASES_MASK or ALL_PHASES_MASK
        # (seconds, 0.1 A): written once per connection life, before the first read
        self.fail_safe = fail_safe
        self._fail_safe_set = fail_safe is None
        self._model: str | None = None
        self._one_phase: bool | None = None  # what we last wrote to relay_select (None: not yet)

    async def read(self, now_s: float) -> EvseReading:
        if not self._fail_safe_set and self.fail_safe is not None:
            duration_s, current_da = self.fail_safe
            await self.regs.write(FAIL_SAFE_DURATION.address,
                                  encode_field(FAIL_SAFE_DURATION, duration_s)
                                  + encode_field(FAIL_SAFE_CURRENT, current_da))
            self._fail_safe_set = True
        if self._model is None:
            self._model = model_string(await IDENTITY.read(self.regs))
        block = await EVSE_BLOCK.read(self.regs)
        cable_da, fixed_da = int(block["cable_current"]), int(block["fixed_current"])
        limit_da, current_da = int(block["charging_cur_limit"]), int(block["charging_current"])
        state, cp_text = CP_STATES.get(int(block["charge_pilot_state"]) & 0xFF,
                                       (STATE_ERROR, "Error"))
        energy: int | None = None
        if block["has_meter"] == 1:
            meter = await METER_BLOCK.read(self.regs)
            energy = int(meter["energy"])
            power = max(0, int(meter["power"]))
            currents = currents_ma(meter)
        elif state in (STATE_CHARGING, STATE_VENTILATION):
            # no meter: estimate from the charging current on the configured phases
            per_phase = current_da * 100
            currents = tuple(per_phase if self.used_phases & (1 << i) else 0 for i in range(3))  # type: ignore[assignment]
            power = round(sum(currents) * self.voltage_v / 1000)
        else:
            currents, power = (0, 0, 0), 0
        cable_ma = (fixed_da or cable_da) * 100
        return EvseReading(
            state=state,
            currents_ma=currents,
            power_w=power,
            total_energy_wh=energy,
            model=self._model,
            cable_max_ma=cable_ma,
            current_limit_ma=limit_da * 100,
            offered_ma=current_da * 100,
            enabled=block["charging_enable"] == 1,
            rfid=str(block["last_rfid"]).strip(),
            rfid_seq=int(block["detected_rfids"]),  # the same card twice still counts
            cp_state=cp_text,
            pp_state=f"{cable_da // 10} A cable" if cable_da else "no cable",
            inputs=int(block["s0_inputs"]) & 0x3,  # bits 0/1: the two S0 inputs
            # s0_inputs bit 8: the box may switch phases while a car is plugged in
            phase_switching=bool(int(block["s0_inputs"]) & 0x100) or state == STATE_STANDBY,
        )

    @property
    def capabilities(self) -> EvseCapabilities:
        """0.1 A steps, at most 63 A, phase switching (`POWERBRAIN_EVSE`)."""
        return POWERBRAIN_EVSE

    async def apply(self, setpoint: EvseSetpoint) -> None:
        if setpoint.one_phase is not None and setpoint.one_phase != self._one_phase:
            self._one_phase = None  # unknown until the write is confirmed
            await self.regs.write(RELAY_SELECT.address,
                                  encode_field(RELAY_SELECT, int(setpoint.one_phase)))
            self._one_phase = setpoint.one_phase
        if setpoint.charging_allowed:
            limit = min(LIMIT_MAX_DA, max(LIMIT_MIN_DA, setpoint.current_ma // 100))
            # limit and enable are adjacent: one request sets both
            await self.regs.write(LIMIT.address,
                                  encode_field(LIMIT, limit) + encode_field(ENABLE, 1))
        else:
            await self.regs.write(ENABLE.address, encode_field(ENABLE, 0))

    async def close(self) -> None:
        await self.regs.close()


class PowerBrainMeter:
    """A Power Brain S0 meter unit (nominal voltages and the meter block) behind `Registers`."""

    def __init__(self, regs: Registers) -> None:
        self.regs = regs
        self._model: str | None = None

    async def read(self, now_s: float) -> MeterReading:
        if self._model is None:
            self._model = model_string(await IDENTITY.read(self.regs))
        volts = await VOLTAGES.read(self.regs)
        block = await METER_BLOCK.read(self.regs)
        per_phase = int(block["meter_flags"]) & 1  # bit 0: the meter reports each phase
        return MeterReading(
            currents_ma=currents_ma(block) if per_phase else None,
            voltages_v=(int(volts["voltage_l1"]), int(volts["voltage_l2"]),
                        int(volts["voltage_l3"])),
            power_w=max(0, int(block["power"])),  # -1 = not known yet (fewer than two pulses)
            import_wh=max(0, int(block["energy"])),
            export_wh=0,  # an S0 input counts one direction only
            model=self._model,
        )

    async def close(self) -> None:
        await self.regs.close()


# -- transports ---------------------------------------------------------------------------------


class ModbusTcpRegisters:
    """Holding registers of a remote unit over the shared Modbus TCP connection to its
    `host:port` (function 3 read, 16 write); failures become DeviceError."""

    def __init__(self, endpoint: Endpoint, unit: int, timeout_s: float,
                 pool: ModbusPool | None = None) -> None:
        self.endpoint, self.unit, self.timeout_s = endpoint, unit, timeout_s
        self._pool = pool
        self._conn: Connection | None = None

    def _connection(self) -> tuple[ModbusPool, Connection]:
        if self._pool is None:
            self._pool = shared_pool()  # the running loop's: known only once a loop runs
        if self._conn is None:
            self._conn = self._pool.acquire(self.endpoint)
        return self._pool, self._conn

    async def read(self, address: int, count: int) -> list[int]:
        _, conn = self._connection()
        try:
            return await conn.read(self.unit, address, count, timeout_s=self.timeout_s)
        except ModbusError as err:
            raise DeviceError(f"read {address}: {err}") from None

    async def write(self, address: int, values: list[int]) -> None:
        _, conn = self._connection()
        try:
            await conn.write(self.unit, address, values, timeout_s=self.timeout_s)
        except ModbusError as err:
            raise DeviceError(f"write {address}: {err}") from None

    async def close(self) -> None:
        if self._conn is not None and self._pool is not None:
            self._pool.release(self._conn)
            self._conn = None
