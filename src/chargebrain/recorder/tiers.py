"""The resolutions kept, how long, and which one answers a chart (pure).

Every sample is stored raw; closed buckets roll up tier by tier (raw → 1 min → 15 min → 1 h),
each tier from the one below, so a bucket's energy is the sum of its raw samples' energy.
Retention is counted back from the newest sample (the data's own clock, not the wall clock).

Size, measured by tests/recorder/test_year.py (20 devices + the 4 site flows, a year):
raw ≈ 45 B per sample, a bucket ≈ 35 B; see docs/web.md "Usage graphs".
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_S = 86400


@dataclass(frozen=True, slots=True)
class Level:
    bucket_s: int  # 10 = raw samples (nominal; the tick is rec_interval_s)
    retention_s: int | None  # None = forever

    @property
    def is_raw(self) -> bool:
        return self is LEVELS[0]


LEVELS: tuple[Level, ...] = (
    Level(10, 2 * DAY_S),
    Level(60, 10 * DAY_S),
    Level(900, 40 * DAY_S),
    Level(3600, None),
)
ROLLUPS = LEVELS[1:]  # the downsampled tiers, each rolled up from the level before it

SPANS: dict[str, tuple[int, int]] = {  # span → (length s, chart bucket s)
    "hour": (3600, 10),
    "day": (DAY_S, 60),
    "week": (7 * DAY_S, 900),
    "month": (31 * DAY_S, 3600),
    "year": (365 * DAY_S, DAY_S),
}


def source_level(bucket_s: int, from_s: int, newest_s: int | None) -> int:
    """Index in LEVELS of the level a chart of `bucket_s` buckets from `from_s` on is read
    from: the coarsest whose bucket divides `bucket_s`, or a coarser one where that one's
    retention no longer reaches back to `from_s`."""
    index = max(i for i, lv in enumerate(LEVELS) if bucket_s % lv.bucket_s == 0)
    while newest_s is not None and index < len(LEVELS) - 1:
        retention = LEVELS[index].retention_s
        if retention is None or from_s >= newest_s - retention:
            break
        index += 1
    return index
