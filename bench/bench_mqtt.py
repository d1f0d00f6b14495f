"""MQTT publish cost: snapshot → published with 100 devices, and the cycle period meanwhile.

    .venv/bin/python bench/bench_mqtt.py [--devices 100] [--pushes 100] [--cycle-ms 250] [--json]

An in-process chargebrain (control cycle at `--cycle-ms`) connected to a `mosquitto` of its
own on a free loopback port, with `--devices` HTTP-input meters (address `mqtt`, `mqtt_publish`
on: each has its `get/<dev_id>` topic and discovery configs) besides the default wallbox, Home
Assistant discovery on. Measured:

- the writer's round (`MqttBridge.messages`: the snapshot's topics, per-device payloads and the
  discovery configs for every device), median over 50 rounds;
- push → published: a listener publishes `cfos_mqtt/set/<dev_id>` and waits for the new value on
  `cfos_mqtt/get/<dev_id>` (through the broker both ways, the writer waits for the next cycle
  slot), median and 95th percentile over `--pushes` pushes, one every 50 ms;
- the control cycle's period (spacing of its starts) during the pushes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt
import orjson

from chargebrain.app import ChargeBrain, Settings
from common import free_port, machine


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, port


async def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    broker, port = start_mosquitto(work)
    app = ChargeBrain(Settings(data_dir=work / "data", port=0, modbus_port=0,
                               admin_password="bench-pw", cycle_ms=args.cycle_ms))
    try:
        await app.start()
        for _ in range(args.devices):
            change = app.devices.prepare({"dev_type": "meter_ajax", "address": "mqtt",
                                          "mqtt_publish": True, "com_timeout_ms": 600000})
            await app.devices.save(change)
        app.params.apply({"mqtt_url": f"mqtt://127.0.0.1:{port}"})
        while app.mqtt.connects < 1:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        snapshot = app.state.current()
        topics = app.mqtt.topics
        rounds = []
        for _ in range(50):
            began = time.perf_counter()
            messages = app.mqtt.messages(snapshot, topics)
            rounds.append(time.perf_counter() - began)
        meter = app.devices.meters()[-1].dev_id
        latencies: list[float] = []
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(f"cfos_mqtt/get/{meter}")
            starts_before = len(app.cycle.stats.period_starts)
            for i in range(1, args.pushes + 1):
                began = time.perf_counter()
                await client.publish(f"cfos_mqtt/set/{meter}", orjson.dumps({"power_w": i}))
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes) and orjson.loads(payload)["power_w"] == i:
                        break
                latencies.append(time.perf_counter() - began)
                await asyncio.sleep(0.05)
            starts = list(app.cycle.stats.period_starts)[starts_before:]
        periods = [b - a for a, b in itertools.pairwise(starts)]
        latencies.sort()
        return {
            "machine": machine(), "devices": len(app.devices.all()),
            "topics": len(messages), "bytes": sum(len(p) for p in messages.values()),
            "round_ms": round(statistics.median(rounds) * 1000, 2),
            "push_to_published_ms": round(statistics.median(latencies) * 1000, 1),
            "push_to_published_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000,
                                              1),
            "cycle_ms_set": args.cycle_ms,
            "cycle_period_ms": round(statistics.median(periods) * 1000, 1) if periods else None,
            "cycle_period_max_ms": round(max(periods) * 1000, 1) if periods else None,
        }
    finally:
        await app.stop()
        broker.terminate()
        broker.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--pushes", type=int, default=100)
    parser.add_argument("--cycle-ms", type=int, default=250)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
