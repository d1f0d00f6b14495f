"""Soak: 100 simulated OCPP charge points connected at once to one chargebrain, one process.

    .venv/bin/python bench/soak_ocpp.py [--boxes 100] [--minutes 3] [--cycle-ms 3000] [--json]

chargebrain runs in-process (its real control cycle, HTTP and OCPP servers on loopback ports);
each box is the `ocpp` library's client-side ChargePoint (`chargebrain.sim.ocpp_box.SimBox`)
over its own WebSocket, in the same event loop. Every box boots, starts a transaction and sends
MeterValues every 10 s: its car draws what the box's profile allows (at most the car's own
6–16 A, 3 phases). The site limit (10 A per box on average) makes load management divide the
current; a house-consumption meter (HTTP input) changes its load every 10 s (0–`--house-a` A
per phase, random), so the limits keep changing as well as being renewed.

Measured after a one-minute warm-up: the cycle period (mean, p95 of the intervals between
periodic cycle starts) against its setting, SetChargingProfile messages per box per minute
(changes and renewals), failed calls, the process RSS before the boxes connect and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import common  # noqa: E402  (bench/ is on sys.path when run as python bench/soak_ocpp.py)
from chargebrain.app import ChargeBrain, Settings  # noqa: E402
from chargebrain.devices.base import MeterReading  # noqa: E402
from chargebrain.sim.ocpp_box import SimBox  # noqa: E402

METER_INTERVAL_S = 10.0
WARMUP_S = 60.0


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run_box(box: SimBox, car_max_a: float, stop: asyncio.Event) -> None:
    await asyncio.sleep(random.uniform(0, METER_INTERVAL_S))  # boxes are not in step
    await box.status(1, "Preparing")
    await box.start_transaction(1, f"TAG-{box.id}")
    await box.status(1, "Charging")
    energy_wh = 0.0
    while not stop.is_set():
        draw_a = min(box.limit_a(1) or 0.0, car_max_a)
        energy_wh += draw_a * 3 * 230 * METER_INTERVAL_S / 3600
        await box.meter(1, (draw_a, draw_a, draw_a), energy_wh=int(energy_wh))
        with_timeout = asyncio.wait_for(stop.wait(), METER_INTERVAL_S)
        with contextlib.suppress(TimeoutError):
            await with_timeout


async def run_house(app: ChargeBrain, dev_id: str, max_a: float, stop: asyncio.Event) -> None:
    rng = random.Random(11)
    while not stop.is_set():
        device = app.devices.get(dev_id)
        load_ma = round(rng.uniform(0, max_a) * 1000)
        if device is not None:
            app.devices.push(device, MeterReading(currents_ma=(load_ma, load_ma, load_ma),
                                                  power_w=round(3 * load_ma * 230 / 1000)),
                             app.devices.clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), METER_INTERVAL_S)


async def soak(boxes: int, minutes: float, cycle_ms: int, house_a: float
               ) -> dict[str, object]:
    data_dir = Path(tempfile.mkdtemp(prefix="soak-ocpp-"))
    settings = Settings(data_dir=data_dir, host="127.0.0.1", port=0, modbus_port=0,
                        admin_password="soak-admin-pw", cycle_ms=cycle_ms,
                        ocpp_port=common.free_port())
    app = ChargeBrain(settings)
    for i in range(boxes):
        change = app.devices.prepare({"dev_id": f"E{i + 2}", "dev_type": "evse_ocpp",
                                      "address": f"BOX{i:03d}", "id": 1})
        await app.devices.save(change)
    house = app.devices.prepare({"dev_id": "M9", "dev_type": "meter_ajax", "role": 1,
                                 "com_timeout_ms": 60000})
    await app.devices.save(house)
    app.params.apply({"max_total_current": 10000 * boxes})
    await app.start()
    assert app.ocpp is not None and app.ocpp.port is not None
    rss_before = rss_kb()
    url = f"ws://127.0.0.1:{app.ocpp.port}"
    sims = []
    for i in range(boxes):
        box = await SimBox.connect(url, f"BOX{i:03d}")
        assert await box.boot() == "Accepted"
        sims.append(box)
    stop = asyncio.Event()
    rng = random.Random(7)
    tasks = [asyncio.create_task(run_box(b, rng.choice([6.0, 10.0, 13.0, 16.0]), stop))
             for b in sims]
    tasks.append(asyncio.create_task(run_house(app, "M9", house_a, stop)))
    await asyncio.sleep(WARMUP_S)
    links = [app.ocpp.link(b.id) for b in sims]
    messages_0 = sum(link.profile_messages for link in links if link)
    failed_0 = app.cycle.stats.failed
    t0 = app.cycle.stats.period_starts[-1] if app.cycle.stats.period_starts else 0.0
    started = time.monotonic()
    await asyncio.sleep(minutes * 60)
    measured_s = time.monotonic() - started
    messages = sum(link.profile_messages for link in links if link) - messages_0
    starts = [s for s in app.cycle.stats.period_starts if s > t0]
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(starts)]
    com_err = sum(1 for d in app.devices.evses() if d.status.com_err)
    errors = sorted({d.status.last_error for d in app.devices.evses() if d.status.com_errors})
    rss_end = rss_kb()
    failed = app.cycle.stats.failed - failed_0
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for box in sims:
        await box.close()
    await app.stop()
    gaps_ms.sort()
    return {
        "boxes": boxes, "house_max_a": house_a, "minutes_measured": round(measured_s / 60, 2),
        "cycle_ms": cycle_ms,
        "cycles": len(gaps_ms),
        "period_mean_ms": round(statistics.fmean(gaps_ms), 1) if gaps_ms else None,
        "period_p95_ms": round(gaps_ms[int(len(gaps_ms) * 0.95) - 1], 1) if gaps_ms else None,
        "period_max_ms": round(gaps_ms[-1], 1) if gaps_ms else None,
        "profiles_per_box_per_min": round(messages / boxes / (measured_s / 60), 2),
        "failed_writes": failed,
        "boxes_in_com_err_at_end": com_err,
        "errors_seen": errors,
        "rss_before_boxes_mb": round(rss_before / 1024, 1),
        "rss_end_mb": round(rss_end / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--cycle-ms", type=int, default=3000)
    parser.add_argument("--house-a", type=float, default=100.0,
                        help="most house load per phase in A (0 = none)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(soak(args.boxes, args.minutes, args.cycle_ms, args.house_a))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
