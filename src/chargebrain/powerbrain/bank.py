"""One unit's registers: raw 16-bit storage plus typed, validated access through the table.

A `RegisterBank` holds the register image of one unit (evse, meter1, meter2). Reads are slices
of the image; writes are first *planned* (checked against the table: address known, field
writable, value in range) and only then applied, so a refused write changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from chargebrain.powerbrain.registers import (
    BASE_ADDRESS,
    Register,
    UnitLayout,
    decode,
    encode,
)

# Modbus exception codes the errors map to.
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3

BAD_SIZE = "bad modbus register size"  # the seed's wording; answered as-is


class RegisterError(Exception):
    """A refused register access: `message` for HTTP, `exc_code` for Modbus TCP."""

    def __init__(self, message: str, exc_code: int = ILLEGAL_ADDRESS) -> None:
        super().__init__(message)
        self.message = message
        self.exc_code = exc_code


def unknown_register(address: int) -> RegisterError:
    return RegisterError(f"unknown modbus register: {address}", ILLEGAL_ADDRESS)


def out_of_range(reg: Register) -> RegisterError:
    return RegisterError(f"value out of range: {reg.address} {reg.name} takes "
                         f"{reg.range_text()}", ILLEGAL_VALUE)


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One `write=ADDR[sfx]` with its `value=V` (typed) or `values=[...]` (raw registers)."""

    address: int
    suffix: str = ""
    value: int | str | None = None
    values: tuple[int, ...] | None = None


class RegisterBank:
    """The register image of one unit."""

    def __init__(self, layout: UnitLayout, regs: list[int] | None = None) -> None:
        self.layout = layout
        self.unit = layout.unit
        if regs is None:
            regs = [0] * (layout.end - BASE_ADDRESS)
            for reg in layout.fields:
                if reg.readable:
                    self._put(regs, reg, reg.default_for(self.unit))
        self._regs = regs

    def copy(self) -> RegisterBank:
        return RegisterBank(self.layout, list(self._regs))

    @staticmethod
    def _put(regs: list[int], reg: Register, value: int | str) -> None:
        start = reg.address - BASE_ADDRESS
        regs[start:start + reg.size] = encode(reg, value)

    # -- typed access by name (the hardware model and the controller) ------------------------

    def get(self, name: str) -> int | str:
        reg = self.layout.by_name[name]
        start = reg.address - BASE_ADDRESS
        return decode(reg, self._regs[start:start + reg.size])

    def get_int(self, name: str) -> int:
        value = self.get(name)
        assert isinstance(value, int)
        return value

    def set(self, name: str, value: int | str) -> None:
        """Store a value (no range check: for values the hardware produces)."""
        self.store(self.layout.by_name[name], value)

    def store(self, reg: Register, value: int | str) -> None:
        if reg.readable:  # write-only registers always read as 0
            self._put(self._regs, reg, value)

    # -- reads ---------------------------------------------------------------------------------

    def read_raw(self, address: int, count: int) -> list[int]:
        """`count` consecutive raw registers from `address`; every one must exist."""
        owner = self.layout.owner
        for addr in range(address, address + count):
            if addr not in owner:
                raise unknown_register(addr)
        start = address - BASE_ADDRESS
        return self._regs[start:start + count]

    def field_at(self, address: int, suffix: str) -> Register:
        """The field a typed access `ADDR<suffix>` names."""
        reg = self.layout.starts.get(address)
        if reg is None:
            if address in self.layout.owner:  # inside a multi-register field
                raise RegisterError(BAD_SIZE)
            raise unknown_register(address)
        if not reg.accepts_suffix(suffix):
            raise RegisterError(BAD_SIZE)
        return reg

    def read_field(self, address: int, suffix: str = "") -> int | str:
        reg = self.field_at(address, suffix)
        start = reg.address - BASE_ADDRESS
        return decode(reg, self._regs[start:start + reg.size])

    def read_all(self) -> dict[str, int | str]:
        """Every field, keyed `ADDR<suffix>` in address order (write-only ones read 0)."""
        out: dict[str, int | str] = {}
        for reg in self.layout.fields:
            start = reg.address - BASE_ADDRESS
            out[f"{reg.address}{reg.suffix}"] = decode(reg, self._regs[start:start + reg.size])
        return out

    # -- writes --------------------------------------------------------------------------------

    def plan(self, op: WriteOp) -> list[tuple[Register, int | str]]:
        """Check one write against this image; return the field values it sets."""
        if op.values is not None:
            if op.suffix:
                raise RegisterError("values takes raw 16-bit registers: use write=ADDR "
                                    "without suffix", ILLEGAL_VALUE)
            return self._plan_raw(op.address, list(op.values))
        reg = self.field_at(op.address, op.suffix)
        if reg.alias or not reg.writable:
            raise RegisterError(f"register is read-only: {reg.address} {reg.name}")
        value = op.value
        if reg.kind == "str":
            text = "" if value is None else str(value)
            try:
                encode(reg, text)
            except ValueError:
                raise out_of_range(reg) from None
            return [(reg, text)]
        if not isinstance(value, int) or isinstance(value, bool) or not reg.in_range(value):
            raise out_of_range(reg)
        return [(reg, value)]

    def _plan_raw(self, address: int, words: list[int]) -> list[tuple[Register, int | str]]:
        if not words:
            raise RegisterError("values is empty", ILLEGAL_VALUE)
        owner = self.layout.owner
        touched: list[Register] = []
        for addr in range(address, address + len(words)):
            reg = owner.get(addr)
            if reg is None:
                raise unknown_register(addr)
            if not reg.writable:
                raise RegisterError(f"register is read-only: {reg.address} {reg.name}")
            if not touched or touched[-1] is not reg:
                touched.append(reg)
        for word in words:
            if not 0 <= word <= 0xFFFF:
                raise RegisterError("values must be 16-bit registers (0 to 65535)",
                                    ILLEGAL_VALUE)
        planned: list[tuple[Register, int | str]] = []
        for reg in touched:
            start = reg.address - BASE_ADDRESS
            image = self._regs[start:start + reg.size] if reg.readable else [0] * reg.size
            for i in range(reg.size):
                pos = reg.address + i - address
                if 0 <= pos < len(words):
                    image[i] = words[pos]
            value = decode(reg, image)
            if isinstance(value, int) and not reg.in_range(value):
                raise out_of_range(reg)
            planned.append((reg, value))
        return planned
