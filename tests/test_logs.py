"""Client-caused error logs are rate-limited and lose their tracebacks."""

from __future__ import annotations

import logging
import sys

from chargebrain.logs import RateLimitFilter


def _record(msg: str = "bad frame") -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, (), exc_info)


def test_burst_then_silence_then_a_count_in_the_next_window():
    now = [0.0]
    limit = RateLimitFilter(burst=3, window_s=60.0, clock=lambda: now[0])
    passed = [limit.filter(_record()) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limit.dropped == 7
    now[0] = 61.0
    record = _record("again")
    assert limit.filter(record)
    assert record.getMessage() == "again (7 similar messages left out)"
    assert limit.dropped == 0


def test_tracebacks_are_removed():
    limit = RateLimitFilter(burst=5, window_s=60.0, clock=lambda: 0.0)
    record = _record()
    assert record.exc_info is not None
    assert limit.filter(record)
    assert record.exc_info is None
    assert "Traceback" not in logging.Formatter().format(record)
