"""`cmd=sim_vehicle`: plug a virtual car into a simulated wallbox, change it, unplug it.

`/cnf?cmd=sim_vehicle&dev_id=E1&plugged=1&phases=3&max_current=16000&soc=40&capacity=60000
&rfid=…` (admin). Parameters left out keep the car's current value. The answer is the car's
state. The local Power Brain EVSE (`E1`, the default) is simulated hardware; `Sim-` wallboxes
join through `find_virtual_car`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import bad_request, not_found
from chargebrain.sim.vehicle import VirtualCar

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain
    from chargebrain.powerbrain import PowerBrain

LOCAL_EVSE_ID = "E1"


class CarSlot(Protocol):
    """Where a virtual car is plugged in: a simulated wallbox."""

    dev_id: str

    def get_car(self) -> VirtualCar:
        """The car (plugged or not) of this wallbox."""
        ...

    def set_car(self, car: VirtualCar, now_s: float, *, rfid_presented: bool) -> None:
        """Replace the car; `rfid_presented` when the request carried an RFID.
        May raise ValueError (nothing changed)."""
        ...


@dataclass
class LocalCarSlot:
    """The car at the built-in Power Brain EVSE."""

    powerbrain: PowerBrain
    dev_id: str = LOCAL_EVSE_ID

    def get_car(self) -> VirtualCar:
        return self.powerbrain.car

    def set_car(self, car: VirtualCar, now_s: float, *, rfid_presented: bool) -> None:
        self.powerbrain.set_car(car, now_s, rfid_presented=rfid_presented)


def find_virtual_car(app: ChargeBrain, dev_id: str | None) -> CarSlot | None:
    """The slot of the simulated wallbox `dev_id` (None or "" = the local EVSE), or None.

    Besides the built-in wallbox, every `evse_sim` device of the registry has a car."""
    if dev_id in (None, "", LOCAL_EVSE_ID):
        return LocalCarSlot(app.powerbrain)
    from chargebrain.devices.drivers.sim import SimCarSlot, SimEvse

    device = app.devices.get(dev_id) if dev_id else None
    if device is not None and isinstance(device.driver, SimEvse):
        return SimCarSlot(device.driver, device.dev_id)
    return None


def _number(req: ApiRequest, name: str) -> float | None:
    raw = req.text(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        raise bad_request(f"{name} must be a number") from None
    if not math.isfinite(value):
        raise bad_request(f"{name} must be a finite number")
    return value


def _whole(req: ApiRequest, name: str) -> int | None:
    value = _number(req, name)
    if value is None:
        return None
    if value != int(value):
        raise bad_request(f"{name} must be a whole number")
    return int(value)


def car_changes(req: ApiRequest) -> dict[str, Any]:
    """The car fields the request sets (checked for type here, for range by VirtualCar)."""
    changes: dict[str, Any] = {}
    if req.has("plugged"):
        changes["plugged"] = req.flag("plugged")
    phases = _whole(req, "phases")
    if phases is not None:
        if phases not in (1, 3):
            raise bad_request("phases must be 1 or 3")
        changes["phases"] = phases
    for name, field, lo, hi in (("max_current", "max_current_ma", 0, 80000),
                                ("capacity", "capacity_wh", 1, 1_000_000)):
        value = _whole(req, name)
        if value is not None:
            if not lo <= value <= hi:
                raise bad_request(f"{name} must be between {lo} and {hi}")
            changes[field] = value
    soc = _number(req, "soc")
    if soc is not None:
        if not 0 <= soc <= 100:
            raise bad_request("soc must be between 0 and 100")
        changes["soc_pct"] = soc
    rfid = req.text("rfid")
    if rfid is not None:
        rfid = rfid.strip()
        if len(rfid) > 30:
            raise bad_request("rfid must be at most 30 characters")
        changes["rfid"] = rfid
    return changes


async def sim_vehicle(app: ChargeBrain, req: ApiRequest) -> dict[str, Any]:
    """Plug, change or unplug the virtual car of a simulated wallbox; answer its state."""
    dev_id = req.text("dev_id")
    slot = find_virtual_car(app, dev_id.strip() if dev_id is not None else None)
    if slot is None:
        raise not_found(f"unknown device id: {dev_id}")
    changes = car_changes(req)
    try:
        car = slot.get_car().replace(**changes)
        slot.set_car(car, app.powerbrain.clock(),
                     rfid_presented=bool(changes.get("rfid")))
    except ValueError as err:
        raise bad_request(str(err)) from None
    device = app.devices.get(slot.dev_id)
    if device is not None:
        await app.cycle.read_now(device)  # the plug-in is known at once, not next cycle
    return {"dev_id": slot.dev_id, **slot.get_car().as_dict()}


COMMANDS: dict[str, Command] = {
    "sim_vehicle": Command(sim_vehicle, Access.ADMIN),
}
