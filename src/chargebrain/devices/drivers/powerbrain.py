"""Power Brain devices (`evse_powerbrain`, `meter_powerbrain`), local or remote.

Both speak the Power Brain register layout (docs/registers.md); only the transport differs:
- built in (`address` `evse`, `meter1`, `meter2`): the in-process register model of
  `app.powerbrain`, through `LocalRegisters`;
- remote (`address` `host:port`): Modbus TCP with pymodbus, through `ModbusTcpRegisters`.

So one `PowerBrainEvse` / `PowerBrainMeter` decodes registers for both. Registers used:
EVSE 8090 cable current, 8092 charge-pilot state (0 A … 5 F, 9 DC error), 8093 current limit
and 8094 enable (written), 8095 charging current, 8096 last RFID, 8112 meter attached (then
8057–8068 energy, power and phase currents); identity 8000–8031 (name, version, serial) for
the model string. Currents are 0.1 A in registers, mA here.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from chargebrain.devices.base import (
    STATE_CHARGING,
    STATE_ERROR,
    STATE_STANDBY,
    STATE_VEHICLE_DETECTED,
    STATE_VENTILATION,
    DeviceError,
    EvseReading,
    EvseSetpoint,
    MeterReading,
)
from chargebrain.units import ALL_PHASES_MASK, Phases

# register addresses
REG_IDENTITY = 8000  # 8000..8031: vendor, product, version, serial (8008), name (8016)
IDENTITY_COUNT = 32
REG_RELAY_SELECT = 8087  # 0 = three phases, 1 = one phase
REG_EVSE_BLOCK = 8090  # 8090..8113
EVSE_BLOCK_COUNT = 24
REG_METER_BLOCK = 8057  # 8057..8069: flags, energy (q), power (d), currents L1..L3 (d)
METER_BLOCK_COUNT = 13
REG_VOLTAGES = 8045  # 8045..8047 nominal voltages of an S0 meter
REG_CHARGING_CUR_LIMIT = 8093
REG_CHARGING_ENABLE = 8094
LIMIT_MIN_DA = 60  # 8093 accepts 6.0 … 63.0 A in 0.1 A
LIMIT_MAX_DA = 630

CP_STATES = {0: (STATE_STANDBY, "Standby"), 1: (STATE_VEHICLE_DETECTED, "Vehicle detected"),
             2: (STATE_CHARGING, "Charging"), 3: (STATE_VENTILATION, "Charging with ventilation"),
             4: (STATE_ERROR, "No power"), 5: (STATE_ERROR, "Error"),
             9: (STATE_ERROR, "DC sensor error")}


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


def s32(words: list[int], i: int) -> int:
    """Signed 32-bit value, high word first."""
    value = (words[i] << 16) | words[i + 1]
    return value - (1 << 32) if value & 0x8000_0000 else value


def s64(words: list[int], i: int) -> int:
    """Signed 64-bit value, high word first."""
    value = 0
    for w in words[i:i + 4]:
        value = (value << 16) | w
    return value - (1 << 64) if value & (1 << 63) else value


def text(words: list[int]) -> str:
    """A register string: two characters per register, high byte first, NUL-padded."""
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def model_string(identity: list[int]) -> str:
    """`name,device version,firmware version,serial` from registers 8000–8031."""
    version_hi, build = identity[4], identity[5]
    major, minor = version_hi >> 8, version_hi & 0xFF
    serial = text(identity[8:16])
    name = text(identity[16:32])
    return f"{name},{major}.{minor},{major}.{minor}.{build},{serial}"


def currents_ma(words: list[int], i: int) -> Phases:
    """Three 32-bit currents in 0.1 A starting at word `i`, as mA."""
    return (s32(words, i) * 100, s32(words, i + 2) * 100, s32(words, i + 4) * 100)


# -- devices ------------------------------------------------------------------------------------


class PowerBrainEvse:
    """A Power Brain wallbox behind `Registers`."""

    def __init__(self, regs: Registers, *, voltage_v: int, used_phases: int) -> None:
        self.regs = regs
        self.voltage_v = voltage_v
        self.used_phases = used_phases & ALL_PHASES_MASK or ALL_PHASES_MASK
        self._model: str | None = None
        self._one_phase: bool | None = None  # what we last wrote to 8087 (None: not yet)

    async def read(self, now_s: float) -> EvseReading:
        if self._model is None:
            self._model = model_string(await self.regs.read(REG_IDENTITY, IDENTITY_COUNT))
        block = await self.regs.read(REG_EVSE_BLOCK, EVSE_BLOCK_COUNT)
        cable_da, fixed_da, cp_raw, limit_da, enable, current_da = block[0:6]
        rfid = text(block[6:21])
        has_meter = block[22] == 1
        state, cp_text = CP_STATES.get(cp_raw & 0xFF, (STATE_ERROR, "Error"))
        energy: int | None = None
        if has_meter:
            meter = await self.regs.read(REG_METER_BLOCK, METER_BLOCK_COUNT)
            energy = s64(meter, 1)
            power = max(0, s32(meter, 5))
            currents = currents_ma(meter, 7)
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
            enabled=enable == 1,
            rfid=rfid,
            rfid_seq=block[21],  # 8111 detected_rfids: the same card twice still counts
            cp_state=cp_text,
            pp_state=f"{cable_da // 10} A cable" if cable_da else "no cable",
            # 8113 bit 8: the box may switch phases while a car is plugged in
            phase_switching=bool(block[23] & 0x100) or state == STATE_STANDBY,
        )

    async def apply(self, setpoint: EvseSetpoint) -> None:
        if setpoint.one_phase is not None and setpoint.one_phase != self._one_phase:
            self._one_phase = None  # unknown until the write is confirmed
            await self.regs.write(REG_RELAY_SELECT, [int(setpoint.one_phase)])
            self._one_phase = setpoint.one_phase
        if setpoint.charging_allowed:
            limit = min(LIMIT_MAX_DA, max(LIMIT_MIN_DA, setpoint.current_ma // 100))
            # 8093 and 8094 are adjacent: one request sets limit and enable together
            await self.regs.write(REG_CHARGING_CUR_LIMIT, [limit, 1])
        else:
            await self.regs.write(REG_CHARGING_ENABLE, [0])

    async def close(self) -> None:
        await self.regs.close()


class PowerBrainMeter:
    """A Power Brain S0 meter unit (registers 8045–8069) behind `Registers`."""

    def __init__(self, regs: Registers) -> None:
        self.regs = regs
        self._model: str | None = None

    async def read(self, now_s: float) -> MeterReading:
        if self._model is None:
            self._model = model_string(await self.regs.read(REG_IDENTITY, IDENTITY_COUNT))
        volts = await self.regs.read(REG_VOLTAGES, 3)
        block = await self.regs.read(REG_METER_BLOCK, METER_BLOCK_COUNT)
        power = s32(block, 5)
        per_phase = block[0] & 1  # meter_flags bit0: the meter reports individual phases
        return MeterReading(
            currents_ma=currents_ma(block, 7) if per_phase else None,
            voltages_v=(volts[0], volts[1], volts[2]),
            power_w=max(0, power),  # -1 = not known yet (fewer than two pulses seen)
            import_wh=max(0, s64(block, 1)),
            export_wh=0,  # an S0 input counts one direction only
            model=self._model,
        )

    async def close(self) -> None:
        await self.regs.close()


# -- transports ---------------------------------------------------------------------------------


class ModbusTcpRegisters:
    """Registers of a remote unit over Modbus TCP (function 3 read, 16 write).

    One connection is kept open and re-opened after any failure; a request that is cut off
    (timeout, cancellation) drops the connection so a late answer cannot be mistaken for the
    next one.
    """

    def __init__(self, host: str, port: int, unit: int, timeout_s: float) -> None:
        self.host, self.port, self.unit = host, port, unit
        self.timeout_s = timeout_s
        self._client: AsyncModbusTcpClient | None = None

    async def _connect(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s,
                                      retries=0, reconnect_delay=0)
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as err:
            client.close()
            raise DeviceError(f"cannot connect to {self.host}:{self.port}: {err}") from None
        except BaseException:  # cancelled by the caller's timeout: leave no half-open socket
            client.close()
            raise
        if not ok:
            client.close()
            raise DeviceError(f"cannot connect to {self.host}:{self.port}")
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    async def _call(self, what: str, request: Any) -> Any:
        try:
            response = await request
        except (TimeoutError, ModbusException, OSError) as err:
            self._drop()
            raise DeviceError(f"{what}: {err or 'no answer'}") from None
        except BaseException:
            self._drop()
            raise
        if response.isError():
            code = getattr(response, "exception_code", "?")
            raise DeviceError(f"{what}: modbus exception {code}")
        return response

    async def read(self, address: int, count: int) -> list[int]:
        client = await self._connect()
        response = await self._call(
            f"read {address}", client.read_holding_registers(address, count=count,
                                                             device_id=self.unit))
        registers = list(response.registers)
        if len(registers) < count:
            raise DeviceError(f"read {address}: short answer")
        return registers

    async def write(self, address: int, values: list[int]) -> None:
        client = await self._connect()
        await self._call(f"write {address}",
                         client.write_registers(address, values, device_id=self.unit))

    async def close(self) -> None:
        self._drop()
