"""Logging set-up: keep hostile or broken clients from flooding the log.

aiohttp logs every unparsable HTTP request, and pymodbus every malformed frame, at ERROR with a
traceback or a frame dump. Those are the client's fault, not ours: they are rate-limited and
logged without a traceback, with a count of what was left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

CLIENT_ERROR_LOGGERS = ("aiohttp.server", "pymodbus.logging")


class RateLimitFilter(logging.Filter):
    """Let at most `burst` records through per `window_s` seconds; drop the rest and say how
    many were dropped on the next record let through. Tracebacks are removed."""

    def __init__(self, burst: int = 10, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._window_start = clock()
        self._passed = 0
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        if now - self._window_start >= self.window_s:
            self._window_start, self._passed = now, 0
        if self._passed >= self.burst:
            self.dropped += 1
            return False
        self._passed += 1
        record.exc_info = None
        record.exc_text = None
        if self.dropped:
            record.msg = f"{record.getMessage()} ({self.dropped} similar messages left out)"
            record.args = ()
            self.dropped = 0
        return True


def limit_client_errors(burst: int = 10, window_s: float = 60.0) -> None:
    """Install a `RateLimitFilter` on the loggers that report client-caused errors."""
    for name in CLIENT_ERROR_LOGGERS:
        logging.getLogger(name).addFilter(RateLimitFilter(burst, window_s))
