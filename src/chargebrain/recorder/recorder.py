"""The recorder in the running process: a tick on the event loop, the writes in a thread.

Every `rec_interval_s` (0 = off) an asyncio task takes the measurements out of the state
snapshot (`read_dev_info`, the decoded get_dev_info answer) and hands them to a bounded queue;
it never waits for the disk. A writer thread drains the queue, gives every sample its energy
(`samples.EnergyMeter`) and stores each drained batch in one transaction with its rollups
(`storage.UsageDb`, a connection of its own). The control cycle never calls the recorder.

A failing disk is contained: the first failure is logged (once, until a batch is stored
again), the batch is dropped and the energy count is kept as before it, so a counter-based
series gets the missing energy with its next stored sample. When the writer falls behind,
the oldest queued ticks are dropped (logged once). Queries run in a worker thread on a third
connection, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chargebrain.recorder.charts import Chart, chart
from chargebrain.recorder.samples import EnergyMeter, Measurement, measurements
from chargebrain.recorder.storage import UsageDb

log = logging.getLogger(__name__)

QUEUE_TICKS = 360  # an hour of 10 s ticks waits for a slow disk, then the oldest go
MAX_GAP_FACTOR = 3  # power is integrated over at most 3 intervals (a longer gap is a gap)
MIN_GAP_S = 30

Tick = tuple[int, list[Measurement]]


class UsageUnavailable(Exception):
    """The recorded data cannot be read now (the database failed); nothing was changed."""


class UsageRecorder:
    """Records `read_dev_info()` every `interval_s()` seconds into the database at `db_path`."""

    def __init__(self, db_path: Path, read_dev_info: Callable[[], dict[str, Any]],
                 clock: Callable[[], float], interval_s: Callable[[], int]) -> None:
        self.db_path = db_path
        self.read_dev_info = read_dev_info
        self.clock = clock
        self.interval_s = interval_s
        self.ticks = 0  # ticks queued (for tests and benchmarks)
        self.stored = 0  # ticks stored
        self.dropped = 0  # ticks lost (queue full or a failed write)
        self._queue: queue.Queue[Tick | None] = queue.Queue(QUEUE_TICKS)
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._reader: UsageDb | None = None
        self._read_lock = threading.Lock()
        self._failing = False
        self._overflowing = False
        self._last_tick_s: int | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread and the tick task (in the running event loop)."""
        self._thread = threading.Thread(target=self._write_loop, name="usage-recorder",
                                        daemon=True)
        self._thread.start()
        self._task = asyncio.get_running_loop().create_task(self._tick_loop(),
                                                            name="usage-recorder")

    async def stop(self) -> None:
        """Stop ticking, store what is queued, close the connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            self._put(None)
            await asyncio.to_thread(self._thread.join, 30)
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    async def _tick_loop(self) -> None:
        while True:
            interval = self.interval_s()
            if interval <= 0:
                await asyncio.sleep(5)
                continue
            # ticks on multiples of the interval, so every series shares the same timestamps
            now = self.clock()
            await asyncio.sleep(interval - now % interval)
            try:
                self.tick()
            except Exception:
                log.exception("usage recorder: reading the state failed")

    def tick(self) -> None:
        """Queue the measurements of now (cheap; never waits for the disk). A second tick
        in the same second (a timer that woke a little early) is skipped."""
        t_s = round(self.clock())
        if t_s == self._last_tick_s:
            return
        self._last_tick_s = t_s
        self._put((t_s, measurements(self.read_dev_info())))
        self.ticks += 1

    def _put(self, item: Tick | None) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
                    self.dropped += 1
                if not self._overflowing:
                    self._overflowing = True
                    log.warning("usage recorder: the disk is too slow, dropping the oldest"
                                " measurements")

    # -- the writer thread --------------------------------------------------------------------

    def _write_loop(self) -> None:
        db: UsageDb | None = None
        meter: EnergyMeter | None = None
        while True:
            item = self._queue.get()
            batch: list[Tick] = [] if item is None else [item]
            stopping = item is None
            while not stopping:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                else:
                    batch.append(more)
            if batch:
                try:
                    if db is None:
                        db = UsageDb(self.db_path)
                        meter = EnergyMeter(self._max_gap_s(), db.last_samples())
                    assert meter is not None
                    self._store(db, meter, batch)
                except Exception as err:
                    self.dropped += len(batch)
                    if not self._failing:
                        self._failing = True
                        log.error("usage recorder: storing measurements failed (%s); graphs"
                                  " miss this time until it works again", err)
            if stopping:
                break
        if db is not None:
            db.close()

    def _store(self, db: UsageDb, meter: EnergyMeter, batch: list[Tick]) -> None:
        before = dict(meter.last)
        meter.max_gap_s = self._max_gap_s()
        try:
            samples = [s for t_s, ms in batch for s in meter.samples(t_s, ms)]
            db.write(samples)
        except BaseException:
            meter.last = before  # the next stored sample covers the lost interval
            raise
        self.stored += len(batch)
        self._overflowing = False
        if self._failing:
            self._failing = False
            log.info("usage recorder: storing measurements works again")

    def _max_gap_s(self) -> int:
        return max(MIN_GAP_S, MAX_GAP_FACTOR * self.interval_s())

    # -- queries ------------------------------------------------------------------------------

    async def chart(self, dev_id: str, span: str, end_s: int, offset_s: int = 0) -> Chart:
        """The chart data (see charts.py), read in a worker thread."""
        return await asyncio.to_thread(self._chart, dev_id, span, end_s, offset_s)

    def _chart(self, dev_id: str, span: str, end_s: int, offset_s: int) -> Chart:
        with self._read_lock:
            try:
                if self._reader is None:
                    self._reader = UsageDb(self.db_path)
                return chart(self._reader, dev_id, span, end_s, offset_s)
            except sqlite3.Error as err:
                if self._reader is not None:  # the next query opens a fresh connection
                    with contextlib.suppress(sqlite3.Error):
                        self._reader.close()
                    self._reader = None
                log.warning("usage recorder: reading failed: %s", err)
                raise UsageUnavailable(str(err)) from err

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued tick is stored or dropped (tests, benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.stored + self.dropped < self.ticks and loop.time() < deadline:
            await asyncio.sleep(0.01)
