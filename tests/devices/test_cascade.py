"""Cascaded charging managers: a master chargebrain (20 A site limit) drives a slave
chargebrain (32 A fuse) through its HTTP API as one `evse_cm` wallbox; the slave divides the
master's allotment among three HTTP-input wallboxes played by the test. Both are real running
apps on loopback; their cycles run on demand."""

from __future__ import annotations

from chargebrain.devices.base import EvseSetpoint
from tests.control.helpers import add, clocked_app, device, push_evse, set_params
from tests.support.server import ADMIN_PASSWORD

MASTER_LIMIT_MA = 20000
SLAVE_FUSE_MA = 32000


async def step_boxes(slave, boxes, told):
    """Each wallbox reports: charging at what it was told last, else a car waiting."""
    for box in boxes:
        current = told[box]
        state = 3 if current > 0 else 2
        answer = await push_evse(slave, box, state, (current, current, current))
        told[box] = answer["charging_current"] if answer["charging_enabled"] else 0


async def test_master_limit_holds_and_the_slave_shares_it_fairly(tmp_path):
    async with clocked_app(tmp_path / "slave") as slave, \
            clocked_app(tmp_path / "master") as master:
        await set_params(slave, max_total_current=SLAVE_FUSE_MA, reserve_current=0)
        boxes = [await add(slave, dev_type="evse_ajax", name=f"box {i}", min_charging_cur=6000,
                           max_charging_cur=16000) for i in range(3)]
        await set_params(master, max_total_current=MASTER_LIMIT_MA, reserve_current=0)
        cm = await add(master, dev_type="evse_cm", name="Garage manager",
                       address=slave.client.base_url, password=ADMIN_PASSWORD,
                       max_charging_cur=SLAVE_FUSE_MA)
        told = {box: 0 for box in boxes}
        for _ in range(12):
            await master.app.cycle.run_once()
            await slave.app.cycle.run_once()
            await step_boxes(slave, boxes, told)
            # the slave never hands out more than the master allotted, at every step
            assert sum(told.values()) <= MASTER_LIMIT_MA, told
            master.clock.advance(3)
            slave.clock.advance(3)
        shares = sorted(told.values())
        assert shares[0] >= 6000 and shares[-1] - shares[0] <= 100, told  # fair
        assert sum(shares) >= MASTER_LIMIT_MA - 3 * 400, told  # and the allotment is used
        info = await device(master, cm)
        assert info["com_err"] is False and info["state"] == 3
        assert info["current_l1"] == sum(shares)  # the slave's draw is the wallbox's draw
        status, explained = await master.client.get("explain", dev_id=cm)
        # the master explains the slave as the wallbox bound by its own site limit
        assert status == 200 and explained["dev_id"] == cm
        assert explained["reason"]["code"] == "site_limit"
        assert explained["demand"]["max_current_ma"] == SLAVE_FUSE_MA
        assert slave.app.params["max_total_cur_prc"] == 62
        _, configs = await master.client.get("get_devices")
        assert all("password" not in c for c in configs)
        assert ADMIN_PASSWORD not in str(await device(master, cm))


async def test_share_is_whole_percent_rounded_down_and_a_dead_slave_is_a_com_error(tmp_path):
    async with clocked_app(tmp_path / "slave") as slave, \
            clocked_app(tmp_path / "master") as master:
        await set_params(slave, max_total_current=SLAVE_FUSE_MA)
        cm = await add(master, dev_type="evse_cm", address=slave.client.base_url,
                       password=ADMIN_PASSWORD, com_timeout_ms=1000)
        registry = master.app.devices
        dev = registry.get(cm)
        assert await registry.read(dev, registry.clock()) is not None
        assert await registry.apply(dev, EvseSetpoint(20000), registry.clock())
        assert slave.app.params["max_total_cur_prc"] == 62  # 19.84 A ≤ 20 A
        assert await registry.apply(dev, EvseSetpoint(0, enabled=False), registry.clock())
        assert slave.app.params["max_total_cur_prc"] == 0
        wrong = await add(master, dev_type="evse_cm", address=slave.client.base_url,
                          password="wrong")
        assert not await registry.apply(registry.get(wrong), EvseSetpoint(6000),
                                        registry.clock())
        assert "refused the password" in registry.get(wrong).status.last_error
        assert slave.app.params["max_total_cur_prc"] == 0  # unchanged
        dead = await add(master, dev_type="evse_cm", address="http://127.0.0.1:9")
        assert await registry.read(registry.get(dead), registry.clock()) is None
        assert registry.get(dead).status.com_err


async def test_the_slaves_cars_minimum_is_the_masters_minimum_for_it(tmp_path):
    """Master 17 A with its own wallbox and the slave; the slave's only car needs 10 A. An even
    split (8.5 A + 8.5 A) would give the slave less than its car can start with; seen with the
    car's 10 A minimum (10.24 A: whole percent of the slave's 32 A), the master admits it."""
    async with clocked_app(tmp_path / "slave") as slave, \
            clocked_app(tmp_path / "master") as master:
        await set_params(slave, max_total_current=SLAVE_FUSE_MA, reserve_current=0)
        slave_box = await add(slave, dev_type="evse_ajax", name="van", min_charging_cur=10000,
                              max_charging_cur=16000)
        idle_box = await add(slave, dev_type="evse_ajax", name="empty bay",
                             min_charging_cur=6000, max_charging_cur=16000)
        await set_params(master, max_total_current=17000, reserve_current=0)
        master_box = await add(master, dev_type="evse_ajax", name="master box",
                               min_charging_cur=6000, max_charging_cur=16000)
        cm = await add(master, dev_type="evse_cm", name="Garage manager",
                       address=slave.client.base_url, password=ADMIN_PASSWORD,
                       max_charging_cur=SLAVE_FUSE_MA)
        told_slave, told_master = {slave_box: 0}, {master_box: 0}
        for _ in range(12):
            await push_evse(slave, idle_box, 1)  # no car: its minimum does not count
            await master.app.cycle.run_once()
            await slave.app.cycle.run_once()
            await step_boxes(slave, [slave_box], told_slave)
            await step_boxes(master, [master_box], told_master)
            assert told_slave[slave_box] + told_master[master_box] <= 17000
            master.clock.advance(3)
            slave.clock.advance(3)
        assert told_slave[slave_box] >= 10000, told_slave
        assert told_master[master_box] >= 6000, told_master
        status, explained = await master.client.get("explain", dev_id=cm)
        assert status == 200 and explained["demand"]["min_current_ma"] == 10240
        # the slave's cars leave: no minimum of its own, the configured one counts again
        await push_evse(slave, slave_box, 1)
        await master.app.cycle.run_once()
        status, explained = await master.client.get("explain", dev_id=cm)
        assert explained["demand"]["min_current_ma"] == 6000
