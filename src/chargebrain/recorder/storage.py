"""The usage tables (store/schema.py `0007_usage`) through a connection of their own.

`UsageDb` is used from one thread at a time (the recorder's writer thread, or a query under
the recorder's read lock); it never touches the main store's connection, so the control cycle
and the API never wait on it. Writes are batched (one transaction per batch) and, unlike the
configuration, not synced on every commit (`synchronous=NORMAL`): a crash may lose the last
seconds of recording, never the database.

Rollup: after each batch, every bucket that is now closed moves one tier up (raw → 60 s →
900 s → 3600 s) with the sample count, the n-weighted mean, min and max power and the summed
energy (integer mWh, so every tier sums to exactly the raw energy). Then what every tier holds
past its retention, and what the next tier already has, is deleted.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from chargebrain.recorder.samples import Last, Sample
from chargebrain.recorder.tiers import LEVELS, ROLLUPS, Level


@dataclass(frozen=True, slots=True)
class Bucket:
    """One chart row: bucket start, raw samples in it, mean/min/max power, energy."""

    t_s: int
    n: int
    power_w: float
    power_min_w: int
    power_max_w: int
    energy_mwh: int


class UsageDb:
    """The usage tables of the database at `path` (its schema migrated by `Store.open`)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.series: dict[str, int] = dict(self.conn.execute(
            "SELECT key, id FROM usage_series"))
        self.done: dict[int, int] = dict(self.conn.execute(
            "SELECT tier, done_t FROM usage_rollup"))
        self.newest_s = self.read_newest_s()
        self.late = 0  # samples refused: older than the first rolled-up bucket

    def read_newest_s(self) -> int | None:
        """The newest sample's time as the database has it (None: nothing recorded)."""
        newest = None
        for (series_id,) in self.conn.execute("SELECT id FROM usage_series").fetchall():
            (t,) = self.conn.execute("SELECT max(t) FROM usage_raw WHERE series=?",
                                     (series_id,)).fetchone()
            if t is not None and (newest is None or t > newest):
                newest = int(t)
        return newest

    def close(self) -> None:
        self.conn.close()

    def last_samples(self) -> dict[str, Last]:
        """Each series' newest raw sample (to continue the energy count after a restart)."""
        out = {}
        for key, series_id in self.series.items():
            row = self.conn.execute(
                "SELECT t, power_w, import_wh, export_wh FROM usage_raw WHERE series=?"
                " ORDER BY t DESC LIMIT 1", (series_id,)).fetchone()
            if row is not None:
                out[key] = Last(*row)
        return out

    def _series_id(self, key: str) -> int:
        found = self.series.get(key)
        if found is None:
            cur = self.conn.execute("INSERT INTO usage_series(key) VALUES (?)", (key,))
            found = self.series[key] = int(cur.lastrowid or 0)
        return found

    # -- writing ------------------------------------------------------------------------------

    def write(self, samples: list[Sample]) -> None:
        """Store a batch of samples and roll up what it closes, in one transaction. Samples
        come in time order (a tick holds every series); one older than a bucket that is
        rolled up already is refused (counted in `late`), so every tier keeps the raw
        energy exactly."""
        first_open = self.done.get(ROLLUPS[0].bucket_s, 0)
        if any(s.t_s < first_open for s in samples):
            # before a bucket that is rolled up already: the tiers would disagree with raw
            kept = [s for s in samples if s.t_s >= first_open]
            self.late += len(samples) - len(kept)
            samples = kept
        if not samples:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            rows = [(self._series_id(s.m.key), s.t_s, s.m.power_w, *s.m.currents_ma,
                     s.m.import_wh, s.m.export_wh, s.energy_mwh, s.m.offered_ma, s.m.state)
                    for s in samples]
            self.conn.executemany(
                "INSERT OR IGNORE INTO usage_raw VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            newest = max(s.t_s for s in samples)
            if self.newest_s is None or newest > self.newest_s:
                self.newest_s = newest
            self._rollup()
        except BaseException:
            self.conn.execute("ROLLBACK")
            self._reload()
            raise
        self.conn.execute("COMMIT")

    def _reload(self) -> None:
        """After a rolled-back batch: the caches as the database has them."""
        self.series = dict(self.conn.execute("SELECT key, id FROM usage_series"))
        self.done = dict(self.conn.execute("SELECT tier, done_t FROM usage_rollup"))

    def _rollup(self) -> None:
        assert self.newest_s is not None
        final_s = self.newest_s  # raw: every bucket that ends at or before the newest sample
        for index, level in enumerate(ROLLUPS, start=1):
            source = LEVELS[index - 1]
            bucket = level.bucket_s
            upto = final_s // bucket * bucket  # buckets before this are closed
            since = self.done.get(bucket, 0)
            if upto > since:
                self._roll(source, level, since, upto)
                self.done[bucket] = upto
                self.conn.execute("INSERT OR REPLACE INTO usage_rollup VALUES (?, ?)",
                                  (bucket, upto))
                self._prune(source, upto)
            final_s = self.done.get(bucket, 0)

    def _roll(self, source: Level, level: Level, since: int, upto: int) -> None:
        b = level.bucket_s
        if source.is_raw:
            self.conn.execute(
                "INSERT OR REPLACE INTO usage_agg SELECT ?, series, t / ? * ?, count(*),"
                " CAST(round(avg(power_w)) AS INTEGER), min(power_w), max(power_w),"
                " sum(energy_mwh) FROM usage_raw"
                " WHERE series IN (SELECT id FROM usage_series) AND t >= ? AND t < ?"
                " GROUP BY series, t / ?", (b, b, b, since, upto, b))
        else:
            self.conn.execute(
                "INSERT OR REPLACE INTO usage_agg SELECT ?, series, t / ? * ?, sum(n),"
                " CAST(round(1.0 * sum(power_w * n) / sum(n)) AS INTEGER), min(power_min_w),"
                " max(power_max_w), sum(energy_mwh) FROM usage_agg"
                " WHERE tier = ? AND series IN (SELECT id FROM usage_series)"
                " AND t >= ? AND t < ? GROUP BY series, t / ?",
                (b, b, b, source.bucket_s, since, upto, b))

    def _prune(self, source: Level, rolled_upto: int) -> None:
        """Delete what `source` holds past its retention (only what was rolled up)."""
        assert self.newest_s is not None and source.retention_s is not None
        cutoff = min(self.newest_s - source.retention_s, rolled_upto)
        if source.is_raw:
            self.conn.execute("DELETE FROM usage_raw WHERE series IN"
                              " (SELECT id FROM usage_series) AND t < ?", (cutoff,))
        else:
            self.conn.execute("DELETE FROM usage_agg WHERE tier = ? AND series IN"
                              " (SELECT id FROM usage_series) AND t < ?",
                              (source.bucket_s, cutoff))

    # -- reading ------------------------------------------------------------------------------

    def buckets(self, key: str, level_index: int, from_s: int, to_s: int, bucket_s: int,
                offset_s: int = 0) -> list[Bucket]:
        """The buckets of `bucket_s` seconds (starts shifted by `offset_s`, e.g. a time zone)
        of series `key` in [from_s, to_s), read from LEVELS[level_index]; the part a tier
        has not rolled up yet comes from the finer tiers."""
        series_id = self.series.get(key)
        if series_id is None:
            series_id_row = self.conn.execute("SELECT id FROM usage_series WHERE key=?",
                                              (key,)).fetchone()
            if series_id_row is None:
                return []
            series_id = int(series_id_row[0])
        acc: dict[int, list[float]] = {}
        self.conn.execute("BEGIN")  # one snapshot: the tiers as one rollup left them
        try:
            done = dict(self.conn.execute("SELECT tier, done_t FROM usage_rollup"))
            index, lo = level_index, from_s
            while lo < to_s:
                level = LEVELS[index]
                hi = to_s if level.is_raw else min(to_s, done.get(level.bucket_s, 0))
                if hi > lo:
                    self._read(series_id, level, lo, hi, bucket_s, offset_s, acc)
                    lo = hi
                if level.is_raw:
                    break
                index -= 1
        finally:
            self.conn.execute("COMMIT")
        return [Bucket(int(t), int(n), psum / n, int(pmin), int(pmax), int(e))
                for t, (n, psum, pmin, pmax, e) in sorted(acc.items())]

    def _read(self, series_id: int, level: Level, lo: int, hi: int, bucket_s: int,
              offset_s: int, acc: dict[int, list[float]]) -> None:
        if level.is_raw:
            rows = self.conn.execute(
                "SELECT (t + ?) / ? * ? - ?, count(*), sum(power_w), min(power_w),"
                " max(power_w), sum(energy_mwh) FROM usage_raw"
                " WHERE series = ? AND t >= ? AND t < ? GROUP BY 1",
                (offset_s, bucket_s, bucket_s, offset_s, series_id, lo, hi))
        else:
            rows = self.conn.execute(
                "SELECT (t + ?) / ? * ? - ?, sum(n), sum(power_w * n), min(power_min_w),"
                " max(power_max_w), sum(energy_mwh) FROM usage_agg"
                " WHERE tier = ? AND series = ? AND t >= ? AND t < ? GROUP BY 1",
                (offset_s, bucket_s, bucket_s, offset_s, level.bucket_s, series_id, lo, hi))
        for t, n, psum, pmin, pmax, energy in rows:
            have = acc.get(t)
            if have is None:
                acc[t] = [n, psum, pmin, pmax, energy]
            else:
                have[0] += n
                have[1] += psum
                have[2] = min(have[2], pmin)
                have[3] = max(have[3], pmax)
                have[4] += energy

    def size_bytes(self) -> int:
        """The database file's size (every table, free pages included)."""
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        page_count = self.conn.execute("PRAGMA page_count").fetchone()[0]
        return int(page_size) * int(page_count)
