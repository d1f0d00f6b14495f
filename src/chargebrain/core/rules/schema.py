"""The two JSON shapes of a charging rule, validated (docs/charging-rules.md).

A `charging_rules` list (EVSE configuration, user, RFID card) may mix both shapes:

- the seed's **legacy rule** (`LegacyRule`): `days`, `mode` 0–5, `current`, `enabled`, `udur`,
  `time`, `dur`, `expr`, `input`, `price_level`, `solar`;
- the **condition/action rule** (`Rule`): `{"id", "enabled", "days", "solar": bool,
  "cond": {"type", "not", "undercut_s", …}, "action": {"type", "value", "factor", "var",
  "duration", "goto", "end"}}`. An object with `cond` or `action` is one of these.

`parse_rules` checks a whole list (every formula is compiled once, so a syntax error is refused
with its position) and returns the compiled `Program`s the engine runs; `RuleError` says which
rule and why. Validation is pure: nothing is stored here.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from chargebrain.core.formula import FormulaError, compile_formula

MAX_RULES = 100
MAX_FORMULA = 1024
MAX_CURRENT_MA = 1_000_000
MAX_VALUE = 1e9
INPUT_RE = re.compile(r"^([EM][1-9][0-9]{0,5}|PB)\.input([0-9]{1,2})(?:=([01]))?$", re.I)
VAR_RE = re.compile(r"^(CM|[EM][1-9][0-9]{0,5})\.([A-Za-z0-9_]{1,64})$", re.I)


class RuleError(ValueError):
    """A rule list was refused; the message names the rule (0-based index) and the field."""


def _number_or_formula(value: Any) -> float | str:
    """A number, or a formula string (checked by compiling it)."""
    if isinstance(value, bool):
        raise ValueError("must be a number or a formula")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > MAX_VALUE:
            raise ValueError("must be a finite number within ±1e9")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > MAX_FORMULA:
            raise ValueError(f"must be a number or a formula of 1-{MAX_FORMULA} characters")
        try:
            return _number_or_formula(float(text))
        except ValueError:
            pass
        try:
            compile_formula(text)
        except FormulaError as exc:
            raise ValueError(str(exc)) from None
        return text
    raise ValueError("must be a number or a formula")


def _formula_text(value: Any) -> str:
    """A formula that may be empty (legacy `expr`)."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    text = value.strip()
    if text:
        _number_or_formula(text)
    return text


NumberOrFormula = Annotated[float | str, BeforeValidator(_number_or_formula)]
Days = Annotated[int, Field(ge=0, le=127)]  # bit0 Monday … bit6 Sunday


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)


class LegacyRule(_Strict):
    """A rule in the seed's (pre-1.25) layout; see docs/charging-rules.md for every mode."""

    days: Days = 127
    mode: int = Field(0, ge=0, le=5)
    current: int = Field(0, ge=-MAX_CURRENT_MA, le=MAX_CURRENT_MA)  # mA (signed in 1 and 3)
    enabled: bool = True
    udur: int = Field(0, ge=0, le=86_400)  # undercut (stop delay), s
    time: int = Field(0, ge=0, le=1439)  # window start, minutes after midnight
    dur: int = Field(0, ge=0, le=1440)  # window length, minutes; 0 = the whole day
    expr: Annotated[str, BeforeValidator(_formula_text), Field(max_length=MAX_FORMULA)] = ""
    input: str = Field("", max_length=64)  # "M1.input1" (active) or "M1.input1=0"
    price_level: int = Field(0, ge=-10, le=10)  # 0 = no price condition
    solar: int = Field(0, ge=0, le=MAX_CURRENT_MA)  # mA per phase to start; 0 = min current

    @model_validator(mode="after")
    def _check(self) -> LegacyRule:
        if self.current < 0 and self.mode not in (1, 3):
            raise ValueError("current may be negative only in modes 1 and 3 (relative)")
        if self.input and not INPUT_RE.match(self.input):
            raise ValueError("input must look like M1.input1 or M1.input1=0")
        return self


# -- the condition/action model -------------------------------------------------------------

class _Cond(_Strict):
    not_: bool = Field(False, alias="not")
    undercut_s: float = Field(0, ge=0, le=86_400)


class TimeCond(_Cond):
    """Inside [start, end) (minutes after midnight); end < start crosses midnight,
    start == end is the whole day."""

    type: Literal["time"]
    start: int = Field(0, ge=0, le=1439)
    end: int = Field(0, ge=0, le=1440)


class TimeRangeCond(_Cond):
    """`date.dayminute` in [start, end) with start and end as formulas (e.g. `param(12)`)."""

    type: Literal["time_range"]
    start: NumberOrFormula
    end: NumberOrFormula


class ValueCond(_Cond):
    """A measured quantity ≥ `value` (mA per phase; see docs for the PV flag)."""

    type: Literal["surplus", "grid_import", "grid_export", "solar", "charging_cars",
                  "formula"]
    value: NumberOrFormula = 0.0


class InputCond(_Cond):
    type: Literal["input"]
    device: str = Field(pattern=r"^([EM][1-9][0-9]{0,5}|PB)$")
    input: int = Field(1, ge=0, le=99)


class AlwaysCond(_Cond):
    type: Literal["always"]


Condition = Annotated[TimeCond | TimeRangeCond | ValueCond | InputCond | AlwaysCond,
                      Field(discriminator="type")]


class Action(_Strict):
    """What a rule does when its condition holds (docs/charging-rules.md, "Actions")."""

    type: Literal["set", "surplus", "solar", "grid_import", "grid_export", "set_var",
                  "trigger_var", "retrigger_var", "and", "or", "goto", "param", "end"]
    value: NumberOrFormula | None = None
    factor: NumberOrFormula = 1.0
    var: str = ""
    duration: NumberOrFormula = 0.0
    goto: int = Field(0, ge=0, le=1_000_000)
    end: bool = False

    @model_validator(mode="after")
    def _check(self) -> Action:
        if self.type in ("set", "set_var", "param") and self.value is None:
            raise ValueError(f"action {self.type!r} needs a value")
        if self.type in ("set_var", "trigger_var", "retrigger_var"):
            if not VAR_RE.match(self.var):
                raise ValueError("var must look like CM.name or E1.name")
        elif self.var:
            raise ValueError(f"action {self.type!r} takes no var")
        if self.type == "goto" and not self.goto:
            raise ValueError("action 'goto' needs the target rule id in goto")
        return self


class Rule(_Strict):
    """A condition/action rule (`solar`: the PV-surplus flag)."""

    id: int = Field(0, ge=0, le=1_000_000)
    enabled: bool = True
    days: Days = 127
    solar: bool = False
    cond: Condition = Field(default_factory=lambda: AlwaysCond(type="always"))
    action: Action

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.action.type == "param" and not self.id:
            raise ValueError("a parameter rule needs an id (read as param(id))")
        return self


def _shape(value: Any) -> str:
    if isinstance(value, dict) and ("cond" in value or "action" in value):
        return "rule"
    if isinstance(value, BaseModel):
        return "rule" if isinstance(value, Rule) else "legacy"
    return "legacy"


AnyRule = Annotated[Annotated[Rule, Tag("rule")] | Annotated[LegacyRule, Tag("legacy")],
                    Discriminator(_shape)]
_LIST = TypeAdapter(list[AnyRule])


def validate_rules(raw: Any) -> list[Rule | LegacyRule]:
    """Check a `charging_rules` list; RuleError with the first problem (nothing is kept)."""
    if not isinstance(raw, list):
        raise RuleError("charging_rules must be a list of rule objects")
    if len(raw) > MAX_RULES:
        raise RuleError(f"charging_rules may hold at most {MAX_RULES} rules")
    try:
        return _LIST.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        message = str(err["msg"]).removeprefix("Value error, ")
        raise RuleError(f"charging_rules.{error_location(err['loc'])}: {message}") from None


_COND_TYPES = {"time", "time_range", "surplus", "grid_import", "grid_export", "solar",
               "charging_cars", "formula", "input", "always"}


def error_location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location without the union tags it adds (`0.legacy.days` → `0.days`,
    `cond.time.start` → `cond.start`)."""
    out: list[str] = []
    for i, part in enumerate(loc):
        before = loc[i - 1] if i else None
        if isinstance(before, int) and part in ("rule", "legacy"):
            continue
        if before == "cond" and part in _COND_TYPES:
            continue
        out.append(str(part))
    return ".".join(out)


def rules_to_json(rules: list[Rule | LegacyRule]) -> list[dict[str, Any]]:
    """The stored / shown form of validated rules (aliases such as `not` restored)."""
    return [r.model_dump(by_alias=True, exclude_defaults=False) for r in rules]
