"""Device configuration: one pydantic model per family, defaults per type, and validation.

A configuration is what `get_devices` returns and `set_params` / `set_device` accept: a flat
JSON object with `dev_id`, `dev_type` and the fields below. Unknown keys are refused, numbers
written as whole floats (`16000.0`) are accepted, and every number has a range, so a stored
configuration is always one the drivers and the control cycle can use.

Cross-device checks (does the attached meter exist, is the group an `evse_group`, no group
cycles) need every device and live in `index.py`. `soft_meter` is a runtime counter: it is
shown and set through the configuration, but stored apart from it (see store.py).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from chargebrain.core.formula import FormulaError, compile_formula
from chargebrain.core.rules.schema import AnyRule, error_location
from chargebrain.devices import types
from chargebrain.devices.types import Family, Kind
from chargebrain.modbus import address as modbus_address
from chargebrain.modbus.address import AddressError, AnyEndpoint, Endpoint
from chargebrain.mqtt.url import BrokerUrlError, is_broker_url, parse_broker_url

MAX_TEXT = 256
MAX_FORMULA = 1024
MAX_CURRENT_MA = 1_000_000  # 1000 A: room for groups and cascaded managers, refuses nonsense
MAX_GROUP = 999_999
MAX_ENERGY_WH = 10**12
DEV_ID_RE = re.compile(r"^[EM][1-9][0-9]{0,5}$")
OCPP_BOX_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
LOCAL_EVSE_ADDRESS = "evse"
LOCAL_METER_ADDRESSES = ("meter1", "meter2")
EVSE_MIN_CURRENT_MA = 6000  # IEC 61851: no EV charges below 6 A


class ConfigError(ValueError):
    """A configuration was refused; the message says which field and why."""


def _int_or_formula(value: Any) -> int | str:
    """An integer (mA), or a formula string that the formula engine evaluates each cycle."""
    if isinstance(value, bool):
        raise ValueError("must be a number or a formula")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError("must be a whole number or a formula")
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            if not text or len(text) > MAX_FORMULA:
                raise ValueError("must be a number or a formula") from None
            check_formula(value)  # positions count in the text as given
            return text
        return _int_or_formula(number)
    raise ValueError("must be a number or a formula")


def check_formula(text: str) -> str:
    """A formula that compiles (core.formula), else ValueError with its position."""
    try:
        compile_formula(text)
    except FormulaError as err:
        raise ValueError(str(err)) from None
    return text


def _formula_or_empty(value: Any) -> str:
    """An expression meter field: "" (not computed) or a formula that compiles."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = repr(value)
    if not isinstance(value, str):
        raise ValueError("must be a formula string")
    if not value.strip():
        return ""
    check_formula(value)  # positions count in the text as given
    return value.strip()


def _user_ids(value: Any) -> Any:
    """User ids are strings; clients sometimes send the numeric ones as numbers."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


CurrentOrFormula = Annotated[int | str, BeforeValidator(_int_or_formula)]
FormulaText = Annotated[str, BeforeValidator(_formula_or_empty)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Flag = Annotated[int, Field(ge=0, le=1)]
PhaseMask = Annotated[int, Field(ge=0, le=7)]
Rotation = Literal[0, 120, 240]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=False)


class CommonConfig(_Strict):
    """Fields every device has."""

    dev_id: str
    dev_type: str
    device_enabled: Flag = 1
    name: Text = ""
    desc: Text = ""
    number: int = Field(0, ge=0, le=1_000_000)
    address: Text = ""
    id: int = Field(1, ge=0, le=255)  # Modbus unit id / OCPP connector
    used_phases: PhaseMask = 0  # 0 = determine; bit0 L1, bit1 L2, bit2 L3
    com_timeout_ms: int = Field(3000, ge=100, le=600_000)  # read timeout; push staleness
    mqtt_publish: bool = False  # publish get_dev_info's entry on cfos_mqtt/get/<dev_id>

    @model_validator(mode="after")
    def _check_address(self) -> CommonConfig:
        check_address(self.dev_type, self.address)
        return self


class EvseConfig(CommonConfig):
    """A wallbox (local or remote Power Brain, HTTP input, simulated)."""

    label: Text = ""
    min_charging_cur: int = Field(EVSE_MIN_CURRENT_MA, ge=EVSE_MIN_CURRENT_MA, le=MAX_CURRENT_MA)
    max_charging_cur: CurrentOrFormula = 16000  # mA per phase, or a formula
    prio: int = Field(1, ge=0, le=1000)
    group: int = Field(0, ge=0, le=MAX_GROUP)
    phase_rotation: Rotation = 0
    attach: Text = ""  # dev_id of an attached (EV consumption) meter
    users: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                     BeforeValidator(_user_ids), Field(max_length=1000)] = []
    fixed_rfid: str = Field("", max_length=64)
    # legacy and condition/action rules (core.rules.schema, docs/charging-rules.md)
    charging_rules: list[AnyRule] = Field(default_factory=list, max_length=100)
    battery_save_threshold: int = Field(0, ge=0, le=MAX_CURRENT_MA)  # mA, 0 = off
    enable_snooze: bool = False
    enable_wakeup: bool = False
    soft_meter: int = Field(0, ge=0, le=MAX_ENERGY_WH)  # Wh, EVSEs without meter; see store.py
    ocpp_gateway_client_id: str = Field("", max_length=64)
    accept_unauthenticated: bool = False  # set_ajax_evse without admin credentials

    @model_validator(mode="after")
    def _check_currents(self) -> EvseConfig:
        if isinstance(self.max_charging_cur, int):
            if not EVSE_MIN_CURRENT_MA <= self.max_charging_cur <= MAX_CURRENT_MA:
                raise ValueError(f"max_charging_cur must be between {EVSE_MIN_CURRENT_MA} and "
                                 f"{MAX_CURRENT_MA} mA")
            if self.max_charging_cur < self.min_charging_cur:
                raise ValueError("max_charging_cur must not be below min_charging_cur")
        if self.attach and not (DEV_ID_RE.match(self.attach) and self.attach[0] == "M"):
            raise ValueError("attach must be the dev_id of a meter (M<n>) or empty")
        return self


class CmConfig(EvseConfig):
    """A cascaded charging manager (`evse_cm`): `address` http://host:port, the slave's admin
    `password` (stored, never shown back: get_devices leaves it out)."""

    password: str = Field("", max_length=MAX_TEXT)


class GroupConfig(CommonConfig):
    """A charging group: E<n> is group n; `group` is its parent (0 = the site)."""

    max_charging_cur: CurrentOrFormula = 32000  # per-phase limit of the group, mA or formula
    group: int = Field(0, ge=0, le=MAX_GROUP)

    @model_validator(mode="after")
    def _check_limit(self) -> GroupConfig:
        if isinstance(self.max_charging_cur, int) and not (
                0 <= self.max_charging_cur <= MAX_CURRENT_MA):
            raise ValueError(f"max_charging_cur must be between 0 and {MAX_CURRENT_MA} mA")
        return self


class MeterConfig(CommonConfig):
    """A meter (S0, HTTP input, virtual, simulated)."""

    role: int = Field(0, ge=0, le=6)  # 0 display … 6 storage (all), see docs/api.md
    factor: float = Field(1.0, ge=-10.0, le=10.0)  # CT ratio; negative inverts
    invert: bool = False
    is_va: bool = False
    phases: PhaseMask = 0  # phases the meter measures; 0 = all it reports
    phase_rotation: Rotation = 0
    group: int = Field(0, ge=0, le=MAX_GROUP)  # the group this meter measures; 0 = site
    accept_unauthenticated: bool = False  # set_ajax_meter without admin credentials

    @model_validator(mode="after")
    def _check_factor(self) -> MeterConfig:
        if self.factor == 0:
            raise ValueError("factor must not be 0")
        return self


class SimMeterConfig(MeterConfig):
    """A simulated meter: a constant load (positive) or generation (negative)."""

    sim_power_w: int = Field(0, ge=-10_000_000, le=10_000_000)


class ExpressionMeterConfig(MeterConfig):
    """An expression meter (`meter_expression`): every field a formula, "" = not computed
    (devices/drivers/expression.py; docs/formulas.md). Bare names are the meter's own previous
    values, `dt` the seconds since its last computation."""

    expr_current_l1: FormulaText = ""  # mA; L2/L3 reuse it when they are empty
    expr_current_l2: FormulaText = ""
    expr_current_l3: FormulaText = ""
    expr_power_w: FormulaText = ""  # W; empty: from the currents and the system voltage
    expr_import_wh: FormulaText = ""  # Wh; empty: the power integrated over time
    expr_export_wh: FormulaText = ""
    expr_soc: FormulaText = ""  # %; empty: no state of charge


DeviceConfig = EvseConfig | GroupConfig | MeterConfig
SECRET_FIELDS = ("password",)  # stored, never shown back (get_devices, get_dev_info)


def model_for(dev_type: str) -> type[CommonConfig]:
    """The configuration model of a (supported) device type."""
    info = types.get(dev_type)
    if info is None:
        raise ConfigError(f"unknown device type {dev_type}")
    if not info.supported:
        raise ConfigError(f"device type {dev_type} is not supported yet")
    if info.family is Family.GROUP:
        return GroupConfig
    if info.family is Family.CM:
        return CmConfig
    if info.kind is Kind.EVSE:
        return EvseConfig
    if info.family is Family.SIM:
        return SimMeterConfig
    if info.family is Family.EXPRESSION:
        return ExpressionMeterConfig
    return MeterConfig


def defaults_for(dev_type: str, dev_id: str) -> dict[str, Any]:
    """Type-specific defaults that differ from the model defaults (used when creating)."""
    n = int(dev_id[1:])
    info = types.get(dev_type)
    out: dict[str, Any] = {"number": n}
    if dev_type == "evse_powerbrain":
        out.update(address=LOCAL_EVSE_ADDRESS, id=1, name="Wallbox", desc="Power Brain Wallbox")
    elif dev_type == "meter_powerbrain":
        out.update(address="meter1", id=2, name="S0 Zähler 1",
                   desc="Power Brain, S0 Zähler 1")
    elif dev_type == "evse_group":
        out.update(name=f"Gruppe {n}", id=0)
    elif dev_type == "evse_ocpp":
        out.update(name="OCPP Wallbox", id=1, address=dev_id)  # until the ChargeBox ID is set
    elif info is not None and info.family is Family.AJAX:
        out.update(name="HTTP Input", com_timeout_ms=30000, id=0)
    elif info is not None and info.family is Family.SIM:
        out.update(name="Sim-Wallbox" if info.kind is Kind.EVSE else "Sim-Meter", id=0)
    elif info is not None and info.family in (Family.VIRTUAL, Family.EXPRESSION):
        out.update(name=info.label, id=0)
    elif info is not None and info.family is Family.MODBUS_DEF:
        out.update(name=info.label, id=1)
    elif info is not None and info.family is Family.HTTP_DEF:
        out.update(name=info.label, id=0)
    elif info is not None and info.family is Family.CM:
        out.update(name=info.label, id=0, max_charging_cur=32000)
    return out


def check_address(dev_type: str, address: str) -> None:
    """Power Brain devices need `evse`/`meter1`/`meter2` (built in) or `host:port` (remote);
    Modbus meters `host:port` or a serial port (`/dev/ttyUSB0,9600,8N1`, RTU), HTTP meters a
    URL, an OCPP wallbox its ChargeBox ID."""
    if dev_type == "evse_powerbrain" and address != LOCAL_EVSE_ADDRESS:
        parse_host_port(address, "evse")
    elif dev_type == "meter_powerbrain" and address not in LOCAL_METER_ADDRESSES:
        parse_host_port(address, "meter1, meter2")
    elif dev_type == "evse_ocpp" and not OCPP_BOX_ID_RE.match(address):
        raise ValueError("address must be the wallbox's ChargeBox ID (1 to 64 letters, digits"
                         " or . _ : -)")
    elif not address:
        return  # a defined meter may be created first and given its address later
    elif (info := types.get(dev_type)) is not None and info.family is Family.MODBUS_DEF:
        parse_meter_address(address)
    elif info is not None and info.family in (Family.HTTP_DEF, Family.CM):
        check_http_address(address)
    elif info is not None and info.family is Family.AJAX and is_broker_url(address):
        try:  # pushes over MQTT from this broker (chargebrain.mqtt)
            parse_broker_url(address)
        except BrokerUrlError as err:
            raise ValueError(f"address: {err}".replace("mqtt_url", "broker URL")) from None


def shown_address(address: str) -> str:
    """An address as get_devices / get_dev_info show it: a broker URL's password is `***`."""
    if not is_broker_url(address):
        return address
    scheme, _, rest = address.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return address
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def check_http_address(address: str) -> None:
    """An HTTP meter's address: `http://host[:port][/path]` (or https)."""
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", address):
        raise ValueError("address must be http://host[:port][/path]")


def parse_host_port(address: str, local: str) -> Endpoint:
    """`host:port` of a remote unit (chargebrain.modbus.address), with this field's messages."""
    try:
        return modbus_address.parse_host_port(address)
    except AddressError as err:
        if err.problem == "port":
            raise ValueError("address port must be between 1 and 65535") from None
        raise ValueError(f"address must be {local} or host:port" if local
                         else "address must be host:port") from None


def parse_meter_address(address: str) -> AnyEndpoint:
    """A Modbus meter's address: `host:port` (TCP) or a serial port with its line settings."""
    if modbus_address.is_serial(address):
        try:
            return modbus_address.parse_serial(address)
        except AddressError as err:
            raise ValueError(f"address: {err}") from None
    try:
        return modbus_address.parse_host_port(address)
    except AddressError as err:
        if err.problem == "port":
            raise ValueError("address port must be between 1 and 65535") from None
        raise ValueError("address must be host:port or a serial port like "
                         "/dev/ttyUSB0,9600,8N1") from None


def validate_config(raw: dict[str, Any]) -> DeviceConfig:
    """Validate a complete configuration object (dev_id and dev_type included)."""
    dev_type = raw.get("dev_type")
    if not isinstance(dev_type, str):
        raise ConfigError("dev_type must be a string")
    model = model_for(dev_type)
    try:
        return model.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as err:
        raise ConfigError(describe(err)) from None


def describe(err: ValidationError) -> str:
    """One clear sentence for the first problem of a pydantic error."""
    first = err.errors(include_url=False)[0]
    loc = error_location(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"unknown device field {loc}"
    if kind == "missing":
        return f"missing device field {loc}"
    message = str(first["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    elif message.startswith("Input should be"):
        message = "must be" + message[len("Input should be"):]
    return f"{loc}: {message}" if loc else message


def as_dict(config: CommonConfig) -> dict[str, Any]:
    """The JSON form of a configuration (what get_devices returns and the store keeps)."""
    return config.model_dump(mode="json")
