"""Fault injection in the control loop: devices that hang, reset connections, answer garbage,
answer Modbus exceptions, report random registers, or stop pushing data.

A chargebrain with a 500 ms cycle drives its own Power Brain wallbox E1 and a remote Power Brain
E2 (another chargebrain's Modbus port, reached through a `FaultyProxy` that misbehaves on
command); both have a car that wants 16 A, the site allows 24 A. For every fault:
- the cycle keeps its period: the intervals between the periodic cycle starts the cycle itself
  records, and the durations it records, stay within 1.5 × its setting (a property of the
  design — every read and write is bounded by the device's timeout and by a share of the
  period — measured on the cycle's own records over a bounded number of cycles), also when a
  hung device's timeout is as long as the period or longer (the default 3 s);
- the faulty device is marked `com_err`, and the fallback errs toward less current: E1 never
  gets more than in the healthy state (the dead wallbox's last current stays booked);
- when the device comes back, it is used again.
Waiting is bounded by GENEROUS_S (a slow machine gets there later, never fails for it). Time in
which the machine gave this process no CPU at all (`LoopWatch`, e.g. a loaded CI runner) is not
counted against the cycle; time our own code keeps the event loop busy is.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from chargebrain.powerbrain.registers import LAYOUTS
from tests.reliability.faults import FaultyProxy, Mode
from tests.reliability.support import LoopWatch
from tests.support.ports import free_port
from tests.support.server import Running, running_app

GENEROUS_S = 60.0  # an upper bound for a slow machine, never a measurement
PERIOD_MS = 500
TIMEOUT_MS = 200
SITE_LIMIT_MA = 24000
FAIR_SHARE_MA = SITE_LIMIT_MA // 2
MAX_PERIOD_FACTOR = 1.5


@dataclass
class Site:
    cb: Running  # the chargebrain under test
    remote: Running  # the remote Power Brain behind the proxy
    proxy: FaultyProxy
    watch: LoopWatch


def _plug(running: Running) -> None:
    pb = running.app.powerbrain
    pb.set_car(pb.car.replace(plugged=True, phases=3, max_current_ma=16000), pb.clock())


async def _post(running: Running, cmd: str, body: object) -> None:
    status, answer = await running.client.post(cmd, body)
    assert (status, answer) == (200, "ok"), answer


@pytest.fixture
async def site(tmp_path):
    async with running_app(tmp_path / "remote") as remote, \
            running_app(tmp_path / "site", modbus=False, cycle_ms=PERIOD_MS) as cb, \
            LoopWatch() as watch:
        await remote.app.cycle.stop()  # the remote box is driven by the site under test only
        _plug(remote)
        _plug(cb)
        async with FaultyProxy(remote.modbus_base) as proxy:
            await _post(cb, "set_params", {"max_total_current": SITE_LIMIT_MA})
            await _post(cb, "set_device", {"devices": [{
                "dev_id": "E2", "dev_type": "evse_powerbrain", "address": proxy.address,
                "id": 1, "com_timeout_ms": TIMEOUT_MS}]})
            yield Site(cb, remote, proxy, watch)


@dataclass
class Observed:
    e1_ma: list[int]  # E1's setpoint in each cycle
    durations_ms: list[float]  # each cycle's own recorded duration
    starts: list[float]  # recorded periodic starts (loop time), including the one leading in


async def run_cycles(cb: Running, count: int) -> Observed:
    """Let `count` cycles complete; what the cycle recorded meanwhile."""
    cycle = cb.app.cycle
    before = len(cycle.stats.period_starts)
    e1, durations = [], []
    for _ in range(count):
        await asyncio.wait_for(cycle.wait_next(), GENEROUS_S)
        durations.append(cycle.stats.last_duration_ms)
        assert cycle.last is not None
        e1.append(cycle.last.result.setpoints["E1"].current_ma)
    starts = list(cycle.stats.period_starts)[max(0, before - 1):]
    return Observed(e1, durations, starts)


def assert_period_kept(observed: Observed, watch: LoopWatch, period_ms: int = PERIOD_MS
                       ) -> None:
    """Every interval between periodic starts and every duration within 1.5 × the period;
    time the machine gave this process no CPU at all (LoopWatch) is not the cycle's doing."""
    bound_s = MAX_PERIOD_FACTOR * period_ms / 1000
    assert len(observed.starts) >= 2, "no periodic cycle was recorded"
    for a, b in itertools.pairwise(observed.starts):
        excused = watch.starved_within(a, b)
        assert (b - a) - excused <= bound_s, (
            f"cycle started {1000 * (b - a):.0f} ms after the one before "
            f"({1000 * excused:.0f} ms of it starved of CPU)")
    assert max(observed.durations_ms) <= bound_s * 1000 + 1000 * sum(
        b - a for a, b in watch.starved), observed.durations_ms


async def until(cb: Running, predicate, what: str, cycles: int = 20) -> None:
    """Run cycles until `predicate()` holds after one (at most `cycles`)."""
    for _ in range(cycles):
        await asyncio.wait_for(cb.app.cycle.wait_next(), GENEROUS_S)
        if predicate():
            return
    raise AssertionError(f"{what} did not happen within {cycles} cycles")


def _e2_status(site: Site):
    return site.cb.app.devices.get("E2").status


async def healthy_baseline(site: Site) -> int:
    """Run until both wallboxes are controlled; E1's share."""
    cb = site.cb

    def both_controlled() -> bool:
        setpoints = cb.app.cycle.last.result.setpoints
        return setpoints["E1"].current_ma > 0 and setpoints["E2"].current_ma > 0 \
            and not _e2_status(site).com_err

    await until(cb, both_controlled, "controlling both wallboxes")
    observed = await run_cycles(cb, 2)
    assert_period_kept(observed, site.watch)
    assert observed.e1_ma[-1] == FAIR_SHARE_MA
    assert site.remote.app.powerbrain.bank("evse").get_int("charging_cur_limit") \
        == FAIR_SHARE_MA // 100
    return observed.e1_ma[-1]


async def test_every_fault_keeps_the_period_and_errs_toward_less_current(site):
    baseline_ma = await healthy_baseline(site)
    for faults in ((Mode.HANG,), (Mode.RESET,), (Mode.GARBAGE, Mode.EXCEPTION, Mode.HANG)):
        for mode in faults:
            site.proxy.switch(mode)
            errors = _e2_status(site).com_errors
            observed = await run_cycles(site.cb, 4)
            assert_period_kept(observed, site.watch)
            status = _e2_status(site)
            assert status.com_err is True and status.com_errors > errors, mode
            # the dead wallbox may still draw what it was given: E1 never gets more
            assert max(observed.e1_ma) <= baseline_ma, (mode, observed.e1_ma)
            _, info = await site.cb.client.get("get_dev_info")
            e2 = next(d for d in info["devices"] if d["dev_id"] == "E2")
            assert e2["com_err"] is True and e2["state"] in range(1, 7), e2
        site.proxy.switch(Mode.PASS)  # the device comes back and is used again
        await until(site.cb, lambda: not _e2_status(site).com_err, "recovery")
        assert_period_kept(await run_cycles(site.cb, 2), site.watch)


# -- a device that answers, but with random registers -----------------------------------------

@asynccontextmanager
async def random_register_device(seed: int):
    """A Modbus TCP device with the Power Brain's register layout full of random words."""
    rng = random.Random(seed)
    blocks = [SimData(address, values=[rng.randrange(0x10000) for _ in range(count)],
                      datatype=DataType.REGISTERS)
              for address, count in LAYOUTS["evse"].runs()]
    port = free_port()
    server = ModbusTcpServer(SimDevice(id=0, simdata=blocks), address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.shutdown()


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_registers_never_give_the_others_more(site, seed):
    baseline_ma = await healthy_baseline(site)
    async with random_register_device(seed) as address:
        await _post(site.cb, "set_device", {"devices": [{
            "dev_id": "E3", "dev_type": "evse_powerbrain", "address": address, "id": 1,
            "com_timeout_ms": TIMEOUT_MS}]})
        observed = await run_cycles(site.cb, 4)
        assert_period_kept(observed, site.watch)
        assert max(observed.e1_ma) <= baseline_ma, observed.e1_ma
        status, info = await site.cb.client.get("get_dev_info")
        assert status == 200
        e3 = next(d for d in info["devices"] if d["dev_id"] == "E3")
        # whatever the device says, clients only ever see the documented ranges
        assert e3["state"] in range(1, 7)
        for key in ("current_l1", "current_l2", "current_l3", "power_w", "total_energy"):
            assert isinstance(e3[key], int), (key, e3[key])
        setpoints = site.cb.app.cycle.last.result.setpoints
        allocated = sum(sp.current_ma for sp in setpoints.values())
        assert allocated <= SITE_LIMIT_MA, setpoints


# -- a pushed meter that stops being pushed ---------------------------------------------------

async def test_a_meter_that_stops_pushing_counts_as_the_worst_case(tmp_path):
    async with running_app(tmp_path / "site", modbus=False, cycle_ms=PERIOD_MS) as cb, \
            LoopWatch() as watch:
        _plug(cb)
        await _post(cb, "set_params", {"max_total_current": 32000})
        # the grid meter of the house, pushed over HTTP; stale after 1.5 s without a push
        await _post(cb, "set_device", {"devices": [{
            "dev_id": "M3", "dev_type": "meter_ajax", "role": 3, "com_timeout_ms": 1500}]})

        async def push() -> None:
            # the house draws 2 A per phase besides the car
            e1 = cb.app.devices.get("E1").status
            car = e1.reading.currents_ma if e1.reading is not None else (0, 0, 0)
            currents = [2000 + c for c in car]
            status, answer = await cb.client.post(
                "set_ajax_meter", {"current": currents, "voltage": [230, 230, 230]},
                dev_id="M3")
            assert (status, answer) == (200, "ok"), answer

        cycle = cb.app.cycle
        fresh: list[int] = []
        for _ in range(8):  # fresh data every cycle: the car gets its 16 A
            await push()
            await asyncio.wait_for(cycle.wait_next(), GENEROUS_S)
            fresh.append(cycle.last.result.setpoints["E1"].current_ma)
        assert fresh[-1] == 16000, fresh

        async def stale() -> bool:
            await asyncio.wait_for(cycle.wait_next(), GENEROUS_S)
            return cb.app.cycle.last.result.setpoints["E1"].current_ma < fresh[-1]

        for _ in range(40):  # no more pushes: after 1.5 s the meter is stale
            if await stale():
                break
        else:
            raise AssertionError("a stale grid meter never reduced the current")
        observed = await run_cycles(cb, 3)
        assert_period_kept(observed, watch)
        assert max(observed.e1_ma) < fresh[-1], observed.e1_ma


# -- a timeout as long as the period ----------------------------------------------------------

@pytest.mark.parametrize("timeout_ms", [PERIOD_MS, 3000])
async def test_a_hung_wallbox_with_a_timeout_as_long_as_the_period_keeps_the_period(tmp_path,
                                                                                    timeout_ms):
    async with running_app(tmp_path / "site", modbus=False, cycle_ms=PERIOD_MS) as cb, \
            LoopWatch() as watch, FaultyProxy(free_port(), Mode.HANG) as proxy:
        _plug(cb)
        await _post(cb, "set_device", {"devices": [{
            "dev_id": "E2", "dev_type": "evse_powerbrain", "address": proxy.address, "id": 1,
            "com_timeout_ms": timeout_ms}]})
        await run_cycles(cb, 1)
        assert_period_kept(await run_cycles(cb, 3), watch)
        status = cb.app.devices.get("E2").status
        assert status.com_err is True and status.com_errors >= 3
