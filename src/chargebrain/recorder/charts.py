"""The data of one chart: a span ending at `end_s`, in buckets, for a device or the site.

A device chart has the columns t, power_w (mean), power_w_min, power_w_max, energy_wh; the site
chart (`site`) one mean power and one energy column per flow: grid (import positive), PV,
house, cars. Buckets without samples are left out (the chart shows a gap there).
"""

from __future__ import annotations

from dataclasses import dataclass

from chargebrain.recorder.samples import SITE, SITE_SERIES, site_key
from chargebrain.recorder.storage import UsageDb
from chargebrain.recorder.tiers import LEVELS, SPANS, source_level

DEVICE_COLUMNS = ("t", "power_w", "power_w_min", "power_w_max", "energy_wh")
SITE_COLUMNS = ("t", *(f"{f}_w" for f in SITE_SERIES), *(f"{f}_wh" for f in SITE_SERIES))

Row = list[int | float | None]


@dataclass(frozen=True, slots=True)
class Chart:
    dev_id: str
    span: str
    from_s: int
    to_s: int
    bucket_s: int
    columns: tuple[str, ...]
    rows: list[Row]

    def as_json(self) -> dict[str, object]:
        return {"dev_id": self.dev_id, "span": self.span, "from": self.from_s,
                "to": self.to_s, "bucket_s": self.bucket_s, "columns": list(self.columns),
                "rows": self.rows}

    def as_csv(self) -> str:
        lines = [",".join(self.columns)]
        lines += [",".join("" if v is None else str(v) for v in row) for row in self.rows]
        return "\r\n".join(lines) + "\r\n"


def window(length_s: int, bucket_s: int, end_s: int, offset_s: int = 0) -> tuple[int, int]:
    """(from_s, to_s) of `length_s` seconds ending with the bucket that holds `end_s`
    (buckets start at multiples of `bucket_s`, shifted by `offset_s`)."""
    to_s = ((end_s + offset_s) // bucket_s + 1) * bucket_s - offset_s
    return to_s - length_s, to_s


def chart(db: UsageDb, dev_id: str, span: str, end_s: int, offset_s: int = 0) -> Chart:
    """The chart of `dev_id` (or `site`) for `span` ending at `end_s`."""
    length_s, bucket_s = SPANS[span]
    from_s, to_s = window(length_s, bucket_s, end_s, offset_s)
    level = source_level(bucket_s, from_s, db.read_newest_s())
    if LEVELS[level].bucket_s > bucket_s:  # old data: only a coarser tier still has it
        bucket_s = LEVELS[level].bucket_s
        from_s, to_s = window(length_s, bucket_s, end_s, offset_s)
    if dev_id != SITE:
        rows: list[Row] = [[b.t_s, round(b.power_w), b.power_min_w, b.power_max_w,
                            b.energy_mwh / 1000]
                           for b in db.buckets(dev_id, level, from_s, to_s, bucket_s, offset_s)]
        return Chart(dev_id, span, from_s, to_s, bucket_s, DEVICE_COLUMNS, rows)
    by_t: dict[int, Row] = {}
    width = len(SITE_SERIES)
    for i, flow in enumerate(SITE_SERIES):
        for b in db.buckets(site_key(flow), level, from_s, to_s, bucket_s, offset_s):
            row = by_t.setdefault(b.t_s, [b.t_s, *([None] * (2 * width))])
            row[1 + i] = round(b.power_w)
            row[1 + width + i] = b.energy_mwh / 1000
    return Chart(SITE, span, from_s, to_s, bucket_s, SITE_COLUMNS,
                 [by_t[t] for t in sorted(by_t)])
