"""A year of 20 devices and the site, recorded in accelerated time into a real SQLite store:
it fits in a few tens of MB, every downsampled bucket holds exactly the energy of its raw
samples, and the year's energy is what the counters say."""

from __future__ import annotations

from collections import defaultdict

import pytest

from chargebrain.recorder.charts import chart
from chargebrain.recorder.samples import EnergyMeter, Sample
from chargebrain.recorder.storage import UsageDb
from chargebrain.recorder.tiers import LEVELS
from chargebrain.store.db import Store
from tests.recorder.year import END_S, YEAR_S, ticks, twenty_devices

MAX_SIZE_BYTES = 40_000_000
BATCH_TICKS = 6  # the writer stores what queued meanwhile in one transaction
DETAIL = ("E1", "M2", "M7", "site.grid")  # series checked bucket by bucket in the finer tiers


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """(db, raw energy per (tier, key, bucket start), first/last sample per key)."""
    store = Store.open(tmp_path_factory.mktemp("year"))
    db = UsageDb(store.path)
    site = twenty_devices()
    meter = EnergyMeter(max_gap_s=3600)  # the schedule's widest step: integrate every gap
    raw: dict[tuple[int, str, int], int] = defaultdict(int)
    first: dict[str, Sample] = {}
    last: dict[str, Sample] = {}
    kept_from = {lv.bucket_s: END_S - lv.retention_s for lv in LEVELS if lv.retention_s}
    batch: list[Sample] = []
    pending = 0
    for t in ticks():
        samples = meter.samples(t, site.measurements(t))
        for s in samples:
            key = s.m.key
            first.setdefault(key, s)
            last[key] = s
            raw[(3600, key, t // 3600 * 3600)] += s.energy_mwh
            if key in DETAIL:
                for tier in (60, 900):
                    if t >= kept_from[tier] - tier:
                        raw[(tier, key, t // tier * tier)] += s.energy_mwh
        batch += samples
        pending += 1
        if pending == BATCH_TICKS:
            db.write(batch)
            batch, pending = [], 0
    db.write(batch)
    yield db, raw, first, last
    db.close()
    store.close()


def test_a_year_of_twenty_devices_fits_in_a_few_tens_of_mb(year):
    db, _, first, _ = year
    assert len(first) == 24  # 20 devices + grid, PV, house, cars
    size = db.size_bytes()
    print(f"a year of 20 devices + site: {size / 1e6:.1f} MB")
    assert size < MAX_SIZE_BYTES
    # what each tier keeps at the end: its retention's worth of buckets (and no more)
    for level in LEVELS[1:]:
        (oldest,) = db.conn.execute("SELECT min(t) FROM usage_agg WHERE tier=?",
                                    (level.bucket_s,)).fetchone()
        span = END_S - oldest
        assert span <= (level.retention_s or YEAR_S) + 2 * level.bucket_s
    (oldest_raw,) = db.conn.execute("SELECT min(t) FROM usage_raw").fetchone()
    assert END_S - oldest_raw <= LEVELS[0].retention_s + 60


def test_every_hour_of_the_year_holds_exactly_its_raw_energy(year):
    db, raw, first, last = year
    stored = {(key, t): e for key, t, e in db.conn.execute(
        "SELECT s.key, a.t, a.energy_mwh FROM usage_agg a JOIN usage_series s"
        " ON s.id = a.series WHERE a.tier = 3600")}
    expected = {(key, t): e for (tier, key, t), e in raw.items() if tier == 3600}
    done = db.done[3600]
    assert {k: v for k, v in expected.items() if k[1] < done} == stored
    assert len(stored) > 24 * 8700
    for key in first:  # over the year, counters and integrated power alike
        year_mwh = sum(e for (k, _), e in stored.items() if k == key)
        open_mwh = sum(e for (k, t), e in expected.items() if k == key and t >= done)
        assert year_mwh + open_mwh == sum(e for (k, _), e in expected.items() if k == key)
        if first[key].m.import_wh:  # a counter device: the counters' difference
            d_counters = (last[key].m.import_wh - first[key].m.import_wh
                          - last[key].m.export_wh + first[key].m.export_wh)
            assert year_mwh + open_mwh == d_counters * 1000


@pytest.mark.parametrize("tier", [60, 900])
def test_finer_tiers_hold_exactly_their_raw_energy(year, tier):
    db, raw, _, _ = year
    for key in DETAIL:
        stored = dict(db.conn.execute(
            "SELECT a.t, a.energy_mwh FROM usage_agg a JOIN usage_series s ON s.id = a.series"
            " WHERE a.tier = ? AND s.key = ?", (tier, key)))
        assert len(stored) > 0.9 * LEVELS[[lv.bucket_s for lv in LEVELS].index(tier)
                                          ].retention_s / tier
        expected = {t: e for (tr, k, t), e in raw.items() if tr == tier and k == key}
        assert all(expected[t] == e for t, e in stored.items()), key


def test_charts_of_the_year_add_up_to_the_raw_energy(year):
    db, raw, _, _ = year
    for key in ("E3", "M9", "site.pv"):
        year_chart = chart(db, key, "year", END_S)
        rows = year_chart.rows
        assert len(rows) == 365 and year_chart.bucket_s == 86400
        total = sum(e for (tier, k, t), e in raw.items()
                    if tier == 3600 and k == key and t >= year_chart.from_s)
        assert round(sum(r[4] for r in rows) * 1000) == total
        day = chart(db, key, "day", END_S - 3600)  # raw for the open hour
        assert day.bucket_s == 60 and len(day.rows) > 1400
    site = chart(db, "site", "week", END_S)
    assert site.columns[:5] == ("t", "grid_w", "pv_w", "house_w", "cars_w")
    assert site.bucket_s == 900 and len(site.rows) == 7 * 96
    old = chart(db, "E1", "day", END_S - 100 * 86400)  # only the hourly tier reaches back
    assert old.bucket_s == 3600 and len(old.rows) == 24
