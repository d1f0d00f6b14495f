"""What chargebrain knows about one OCPP box: its connectors' status, meter values, transaction.

Pure data and rules, no I/O: `handler.py` feeds the messages in, the driver reads them out.
Units: currents in mA per phase (the box's L1..L3), power in W, energy in Wh.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chargebrain.units import ZERO, Phases

# OCPP 1.6 ChargePointStatus → the API state scale of get_dev_info (1 A … 5 E)
STATE_OF_STATUS = {
    "Available": 1,
    "Unavailable": 1,
    "Reserved": 1,
    "Preparing": 2,
    "SuspendedEV": 2,
    "SuspendedEVSE": 2,
    "Finishing": 2,
    "Charging": 3,
    "Faulted": 5,
}

MEASURANDS = ("Current.Import", "Power.Active.Import", "Energy.Active.Import.Register")
DEFAULT_MEASURAND = "Energy.Active.Import.Register"  # OCPP 1.6: a value without measurand
_PHASES = {"L1": 0, "L2": 1, "L3": 2, "L1-N": 0, "L2-N": 1, "L3-N": 2}
_SCALE = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0, "A": 1.0}


@dataclass(slots=True)
class ConnectorState:
    """One connector as the box last described it."""

    status: str = ""  # OCPP ChargePointStatus, "" = no StatusNotification yet
    error_code: str = "NoError"
    currents_ma: Phases = ZERO
    power_w: int | None = None  # None: the box reports no power
    energy_wh: int | None = None  # Energy.Active.Import.Register / meterStart / meterStop
    transaction_id: int | None = None  # the running transaction, None = none
    id_tag: str = ""  # the tag of the running (or last) transaction

    @property
    def state(self) -> int:
        """The API state 1–5 (a box that said nothing yet counts as standby)."""
        return STATE_OF_STATUS.get(self.status, 1)

    @property
    def faulted(self) -> bool:
        return self.status == "Faulted"


def _get(item: Mapping[str, Any], snake: str, camel: str) -> Any:
    return item.get(snake, item.get(camel))


def apply_meter_values(conn: ConnectorState, meter_value: Iterable[Mapping[str, Any]]) -> None:
    """Take the measurands chargebrain uses from a MeterValues/StopTransaction payload.

    The library hands nested keys in snake_case (`sampled_value`); camelCase is accepted too.
    Values that are no finite number are skipped; a phase current without phase is L1's.
    """
    currents = list(conn.currents_ma)
    got_current = False
    for entry in meter_value:
        for sample in _get(entry, "sampled_value", "sampledValue") or ():
            measurand = sample.get("measurand") or DEFAULT_MEASURAND
            if measurand not in MEASURANDS:
                continue
            try:
                value = float(sample.get("value", ""))
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            unit = sample.get("unit") or ("A" if measurand == "Current.Import" else
                                          "W" if measurand.startswith("Power") else "Wh")
            value *= _SCALE.get(unit, 1.0)
            if measurand == "Current.Import":
                phase = _PHASES.get(sample.get("phase") or "L1")
                if phase is None:
                    continue  # N or a line-to-line value: not a phase current
                if not got_current:
                    currents, got_current = [0, 0, 0], True
                currents[phase] = max(0, round(value * 1000))
            elif measurand == "Power.Active.Import":
                if not sample.get("phase"):
                    conn.power_w = max(0, round(value))
            elif value >= 0 and not sample.get("phase"):
                conn.energy_wh = round(value)
    if got_current:
        conn.currents_ma = (currents[0], currents[1], currents[2])
