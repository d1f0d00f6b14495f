"""Meter definitions: the original's JSON format (feature-inventory B.6.1), parsed and validated.

A definition file describes how to read one kind of meter: `rtype` 0 (Modbus: registers,
types, word order, resolution) or 1 (HTTP/JSON: URLs, a query in the JSON answer, or a regex).
The text is JSON with two relaxations the original allows: `//` (and `/* */`) comments and
`0x` hexadecimal numbers. `load_definition` checks everything the drivers rely on and raises
`DefinitionError` naming the file and the variable, so a bad file is refused as a whole and
nothing else is disturbed.

Values are turned into the target units by `resolution` (a multiplier; negative inverts):
V, mA, W, Wh. Types map onto the one register codec (chargebrain.modbus.codec):
int16 s16, uint16 u16, int32 s32, uint32 u32, int64 s64, uint64 u64, float f32, double f64,
string str. `order` is the word order (`hl` most significant register first, `lh` the other
way round), as in every example of the original.

Shipped definitions live in `meter_defs/` beside this module, one `<dev_type>.json` each; a
user's file of the same name in the data directory's `meter_defs/` overrides it
(`DefinitionCatalog`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from chargebrain.core.formula import Formula, FormulaError, compile_formula
from chargebrain.devices import types
from chargebrain.devices.json_query import QueryError, parse_query
from chargebrain.modbus.batch import MAX_READ_REGISTERS
from chargebrain.modbus.codec import DataType, WordOrder, register_count

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).with_name("meter_defs")
RTYPE_MODBUS, RTYPE_HTTP = 0, 1
MAX_VARIABLES = 200
TYPES = {"int16": DataType.S16, "uint16": DataType.U16, "int32": DataType.S32,
         "uint32": DataType.U32, "int64": DataType.S64, "uint64": DataType.U64,
         "float": DataType.F32, "double": DataType.F64, "string": DataType.STR}
IDENTITY = ("type_designation", "version", "firmware_version", "serial")
GLOBAL_KEYS = {"rtype", "mtype", "rtu", "tcp", "modbus_read", "modbus_read_max_registers",
               "modbus_allow_gaps", "upd_delay", "manufacturer", "delay_accumulated",
               "ui_addr", "reserved", "inputs", "outputs", "resets", "name"}
VARIABLE_KEYS = {"fixed", "expr", "type", "resolution", "once", "address", "query", "order",
                 "length", "regex"}
_NAME = re.compile(r"^(CM\.|\*)?[A-Za-z0-9_]{1,64}$")
_DEV_TYPE = re.compile(r"^meter_[a-z0-9_]{1,60}$")


class DefinitionError(ValueError):
    """A definition that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Variable:
    """One value a meter provides: a register (Modbus), a URL + query (HTTP), or a constant."""

    name: str
    fixed: str | None = None
    expr: str | None = None
    kind: DataType = DataType.F32
    resolution: float = 1.0
    once: bool = False
    address: int | str | None = None  # register (Modbus) or URL (HTTP; "" = device address)
    query: str | None = None
    order: WordOrder = WordOrder.HIGH_FIRST
    length: int | None = None  # registers of a string
    regex: str | None = None
    formula: Formula | None = field(default=None, compare=False, repr=False)  # of `expr`

    @property
    def registers(self) -> int:
        """How many registers a Modbus variable spans."""
        return register_count(self.kind, self.length if self.kind is DataType.STR else None)


@dataclass(frozen=True, slots=True)
class MeterDefinition:
    """A validated definition. `variables` keeps the file's order."""

    name: str
    rtype: int
    mtype: int = 1
    manufacturer: str = ""
    modbus_read: int = 3
    max_registers: int = MAX_READ_REGISTERS
    allow_gaps: bool = False
    upd_delay_s: float = 0.0
    reserved: frozenset[int] = frozenset()
    variables: tuple[Variable, ...] = ()
    label: str = ""
    # the `expr` variables in the order they are computed: each after those it uses
    computed: tuple[Variable, ...] = ()
    _by_name: dict[str, Variable] = field(default_factory=dict, compare=False, repr=False)

    def variable(self, name: str) -> Variable | None:
        return self._by_name.get(name)


# -- the tolerant JSON --------------------------------------------------------------------------


def relaxed_json(text: str) -> Any:
    """JSON with `//` and `/* */` comments and `0x` numbers, as the original accepts.

    Comments become spaces (line numbers in error messages stay right); a hex number outside a
    string becomes its decimal value."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            end = i + 1
            while end < n and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i:end + 1])
            i = end + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise json.JSONDecodeError("unterminated comment", text, i)
            out.append("\n" * text.count("\n", i, end))
            i = end + 2
        elif ch == "0" and text[i + 1:i + 2] in ("x", "X") and (
                i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "._")):
            m = re.match(r"0[xX][0-9a-fA-F]+", text[i:])
            if m is None:
                raise json.JSONDecodeError("bad hex number", text, i)
            out.append(str(int(m.group(0), 16)))
            i += m.end()
        else:
            out.append(ch)
            i += 1
    return json.loads("".join(out))


# -- validation ---------------------------------------------------------------------------------


def load_definition(text: str, name: str) -> MeterDefinition:
    """Parse and validate the definition `name` (its dev_type, e.g. `meter_sdm630`)."""
    try:
        raw = relaxed_json(text)
    except json.JSONDecodeError as err:
        raise DefinitionError(f"{name}: not valid JSON (line {err.lineno}: {err.msg})") from None
    try:
        return _definition(raw, name)
    except DefinitionError as err:
        raise DefinitionError(f"{name}: {err}") from None


def _definition(raw: Any, name: str) -> MeterDefinition:
    if not isinstance(raw, dict):
        raise DefinitionError("the file must hold one JSON object")
    rtype = _int(raw, "rtype", RTYPE_MODBUS, 0, 2)
    if rtype == 2:
        raise DefinitionError("rtype 2 (MQTT) is not supported yet")
    modbus_read = _int(raw, "modbus_read", 3, 3, 4)
    max_registers = _int(raw, "modbus_read_max_registers", MAX_READ_REGISTERS, 1,
                         MAX_READ_REGISTERS)
    reserved = raw.get("reserved", [])
    if not isinstance(reserved, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in reserved):
        raise DefinitionError("reserved must be a list of whole numbers")
    variables = []
    for key, value in raw.items():
        if key in GLOBAL_KEYS:
            continue
        if not isinstance(value, dict):
            raise DefinitionError(f"unknown setting {key} (a variable must be an object)")
        variables.append(_variable(key, value, rtype))
    if len(variables) > MAX_VARIABLES:
        raise DefinitionError(f"at most {MAX_VARIABLES} variables")
    if not variables:
        raise DefinitionError("defines no variables")
    if rtype == RTYPE_MODBUS:
        _check_overlaps(variables)
    computed = _computation_order(variables)
    definition = MeterDefinition(
        name=name, rtype=rtype, mtype=_int(raw, "mtype", 1, 0, 4),
        manufacturer=_text(raw, "manufacturer"), modbus_read=modbus_read,
        max_registers=max_registers, allow_gaps=_bool(raw, "modbus_allow_gaps", False),
        upd_delay_s=_int(raw, "upd_delay", 0, 0, 3_600_000) / 1000,
        reserved=frozenset(reserved), variables=tuple(variables),
        label=_text(raw, "name"), computed=computed)
    definition._by_name.update((v.name, v) for v in variables)
    return definition


def _variable(name: str, raw: dict[str, Any], rtype: int) -> Variable:
    where = f"variable {name}"
    if not _NAME.match(name):
        raise DefinitionError(f"{where}: names are letters, digits and _ "
                              "(optionally after CM. or *)")
    unknown = set(raw) - VARIABLE_KEYS
    if unknown:
        raise DefinitionError(f"{where}: unknown property {sorted(unknown)[0]}")
    sources = [k for k in ("fixed", "expr", "address") if k in raw]
    if rtype == RTYPE_HTTP and not sources and "query" in raw:
        sources = ["address"]  # an HTTP variable without address reads the device's URL
    if len(sources) != 1:
        raise DefinitionError(f"{where}: needs exactly one of fixed, expr or address")
    if "fixed" in raw:
        if not isinstance(raw["fixed"], (str, int, float)) or isinstance(raw["fixed"], bool):
            raise DefinitionError(f"{where}: fixed must be a string or a number")
        return Variable(name, fixed=str(raw["fixed"]))
    if "expr" in raw:
        return _expr_variable(name, raw, where)
    type_name = raw.get("type", "float")
    if type_name not in TYPES:
        raise DefinitionError(f"{where}: type must be one of {', '.join(TYPES)}")
    kind = TYPES[type_name]
    resolution = raw.get("resolution", 1)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) \
            or not math.isfinite(resolution) or resolution == 0:
        raise DefinitionError(f"{where}: resolution must be a number other than 0")
    once = raw.get("once", name in IDENTITY)
    if not isinstance(once, bool):
        raise DefinitionError(f"{where}: once must be true or false")
    order = raw.get("order", "hl")
    if order not in ("hl", "lh"):
        raise DefinitionError(f"{where}: order must be hl or lh")
    length = raw.get("length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)
                               or not 1 <= length <= MAX_READ_REGISTERS):
        raise DefinitionError(f"{where}: length must be 1 to {MAX_READ_REGISTERS}")
    if kind is DataType.STR and length is None and rtype == RTYPE_MODBUS:
        raise DefinitionError(f"{where}: a string needs its length in registers")
    common: dict[str, Any] = dict(kind=kind, resolution=float(resolution), once=once,
                                  order=WordOrder(order), length=length)
    if rtype == RTYPE_MODBUS:
        address = raw["address"]
        if isinstance(address, bool) or not isinstance(address, int) \
                or not 0 <= address <= 0xFFFF:
            raise DefinitionError(f"{where}: address must be a register number 0 to 65535")
        count = register_count(kind, length if kind is DataType.STR else None)
        if address + count > 0x10000:
            raise DefinitionError(f"{where}: registers {address}+{count} end past 65535")
        return Variable(name, address=address, **common)
    address = raw.get("address", "")
    if not isinstance(address, str) or len(address) > 2048:
        raise DefinitionError(f"{where}: address must be a URL or a path")
    query, regex = raw.get("query"), raw.get("regex")
    if query is not None:
        if not isinstance(query, str):
            raise DefinitionError(f"{where}: query must be a string")
        try:
            parse_query(query)
        except QueryError as err:
            raise DefinitionError(f"{where}: query {err}") from None
    if regex is not None:
        try:
            re.compile(regex)
        except (re.error, TypeError) as err:
            raise DefinitionError(f"{where}: regex {err}") from None
    if query is None and regex is None:
        raise DefinitionError(f"{where}: an HTTP variable needs a query or a regex")
    return Variable(name, address=address, query=query, regex=regex, **common)


def _expr_variable(name: str, raw: dict[str, Any], where: str) -> Variable:
    """A variable computed from others: `expr` is a formula (core.formula) over the
    definition's variable names, e.g. `current_l1 * voltage_l1 / 1000`; `resolution` scales
    the result like a read value's."""
    unknown = set(raw) - {"expr", "resolution"}
    if unknown:
        raise DefinitionError(f"{where}: {sorted(unknown)[0]} does not apply to an expr "
                              "variable")
    text = raw["expr"]
    if not isinstance(text, str) or not text.strip():
        raise DefinitionError(f"{where}: expr must be a formula (a string)")
    try:
        formula = compile_formula(text)
    except FormulaError as err:
        raise DefinitionError(f"{where}: expr {text!r}: {err}") from None
    resolution = raw.get("resolution", 1)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) \
            or not math.isfinite(resolution) or resolution == 0:
        raise DefinitionError(f"{where}: resolution must be a number other than 0")
    return Variable(name, expr=text, formula=formula, resolution=float(resolution))


def _computation_order(variables: list[Variable]) -> tuple[Variable, ...]:
    """The `expr` variables, each after the ones it uses; DefinitionError for a name that is
    no variable of the definition, or for variables that use each other in a circle."""
    by_name = {v.name.lower(): v for v in variables}
    computed = {v.name.lower(): v for v in variables if v.formula is not None}
    for variable in computed.values():
        assert variable.formula is not None
        for used in sorted(variable.formula.names):
            if used not in by_name:
                raise DefinitionError(f"variable {variable.name}: expr uses {used}, which is "
                                      "no variable of this definition")
            if by_name[used].kind is DataType.STR and by_name[used].formula is None \
                    and by_name[used].fixed is None:
                raise DefinitionError(f"variable {variable.name}: expr uses {used}, a string")
    order: list[Variable] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            circle = [*path[path.index(key):], key]
            raise DefinitionError("expr variables use each other in a circle: "
                                  + " → ".join(computed[k].name for k in circle))
        state[key] = 1
        formula = computed[key].formula
        assert formula is not None
        for used in sorted(formula.names):
            if used in computed:
                visit(used, [*path, key])
        state[key] = 2
        order.append(computed[key])

    for key in computed:
        visit(key, [])
    return tuple(order)


def _check_overlaps(variables: list[Variable]) -> None:
    spans = sorted((v.address, v.address + v.registers, v.name) for v in variables
                   if isinstance(v.address, int))
    for (_, end, first), (start, _, second) in pairwise(spans):
        if start < end:
            raise DefinitionError(f"variables {first} and {second} share registers")


def _int(raw: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise DefinitionError(f"{key} must be a whole number from {lo} to {hi}")
    return value


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise DefinitionError(f"{key} must be true or false")
    return value


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or len(value) > 256:
        raise DefinitionError(f"{key} must be a string of at most 256 characters")
    return value


# -- the catalog --------------------------------------------------------------------------------


@dataclass
class DefinitionCatalog:
    """The definitions by dev_type: shipped ones, overridden by a user's file of the same name.

    A user file that does not validate is left out and its error kept in `errors` (the shipped
    definition of that name, if any, stays in use)."""

    user_dir: Path | None = None
    shipped_dir: Path = SHIPPED_DIR
    definitions: dict[str, MeterDefinition] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def load(self) -> DefinitionCatalog:
        self.definitions.clear()
        self.errors.clear()
        for folder in (self.shipped_dir, self.user_dir):
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                name = path.stem
                if not _DEV_TYPE.match(name):
                    self.errors[name] = f"{path.name}: file names are meter_<name>.json"
                    continue
                try:
                    self.definitions[name] = load_definition(
                        path.read_text(encoding="utf-8"), name)
                except (DefinitionError, OSError, UnicodeDecodeError) as err:
                    self.errors[name] = str(err)
        return self

    def get(self, dev_type: str) -> MeterDefinition | None:
        return self.definitions.get(dev_type)


_ACTIVE: DefinitionCatalog | None = None


def active_catalog() -> DefinitionCatalog:
    """The definitions drivers are built from: the shipped ones until `install_catalog`."""
    global _ACTIVE
    if _ACTIVE is None:
        _ACTIVE = DefinitionCatalog().load()
    return _ACTIVE


def install_catalog(user_dir: Path | None) -> DefinitionCatalog:
    """Load the shipped definitions and the user's (`user_dir`), make them the active ones and
    register every new dev_type (so it shows in get_dev_types and can be configured)."""
    global _ACTIVE
    catalog = DefinitionCatalog(user_dir=user_dir).load()
    for name, definition in catalog.definitions.items():
        family = types.Family.MODBUS_DEF if definition.rtype == RTYPE_MODBUS \
            else types.Family.HTTP_DEF
        types.register(types.DevType(name, definition.label or name, types.Kind.METER, family))
    for error in catalog.errors.values():
        log.warning("meter definition left out: %s", error)
    _ACTIVE = catalog
    return catalog

