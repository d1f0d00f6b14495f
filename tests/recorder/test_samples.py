"""What a tick takes from get_dev_info, and the energy each sample gets."""

from __future__ import annotations

from chargebrain.recorder.samples import EnergyMeter, Last, Measurement, measurements


def dev_info() -> dict:
    return {
        "params": {"grid_pwr": 1500, "cons_pwr": 900, "cons_evse_power": 4000},
        "devices": [
            {"dev_id": "E1", "is_evse": True, "device_enabled": 1, "com_err": False,
             "power_w": 4000, "current_l1": 6000, "current_l2": 6000, "current_l3": 6000,
             "total_energy": 12345, "last_set_charging_cur": 6000, "state": 3},
            {"dev_id": "M1", "is_evse": False, "device_enabled": 1, "com_err": False,
             "power_w": -2000, "current_l1": 1, "current_l2": 2, "current_l3": 3,
             "import": 10, "export": 20, "role": 2},
            {"dev_id": "M2", "is_evse": False, "device_enabled": 1, "com_err": True,
             "power_w": 50, "role": 1},
            {"dev_id": "M3", "is_evse": False, "device_enabled": 0, "com_err": False,
             "power_w": 50, "role": 1},
            {"dev_id": "E2", "is_evse": True, "device_enabled": 1, "com_err": False,
             "power_w": 0, "total_energy": 0, "last_set_charging_cur": -1, "state": 1},
        ],
    }


def test_measurements_skip_offline_and_disabled_devices_and_add_the_site_flows():
    got = {m.key: m for m in measurements(dev_info())}
    assert list(got) == ["E1", "M1", "E2", "site.grid", "site.pv", "site.house", "site.cars"]
    assert got["E1"] == Measurement("E1", 4000, (6000, 6000, 6000), import_wh=12345,
                                    offered_ma=6000, state=3)
    assert got["M1"] == Measurement("M1", -2000, (1, 2, 3), import_wh=10, export_wh=20)
    assert got["E2"].offered_ma == 0  # "not set" (-1) is no current offered
    assert [got[f"site.{f}"].power_w for f in ("grid", "pv", "house", "cars")] == [
        1500, -2000, 900, 4000]


def test_energy_from_counters_else_from_integrated_power():
    meter = EnergyMeter(max_gap_s=30)
    first = meter.samples(100, [Measurement("M1", 3600, import_wh=1000, export_wh=50),
                                Measurement("M9", 3600)])
    assert [s.energy_mwh for s in first] == [0, 0]  # nothing before the first sample
    later = meter.samples(110, [Measurement("M1", 7200, import_wh=1012, export_wh=52),
                                Measurement("M9", 7200)])
    # counters: (12 - 2) Wh; power: the mean 5400 W for 10 s = 15 Wh
    assert [s.energy_mwh for s in later] == [10_000, 15_000]
    gap = meter.samples(1110, [Measurement("M1", 0, import_wh=1100, export_wh=52),
                               Measurement("M9", 7200)])
    # after a 1000 s gap: counters carry all of it; power counts 30 s at most
    assert [s.energy_mwh for s in gap] == [88_000, 60_000]


def test_a_counter_that_goes_back_falls_back_to_power_and_the_clock_never_goes_back():
    meter = EnergyMeter(max_gap_s=30, last={"E1": Last(100, 1800, 5000, 0)})
    (replaced,) = meter.samples(110, [Measurement("E1", 1800, import_wh=3)])
    assert replaced.energy_mwh == 5000  # 1800 W for 10 s
    assert meter.samples(105, [Measurement("E1", 1800, import_wh=4)]) == []
    assert meter.samples(110, [Measurement("E1", 1800, import_wh=4)]) == []
    (next_one,) = meter.samples(120, [Measurement("E1", 1800, import_wh=6)])
    assert next_one.energy_mwh == 3000


def test_a_sample_older_than_the_rolled_up_buckets_is_refused(tmp_path):
    from chargebrain.recorder.samples import Sample
    from chargebrain.recorder.storage import UsageDb
    from chargebrain.store.db import Store

    store = Store.open(tmp_path)
    db = UsageDb(store.path)
    db.write([Sample(t, Measurement("M1", 100), 1000) for t in range(0, 200, 10)])
    assert db.done[60] == 180
    db.write([Sample(175, Measurement("M2", 100), 1000), Sample(185, Measurement("M2", 1), 7)])
    assert db.late == 1
    db.write([Sample(250, Measurement("M2", 1), 5)])
    rows = db.conn.execute("SELECT s.key, a.t, a.n, a.energy_mwh FROM usage_agg a JOIN"
                           " usage_series s ON s.id = a.series WHERE tier = 60").fetchall()
    assert sorted(rows) == [("M1", 0, 6, 6000), ("M1", 60, 6, 6000), ("M1", 120, 6, 6000),
                            ("M1", 180, 2, 2000), ("M2", 180, 1, 7)]
    store.close()


def test_a_counter_that_jumps_to_another_source_is_no_energy_spike():
    """An EVSE whose attached meter fails shows its own counter (much lower), then the
    meter's again: neither step is energy; the power is integrated instead."""
    meter = EnergyMeter(max_gap_s=30)
    meter.samples(0, [Measurement("E1", 11000, import_wh=50_000)])
    (down,) = meter.samples(10, [Measurement("E1", 11000, import_wh=2_000)])
    (up,) = meter.samples(20, [Measurement("E1", 11000, import_wh=50_061)])
    assert down.energy_mwh == up.energy_mwh == round(11000 * 10 / 3.6)
    # a long gap with charging in it still counts what the counter says
    (after_gap,) = meter.samples(3620, [Measurement("E1", 0, import_wh=61_061)])
    assert after_gap.energy_mwh == 11_000_000
