"""The cycle's own loop: a dead device does not stall it, pushed overloads get an extra cycle
at once (coalesced, never overlapping). Nothing here depends on how fast the machine is: the
tests wait for cycle numbers, never for wall-clock durations."""

from __future__ import annotations

import asyncio

import pytest

from tests.control.helpers import add, plug_sim, push_evse, push_meter, set_params
from tests.support.server import running_app, wait_until

GENEROUS_S = 60.0  # an upper bound for a slow machine, never a measurement


@pytest.fixture
async def silent_device():
    """A TCP port that accepts connections and never answers (a hung Modbus device)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(1024):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_device_that_never_answers_does_not_stall_the_cycle(tmp_path, silent_device):
    async with running_app(tmp_path / "data", modbus=False, cycle_ms=250) as cb:
        dead = await add(cb, dev_id="E2", dev_type="evse_powerbrain",
                         address=f"127.0.0.1:{silent_device}", com_timeout_ms=300)
        alive = await add(cb, dev_id="E3", dev_type="evse_sim")
        plug_sim(cb, alive, phases=3, max_current_ma=16000)
        cycle = cb.app.cycle
        first = await asyncio.wait_for(cycle.wait_next(), GENEROUS_S)
        for _ in range(3):
            await asyncio.wait_for(cycle.wait_next(), GENEROUS_S)
        assert cycle.count >= first + 3  # cycles keep completing
        registry = cb.app.devices
        dead_status = registry.get(dead).status
        assert dead_status.com_err is True and dead_status.com_errors >= 3
        # its own 300 ms timeout is capped by the cycle's I/O budget: 0.4 × 250 ms
        assert dead_status.last_error == "no answer within 0.1 s"
        # the live wallbox was read and written in the very cycles the dead one timed out
        alive_status = registry.get(alive).status
        assert alive_status.last_set_charging_cur_ma == 16000 and not alive_status.com_err
        _, info = await cb.client.get("get_dev_info")
        boxes = {d["dev_id"]: d for d in info["devices"]}
        assert boxes[dead]["state"] == 6 and boxes[dead]["com_err"] is True
        assert boxes[alive]["state"] == 3 and boxes[alive]["current_l1"] == 16000
        assert info["params"]["cycle_time"] > 0


async def test_a_pushed_overload_is_answered_by_an_extra_cycle(tmp_path):
    # the longest period: every cycle in this test is either the test's own or a pushed one
    async with running_app(tmp_path / "data", modbus=False, cycle_ms=60000) as cb:
        await set_params(cb, max_total_current=32000)
        grid = await add(cb, dev_id="M3", dev_type="meter_ajax", role=3)
        box = await add(cb, dev_id="E2", dev_type="evse_ajax")
        cycle = cb.app.cycle
        await push_evse(cb, box, 2)
        await push_meter(cb, grid, (5000, 5000, 5000))
        await cycle.run_once()
        answer = await push_evse(cb, box, 3, (16000, 16000, 16000))
        assert answer["charging_current"] == 16000
        await push_meter(cb, grid, (21000, 21000, 21000))  # house 5 A + the car: within limits
        assert cycle.stats.pushed_overloads == 0
        fast_before = cycle.stats.fast_cycles  # the box's first push ran a plan at once
        before = cycle.count

        await push_meter(cb, grid, (41000, 41000, 41000))  # the house jumps to 25 A
        assert cycle.stats.pushed_overloads == 1  # judged while the push was handled

        async def reacted() -> bool:
            return cycle.count > before

        await wait_until(reacted, GENEROUS_S)
        assert cycle.stats.fast_cycles == fast_before + 1
        status = cb.app.devices.get(box).status
        assert status.last_set_charging_cur_ma <= 32000 - 25000  # 0 or what still fits
        answer = await push_evse(cb, box, 3, (16000, 16000, 16000))
        assert answer["charging_current"] <= 7000


async def test_pushes_during_a_cycle_coalesce_into_one_extra_cycle(tmp_path):
    async with running_app(tmp_path / "data", modbus=False, cycle_ms=60000) as cb:
        await set_params(cb, max_total_current=32000)
        grid = await add(cb, dev_id="M3", dev_type="meter_ajax", role=3)
        box = await add(cb, dev_id="E2", dev_type="evse_ajax")
        cycle = cb.app.cycle
        await push_evse(cb, box, 3, (16000, 16000, 16000))
        await push_meter(cb, grid, (20000, 20000, 20000))
        await cycle.run_once()
        before = cycle.count
        fast_before = cycle.stats.fast_cycles  # the box's first push ran a plan at once
        async with cycle.hold():  # as if a cycle were running: pushes wait, never overlap
            for house in (20000, 22000, 24000):
                await push_meter(cb, grid, (16000 + house,) * 3)
            assert cycle.count == before
        assert cycle.stats.pushed_overloads == 3

        async def reacted() -> bool:
            return cycle.count > before

        await wait_until(reacted, GENEROUS_S)
        await asyncio.sleep(0)
        assert cycle.stats.fast_cycles == fast_before + 1  # three pushes, one extra cycle
        assert not cycle._kick.is_set()  # nothing else pending: the last push was in it
        # the last push (house 24 A) was in it: the car is cut to what is left, 32 − 24 A
        assert cb.app.devices.get(box).status.last_set_charging_cur_ma == 8000
