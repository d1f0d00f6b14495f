"""The Power Brain register table: one row per register field, and its encoding.

This table is the only description of the controller's registers. The Modbus TCP server, the
`cmd=modbus` handler, `read=all`, persistence and docs/registers.md are all derived from it.

Encoding (spec §4), done by chargebrain.modbus.codec like every other Modbus value: registers
are 16 bit, big-endian; a 2-register field (`d`) is a 32-bit integer, a 4-register field (`q`)
a 64-bit integer, high word first; a string (`s`) holds two UTF-8 bytes per register, high byte
first, NUL-padded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chargebrain.modbus import codec
from chargebrain.modbus.codec import DataType, int_bounds

BASE_ADDRESS = 8000
UNIT_NAMES = ("evse", "meter1", "meter2")
METERS = frozenset({"meter1", "meter2"})
ALL_UNITS = frozenset(UNIT_NAMES)
EVSE = frozenset({"evse"})

Kind = Literal["int", "str"]
Access = Literal["r", "w", "rw"]


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """One Modbus unit of the controller: its name, default unit id and port offset."""

    name: str
    unit_id: int
    port_offset: int
    title: str


UNITS: dict[str, UnitSpec] = {
    "evse": UnitSpec("evse", 1, 0, "EVSE (charging station)"),
    "meter1": UnitSpec("meter1", 2, 1, "S0 meter 1"),
    "meter2": UnitSpec("meter2", 3, 2, "S0 meter 2"),
}


@dataclass(frozen=True, slots=True)
class Register:
    """A register field: `size` consecutive 16-bit registers starting at `address`."""

    name: str
    address: int
    size: int
    kind: Kind
    access: Access
    units: frozenset[str]
    description: str
    default: int | str | dict[str, int | str] = 0  # a dict gives the default per unit
    signed: bool = False
    allowed: tuple[tuple[int, int], ...] = ()  # inclusive ranges a write may use; () = any
    unit: str = ""  # physical unit of the value (V, W, Wh, 0.1 A, s, ms)
    persisted: bool = False  # saved to flash (the store) and restored after a restart
    boot_from: str | None = None  # a volatile register restarts from this register's value
    shared: bool = False  # one value for the whole controller, seen by every unit
    alias: bool = False  # a second name for registers inside another field (not in read=all)
    http_suffix: str | None = None  # suffix shown by read=all when it is not the natural one

    @property
    def suffix(self) -> str:
        """The suffix `read=all` shows and a typed read/write must use."""
        if self.http_suffix is not None:
            return self.http_suffix
        return natural_suffix(self.kind, self.size)

    def accepts_suffix(self, suffix: str) -> bool:
        """Does `read=ADDR<suffix>` address this field? (8004 answers to both `` and `d`.)"""
        return suffix in (self.suffix, natural_suffix(self.kind, self.size))

    @property
    def readable(self) -> bool:
        return "r" in self.access

    @property
    def writable(self) -> bool:
        return "w" in self.access

    def default_for(self, unit: str) -> int | str:
        if isinstance(self.default, dict):
            return self.default[unit]
        return self.default

    def in_range(self, value: int) -> bool:
        """Is `value` representable and allowed for a write?"""
        if not fits(value, self.size, self.signed):
            return False
        return not self.allowed or any(lo <= value <= hi for lo, hi in self.allowed)

    def range_text(self) -> str:
        """The allowed values as a short text (`60 to 630`, `0, 60 to 630`)."""
        if self.kind == "str":
            return f"up to {self.size * 2} characters"
        ranges = self.allowed or ((int_min(self.size, self.signed), int_max(self.size,
                                                                           self.signed)),)
        return ", ".join(str(lo) if lo == hi else f"{lo} to {hi}" for lo, hi in ranges)


def natural_suffix(kind: Kind, size: int) -> str:
    """`s` for strings, `d` for 32-bit and `q` for 64-bit integers, `` for 16 bit."""
    if kind == "str":
        return "s"
    return {1: "", 2: "d", 4: "q"}[size]


# -- encoding (through chargebrain.modbus.codec) ---------------------------------------------

def int_min(size: int, signed: bool) -> int:
    return int_bounds(size, signed)[0]


def int_max(size: int, signed: bool) -> int:
    return int_bounds(size, signed)[1]


def fits(value: int, size: int, signed: bool) -> bool:
    return int_min(size, signed) <= value <= int_max(size, signed)


encode_int = codec.encode_int  # `value` as `size` registers, high word first
decode_int = codec.decode_int  # the integer held by `registers`, high word first


def encode_str(text: str, size: int) -> list[int]:
    """`text` (UTF-8, no NUL) as `size` registers, high byte first, NUL-padded."""
    return codec.encode(text, DataType.STR, length=size)


def decode_str(registers: list[int]) -> str:
    """The string held by `registers`, up to the first NUL."""
    return str(codec.decode(registers, DataType.STR))


def encode(reg: Register, value: int | str) -> list[int]:
    """A field value as its registers."""
    if reg.kind == "str":
        return encode_str(str(value), reg.size)
    return encode_int(int(value), reg.size, reg.signed)


def decode(reg: Register, registers: list[int]) -> int | str:
    """A field's value from its registers."""
    if reg.kind == "str":
        return decode_str(registers)
    return decode_int(registers, reg.signed)


# -- the table ----------------------------------------------------------------------------------

CURRENT_RANGE = ((60, 630),)  # 6–63 A in 0.1 A
CURRENT_OR_OFF = ((0, 0), (60, 630))
BOOL = ((0, 1),)
VENDOR_ID = decode_int([0xCF05, 0x0000], signed=True)  # 0xcf05 in the high word
COUNTER_MAX = (1 << 63) - 1


def _r(name: str, address: int, size: int, access: Access, units: frozenset[str],
       description: str, **kw: object) -> Register:
    return Register(name, address, size, "int", access, units, description, **kw)  # type: ignore[arg-type]


def _s(name: str, address: int, size: int, units: frozenset[str], description: str,
       default: str | dict[str, int | str] = "", **kw: object) -> Register:
    return Register(name, address, size, "str", "r", units, description, default,  # type: ignore[arg-type]
                    **kw)


REGISTERS: tuple[Register, ...] = (
    # -- every unit: identification
    _r("vendor_id", 8000, 2, "r", ALL_UNITS, "Vendor id, 0xcf05 in the high word",
       default=VENDOR_ID, signed=True),
    _r("product_id", 8002, 1, "r", ALL_UNITS, "Product id", default=1),
    _r("device_id", 8003, 1, "r", ALL_UNITS, "Device id inside the product",
       default={"evse": 0x100, "meter1": 0x101, "meter2": 0x101}),
    # 2 registers (major.minor, build); read=all shows it without suffix, as the firmware does
    _r("product_version", 8004, 2, "r", ALL_UNITS,
       "Product version: high byte major, low byte minor; then the build number",
       default=0x0100_0000, http_suffix=""),
    _r("product_build", 8005, 1, "r", ALL_UNITS, "Product build number (inside 8004)",
       alias=True),
    _r("mapping_version", 8006, 1, "r", ALL_UNITS, "Version of this register mapping "
       "(major.minor bytes)", default=0x0100),
    _r("padding_1", 8007, 1, "r", ALL_UNITS, "Reserved"),
    _s("serial_no", 8008, 8, ALL_UNITS, "Serial number", default="fcf5-c46d-310c"),
    _s("name", 8016, 16, ALL_UNITS, "Product name", default="cFos Power Brain"),
    _r("slave_id", 8040, 1, "rw", ALL_UNITS, "Modbus unit id (RTU; TCP accepts any id on "
       "the unit's port)", default={"evse": 1, "meter1": 2, "meter2": 41},
       allowed=((1, 247),), persisted=True),
    # -- S0 meter block (also on the EVSE: its attached meter)
    _r("input", 8041, 1, "r", ALL_UNITS, "Reserved", default=1),
    _r("pulsesperkwh", 8042, 2, "rw", ALL_UNITS, "S0 pulses per kWh", default=1000,
       signed=True, allowed=((1, 100_000),), persisted=True),
    _r("phases", 8044, 1, "rw", ALL_UNITS, "Phases the S0 load is spread over: bit 0 L1, "
       "bit 1 L2, bit 2 L3", default=1, allowed=((1, 7),), persisted=True),
    _r("voltage_l1", 8045, 1, "rw", ALL_UNITS, "Nominal voltage L1", default=230, unit="V",
       allowed=((0, 500),), persisted=True),
    _r("voltage_l2", 8046, 1, "rw", ALL_UNITS, "Nominal voltage L2", default=230, unit="V",
       allowed=((0, 500),), persisted=True),
    _r("voltage_l3", 8047, 1, "rw", ALL_UNITS, "Nominal voltage L3", default=230, unit="V",
       allowed=((0, 500),), persisted=True),
    _r("pulses", 8050, 4, "rw", ALL_UNITS, "Pulses counted on the S0 input", signed=True,
       allowed=((0, COUNTER_MAX),), persisted=True),
    _r("timeperpulse", 8054, 2, "r", ALL_UNITS, "Time between the last two pulses (0: fewer "
       "than two pulses)", signed=True, unit="ms"),
    _r("level", 8056, 1, "r", ALL_UNITS, "S0 input level: 0 current flows, 1 it does not"),
    _r("meter_flags", 8057, 1, "r", ALL_UNITS, "bit 0: the meter measures phases "
       "individually", default={"evse": 1, "meter1": 0, "meter2": 0}),
    _r("energy", 8058, 4, "rw", METERS, "Active import", signed=True, unit="Wh",
       allowed=((0, COUNTER_MAX),), persisted=True),
    _r("energy", 8058, 4, "r", EVSE, "Active import of the attached meter", signed=True,
       unit="Wh", persisted=True),
    _r("power", 8062, 2, "r", ALL_UNITS, "Active power (S0: from the pulse interval, -1 "
       "until two pulses)", default={"evse": 0, "meter1": -1, "meter2": -1}, signed=True,
       unit="W"),
    _r("current_l1", 8064, 2, "r", ALL_UNITS, "Current L1", signed=True, unit="0.1 A"),
    _r("current_l2", 8066, 2, "r", ALL_UNITS, "Current L2", signed=True, unit="0.1 A"),
    _r("current_l3", 8068, 2, "r", ALL_UNITS, "Current L3", signed=True, unit="0.1 A"),
    _r("reset_pulses", 8070, 1, "w", ALL_UNITS, "Write 1: pulse counter to 0", allowed=BOOL),
    _r("reset_energy", 8071, 1, "w", ALL_UNITS, "Write 1: energy to 0", allowed=BOOL),
    # -- EVSE
    _r("def_fixed_current", 8080, 1, "rw", EVSE, "fixed_current after a restart (0: none)",
       unit="0.1 A", allowed=CURRENT_OR_OFF, persisted=True),
    _r("def_charg_cur_limit", 8081, 1, "rw", EVSE, "charging_cur_limit after a restart",
       default=160, unit="0.1 A", allowed=CURRENT_RANGE, persisted=True),
    _r("def_charging_enable", 8082, 1, "rw", EVSE, "charging_enable after a restart",
       default=1, allowed=BOOL, persisted=True),
    _r("fail_safe_duration", 8083, 2, "rw", EVSE, "Seconds without Modbus traffic before "
       "fail_safe_current applies; 0 = off", default=300, signed=True, unit="s",
       allowed=((0, 86400),), persisted=True),
    _r("fail_safe_current", 8085, 1, "rw", EVSE, "Current limit in fail-safe; 0 = stop "
       "charging", default=60, unit="0.1 A", allowed=CURRENT_OR_OFF, persisted=True),
    _r("disconnect_cp", 8086, 1, "rw", EVSE, "Write: seconds to switch the charge pilot "
       "off (wakes the car); read: seconds remaining", unit="s", allowed=((0, 3600),)),
    _r("relay_select", 8087, 1, "rw", EVSE, "0 = 3-phase contactor, 1 = 1-phase",
       allowed=BOOL),
    _r("relay2", 8088, 1, "rw", EVSE, "Relay 2: 0 off, 1 on", allowed=BOOL),
    _r("cable_current", 8090, 1, "r", EVSE, "Cable current from PP (0: no cable)",
       unit="0.1 A"),
    _r("fixed_current", 8091, 1, "rw", EVSE, "Overrides cable_current (0: no override)",
       unit="0.1 A", allowed=CURRENT_OR_OFF, boot_from="def_fixed_current"),
    _r("charge_pilot_state", 8092, 1, "r", EVSE, "CP state: 0 A waiting, 1 B vehicle "
       "detected, 2 C charging, 3 D ventilation, 4 E no power, 5 F error"),
    _r("charging_cur_limit", 8093, 1, "rw", EVSE, "Charging current limit", default=160,
       unit="0.1 A", allowed=CURRENT_RANGE, boot_from="def_charg_cur_limit"),
    _r("charging_enable", 8094, 1, "rw", EVSE, "Charging enabled: 0 no, 1 yes", default=1,
       allowed=BOOL, boot_from="def_charging_enable"),
    _r("charging_current", 8095, 1, "r", EVSE, "Current signalled to the car (0: none)",
       unit="0.1 A"),
    _s("last_rfid", 8096, 15, EVSE, "Last RFID seen (hex string)"),
    _r("detected_rfids", 8111, 1, "r", EVSE, "Number of RFIDs presented"),
    _r("has_meter", 8112, 1, "r", EVSE, "1: a meter is attached (8057–8068 valid)",
       default=1),
    _r("s0_inputs", 8113, 1, "r", EVSE, "bit 0/1 S0 inputs, bit 8 phase switching allowed "
       "while plugged, bit 9 bit 10 valid, bit 10 relay 2 present, bit 11 relay 2 external",
       default=0x0700),
    # -- every unit: the controller's restart counter (one value for the whole controller)
    _r("count_restart", 8120, 2, "rw", ALL_UNITS, "Number of restarts (0 on a fresh "
       "install)", signed=True, allowed=((0, (1 << 31) - 1),), persisted=True, shared=True),
)


@dataclass(frozen=True)
class UnitLayout:
    """The registers of one unit, indexed for lookups."""

    unit: str
    fields: tuple[Register, ...]  # primary fields by address (no aliases)
    starts: dict[int, Register] = field(default_factory=dict)  # address → field starting there
    owner: dict[int, Register] = field(default_factory=dict)  # address → primary field over it
    by_name: dict[str, Register] = field(default_factory=dict)
    end: int = BASE_ADDRESS  # one past the last register

    @classmethod
    def build(cls, unit: str) -> UnitLayout:
        rows = sorted((r for r in REGISTERS if unit in r.units), key=lambda r: r.address)
        primary = tuple(r for r in rows if not r.alias)
        layout = cls(unit, primary)
        for reg in rows:
            if reg.address in layout.starts:
                raise ValueError(f"{unit}: two fields start at {reg.address}")
            layout.starts[reg.address] = reg
            if reg.name in layout.by_name:
                raise ValueError(f"{unit}: register name {reg.name} twice")
            layout.by_name[reg.name] = reg
        for reg in primary:
            for addr in range(reg.address, reg.address + reg.size):
                if addr in layout.owner:
                    raise ValueError(f"{unit}: {reg.name} overlaps {layout.owner[addr].name}")
                layout.owner[addr] = reg
        object.__setattr__(layout, "end", max(r.address + r.size for r in primary))
        return layout

    def runs(self) -> list[tuple[int, int]]:
        """Contiguous (address, count) runs of valid registers (for the Modbus server)."""
        out: list[tuple[int, int]] = []
        for addr in sorted(self.owner):
            if out and out[-1][0] + out[-1][1] == addr:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((addr, 1))
        return out


LAYOUTS: dict[str, UnitLayout] = {name: UnitLayout.build(name) for name in UNIT_NAMES}
