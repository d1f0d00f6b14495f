"""Load the YAML scenario files of tests/core/scenarios/.

A scenario file patches a base site (`base:`, default `_base.yaml`; a base may itself name a
base) and lists one or more cycles:

    base: _base.yaml            # optional
    description: what it shows
    site: {settings: {...}, groups: [...], meters: [...], evses: [...]}   # patch on the base
    memory: {evses: {E1: {last_current_ma: 16000, running_since_s: -100}}}  # optional start
    cycles:
      - at: 0                   # now_s
        site: {...}             # optional patch applied from this cycle on
        expect:                 # per EVSE: [current_ma, reason code] or a mapping
          E1: [16000, max_current]
          E2: {current: 0, reason: rotation, paused: true, pause_reason: rotation,
               group: 1, phase: 2, unlimited: false}
        diag: {overdraft_ma: 3000}   # optional: Diagnostics fields
        write: true                  # optional

A file without `cycles` may give `at`, `expect`, `diag`, `write` at the top level.

A file with a `physics:` block is played as a closed loop (tests/core/physics.py): a car
draws a setpoint `car_delay_s` after it was written, the grid meter sees the house load plus
every car, and every cycle is checked against the limits; such cycles may set `house_ma` and
need no expectations:

    physics:
      car_delay_s: 3                # a car follows a setpoint one cycle (3 s) later
      meter_offset_s: -1.5          # the grid reading is 1.5 s older than the wallboxes'
      grid_meter: M1                # the site's grid meter (added when missing)
      house_ma: [10000, 10000, 10000]
      car_phases: {E3: 1}           # default 3: the car draws on every phase of its box

Patching: mappings merge key by key; the lists `groups`, `meters`, `evses` merge item by item on
their id (`group_id` / `dev_id`); an item with `remove: true` is dropped; other values replace.
Each cycle plans with the memory the previous cycle returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chargebrain.core.model import EvseTimers
from chargebrain.core.site import (
    EvseInput,
    GroupInput,
    MeterInput,
    MeterRole,
    PlanMemory,
    SiteInput,
    SiteSettings,
)

SCENARIO_DIR = Path(__file__).parent / "scenarios"
_LIST_KEYS = {"groups": "group_id", "meters": "dev_id", "evses": "dev_id"}
_PHASE_FIELDS = {"measured_ma", "currents_ma"}


def merge(base: Any, patch: Any) -> Any:
    """Apply `patch` on `base` (see the module docstring); inputs are not modified."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if key in _LIST_KEYS and isinstance(value, list):
                out[key] = _merge_list(out.get(key, []), value, _LIST_KEYS[key])
            else:
                out[key] = merge(out.get(key), value)
        return out
    return patch


def _merge_list(base: list[dict], patch: list[dict], key: str) -> list[dict]:
    items = {item[key]: dict(item) for item in base}
    for item in patch:
        ident = item[key]
        if item.get("remove"):
            items.pop(ident, None)
        elif ident in items:
            items[ident] = merge(items[ident], item)
        else:
            items[ident] = dict(item)
    return list(items.values())


def _read(name: str) -> dict:
    data = yaml.safe_load((SCENARIO_DIR / name).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{name}: a scenario file must be a mapping")
    return data


def resolve_site(name: str) -> dict:
    """The full site mapping of a scenario or base file, bases applied."""
    data = _read(name)
    base_name = data.get("base", None if name == "_base.yaml" else "_base.yaml")
    base = resolve_site(base_name) if base_name else {}
    return merge(base, data.get("site", {}))


def build_site(raw: dict) -> SiteInput:
    """Turn a site mapping into a `SiteInput`."""
    settings = SiteSettings(**raw.get("settings", {}))
    groups = tuple(GroupInput(**g) for g in raw.get("groups", []))
    meters = tuple(
        MeterInput(**{**_tuples(m), "role": MeterRole(m["role"])}) for m in raw.get("meters", [])
    )
    evses = tuple(EvseInput(**_tuples(e)) for e in raw.get("evses", []))
    return SiteInput(settings, groups, meters, evses, raw.get("surplus_w"))


def _tuples(item: dict) -> dict:
    return {k: (tuple(v) if k in _PHASE_FIELDS and v is not None else v)
            for k, v in item.items() if k != "remove"}


def build_memory(raw: dict | None) -> PlanMemory:
    """A `PlanMemory` from the scenario's optional `memory:` mapping."""
    raw = raw or {}
    timers = {k: EvseTimers(**v) for k, v in (raw.get("evses") or {}).items()}
    return PlanMemory(timers, raw.get("overdraft_penalty_ma", 0), raw.get("overdraft_until_s"))


@dataclass
class Cycle:
    at: float
    site: SiteInput
    expect: dict[str, Any]
    diag: dict[str, Any] = field(default_factory=dict)
    write: bool | None = None
    house_ma: tuple[int, int, int] | None = None  # physics only: the house load from now on


@dataclass
class Scenario:
    name: str
    description: str
    memory: PlanMemory
    cycles: list[Cycle]
    physics: dict[str, Any] | None = None


def load(name: str) -> Scenario:
    """Load one scenario file with every cycle's full site."""
    data = _read(name)
    site = resolve_site(name)
    raw_cycles = data.get("cycles") or [
        {k: data[k] for k in ("at", "expect", "diag", "write") if k in data}
    ]
    cycles = []
    for raw in raw_cycles:
        site = merge(site, raw.get("site", {}))
        if not raw.get("expect") and not raw.get("diag") and "physics" not in data:
            raise ValueError(f"{name}: a cycle without expectations")
        house = raw.get("house_ma")
        cycles.append(Cycle(float(raw.get("at", 0)), build_site(site), raw.get("expect", {}),
                            raw.get("diag", {}), raw.get("write"),
                            tuple(house) if house is not None else None))
    return Scenario(name, data.get("description", ""), build_memory(data.get("memory")), cycles,
                    data.get("physics"))


def scenario_names() -> list[str]:
    """Every scenario file (base files start with an underscore)."""
    return sorted(p.name for p in SCENARIO_DIR.glob("*.yaml") if not p.name.startswith("_"))
