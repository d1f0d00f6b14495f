"""PV-surplus charging in a closed loop over real HTTP: a legacy `mode 5` rule on an
HTTP-input wallbox, an HTTP-input grid meter, and the test playing the physics.

The world: a house drawing 500 W, a PV system whose output the test sets, a three-phase car
behind an `evse_ajax` wallbox (16 A max, phases left to "determine"), and the site's grid meter
(`meter_ajax`, role 3), which measures house + car − PV on every phase. Time is a fake clock
moved in steps of 10 s; one step is one measurement instant: the wallbox pushes what the car
draws, the meter pushes what it measures, one control cycle runs (`run_once`), and the car
draws what the wallbox was told from the next step on.

The rule's `udur` (300 s) is the stop delay (it wins over the param `surplus_stop_delay`, set
to 100 s here); the other params keep their defaults (`surplus_start_delay` 60 s,
`min_run_time` and `min_pause_time` 300 s, `surplus_step` 100 mA).
Nothing here depends on how fast the machine is: every delay runs on the fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.control.helpers import add, clocked_app, device, push_evse, push_meter, set_params

VOLT = 230
MIN_MA = 6000
MAX_MA = 16000
HOUSE_W = 500
STEP_S = 10.0
UDUR_S = 300


@dataclass
class World:
    """The physical site the test plays."""

    pv_w: int = 0
    told_ma: int = 0  # what the wallbox was told last (0: charging off)
    energy_wh: float = 0.0
    starts: int = 0
    log: list[tuple[int, int, int]] = field(default_factory=list)  # (pv W, told mA, grid W)

    def car_ma(self) -> int:
        """What the car draws per phase (three phases) now."""
        return min(self.told_ma, MAX_MA) if self.told_ma >= MIN_MA else 0

    def grid_ma(self) -> int:
        """The grid meter's reading per phase (mA, + import), house and PV spread evenly."""
        return round((HOUSE_W - self.pv_w) * 1000 / (3 * VOLT)) + self.car_ma()

    def grid_w(self) -> int:
        return round(3 * self.grid_ma() * VOLT / 1000)


async def _step(cb, world: World) -> int:
    """One measurement instant and one cycle; returns the new setpoint (mA)."""
    car = world.car_ma()
    world.energy_wh += 3 * car * VOLT / 1000 * STEP_S / 3600
    await push_evse(cb, "E1", 3 if car else 2, (car, car, car),
                    total_energy=round(world.energy_wh))
    grid = world.grid_ma()
    await push_meter(cb, "M1", (grid, grid, grid))
    await cb.app.cycle.run_once()
    status = cb.app.devices.get("E1").status
    new = status.last_set_charging_cur_ma or 0
    if new and not world.told_ma:
        world.starts += 1
    world.told_ma = new
    world.log.append((world.pv_w, new, world.grid_w()))
    cb.clock.advance(STEP_S)
    return new


async def _run(cb, world: World, pv_w: int, seconds: float) -> list[int]:
    world.pv_w = pv_w
    return [await _step(cb, world) for _ in range(round(seconds / STEP_S))]


async def test_mode5_follows_the_surplus_through_clouds(tmp_path):
    async with clocked_app(tmp_path / "data") as cb:
        # the global stop delay is shorter than the rule's udur: the rule's must win
        await set_params(cb, max_total_current=32000, surplus_stop_delay=100)
        await add(cb, dev_id="M1", dev_type="meter_ajax", role=3, com_timeout_ms=600000)
        await add(cb, dev_id="E1", dev_type="evse_ajax", max_charging_cur=MAX_MA,
                  com_timeout_ms=600000,
                  charging_rules=[{"mode": 5, "enabled": True, "udur": UDUR_S}])
        world = World()

        # night: the car is plugged in, no surplus, no charging
        night = await _run(cb, world, 0, 600)
        assert set(night) == {0}, world.log
        assert "surplus" in (await device(cb, "E1"))["lreason"].lower()

        # morning sun: 6 kW PV − 500 W house = 5.5 kW of surplus. It starts after the start
        # delay and settles at 5500 / (3 × 230) = 7.97 A, rounded down to the 100 mA step.
        sun = await _run(cb, world, 6000, 400)
        first = next(i for i, c in enumerate(sun) if c)
        assert 5 <= first <= 8, world.log  # 60 s start delay (+ one step for the push)
        settled = sun[first + 3:]
        assert settled and all(7500 <= c <= 8000 for c in settled), world.log
        assert all(g < 700 for _, c, g in world.log[-len(settled):]), world.log
        assert world.starts == 1

        # a cloud shorter than udur (200 s): it keeps charging at its minimum from the grid
        cloud = await _run(cb, world, 1500, 200)
        assert all(c == MIN_MA for c in cloud), world.log
        info = await device(cb, "E1")
        assert "surplus" in info["lreason"].lower() and info["paused"] is False

        # the sun is back: it follows the surplus again without a new start
        back = await _run(cb, world, 6000, 300)
        assert all(7500 <= c <= 8000 for c in back[1:]), world.log
        assert world.starts == 1

        # a cloud longer than udur (400 s): held at the minimum for udur, then it stops
        long_cloud = await _run(cb, world, 1500, 400)
        held = round(UDUR_S / STEP_S)
        assert all(c == MIN_MA for c in long_cloud[:held - 1]), world.log
        stop = next(i for i, c in enumerate(long_cloud) if c == 0)
        assert all(c == 0 for c in long_cloud[stop:]), world.log
        assert (await device(cb, "E1"))["last_set_charging_cur"] == 0

        # strong sun 100 s after the stop: 9 kW − 500 W = 8.5 kW → 8500 / 690 = 12.3 A, but
        # only after the minimum pause (300 s from the stop) and then the start delay
        strong = await _run(cb, world, 9000, 600)
        first = next(i for i, c in enumerate(strong) if c)
        since_stop_s = (len(long_cloud) - stop + first) * STEP_S
        assert since_stop_s >= 300 + 60, world.log
        assert all(11500 <= c <= 12500 for c in strong[first + 1:]), world.log
        assert all(g < 700 for _, c, g in world.log[-(len(strong) - first - 1):]), world.log

        assert world.starts == 2, world.log  # at most two starts in the whole run
        assert world.energy_wh > 0
