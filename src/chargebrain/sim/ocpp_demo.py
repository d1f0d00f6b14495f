"""The `--demo` site's OCPP wallbox: a `SimBox` (the `ocpp` library's client side) in-process.

It connects to chargebrain's own OCPP server like a real box, boots, starts a transaction with
an open tag and sends MeterValues every `interval_s`: its 3-phase car (up to 16 A) draws what
the box's charging profile allows, so a newcomer sees an OCPP box being controlled
(SetChargingProfile in `get_dev_info`'s currents). The demo's grid meter books it as it books
every other wallbox (its last measurement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chargebrain.sim.ocpp_box import SimBox

log = logging.getLogger(__name__)

BOX_ID = "demo-ocpp-1"
CAR_MAX_A = 16.0
MIN_A = 6.0  # below this a car does not charge (IEC 61851)


class DemoOcppBox:
    """Runs one simulated box against `url` until `stop()`."""

    def __init__(self, url: str, *, interval_s: float, voltage_v: int = 230) -> None:
        self.url = url
        self.interval_s = interval_s
        self.voltage_v = voltage_v
        self.box: SimBox | None = None
        self.energy_wh = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo-ocpp-box")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.box is not None:
            with contextlib.suppress(Exception):
                await self.box.close()

    async def _run(self) -> None:
        while True:  # reconnect after a failure, as a real box does
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.info("demo OCPP box: %s; reconnecting", err)
            await asyncio.sleep(max(1.0, self.interval_s))

    async def _session(self) -> None:
        self.box = box = await SimBox.connect(self.url, BOX_ID)
        if await box.boot() != "Accepted":
            raise RuntimeError("boot rejected")
        await box.status(1, "Preparing")
        await box.start_transaction(1, "DEMO-TAG")
        status = ""
        while True:
            limit = box.limit_a(1) or 0.0
            draw_a = min(limit, CAR_MAX_A) if limit >= MIN_A else 0.0
            want = "Charging" if draw_a > 0 else "SuspendedEVSE"
            if want != status:
                await box.status(1, want)
                status = want
            self.energy_wh += draw_a * 3 * self.voltage_v * self.interval_s / 3600
            await box.meter(1, (draw_a, draw_a, draw_a), energy_wh=int(self.energy_wh))
            await asyncio.sleep(self.interval_s)
