"""One whole simulated day of the demo site, driven cycle by cycle with a fake clock: cars come
and go, the dinner peak forces pauses, paused cars charge again later, and no plan ever gives
out more than the site budget."""

from __future__ import annotations

from chargebrain.core.model import SITE_GROUP
from chargebrain.sim.demo import DAY_S, DemoSite
from tests.control.helpers import clocked_app

STEP_S = 15.0  # 80 cycles per simulated day (one day lasts DAY_S = 1200 s)


async def test_a_simulated_day(tmp_path):
    async with clocked_app(tmp_path / "data") as site:
        app = site.app
        demo = DemoSite(app)
        await demo.install()
        boxes = [demo.ids[k] for k in ("wallbox1", "wallbox2", "wallbox3")]
        plugged_seen: dict[str, set[bool]] = {b: set() for b in boxes}
        paused_then_charged: set[str] = set()
        paused_before: set[str] = set()
        pause_reasons: set[str] = set()
        hours: list[float] = []
        for _ in range(int(DAY_S / STEP_S) + 1):
            record = await app.cycle.run_once()
            hours.append(demo.hour(record.now_s))
            site_node = record.result.diagnostics.nodes[SITE_GROUP]
            assert min(site_node.headroom_ma) >= 0 or site_node.stale, site_node
            for dev_id in boxes:
                status = app.devices.get(dev_id).status
                reading = status.evse_reading
                plugged_seen[dev_id].add(bool(reading and reading.plugged))
                if status.paused:
                    paused_before.add(dev_id)
                    pause_reasons.add(status.pause_reason)
                elif dev_id in paused_before and status.last_set_charging_cur_ma > 0:
                    paused_then_charged.add(dev_id)
            site.clock.advance(STEP_S)
        assert hours[0] == 17.0 and 16.5 < hours[-1] <= 17.0 + 1e-6  # a whole day went by
        assert all(seen == {True, False} for seen in plugged_seen.values()), plugged_seen
        assert pause_reasons  # the dinner peak leaves no room for everybody
        assert paused_then_charged  # and a paused car charges again afterwards
        grid = app.devices.get(demo.ids["grid"]).status.meter_reading
        assert grid is not None and app.devices.get(demo.ids["grid"]).status.com_err is False
