"""Helpers for device tests that drive readings and setpoints by hand."""

from __future__ import annotations

from typing import Any


async def stop_cycle(running: Any) -> None:
    """Stop the control cycle of a running app (if it has one) before the test touches device
    state itself, so no periodic or push-triggered cycle writes setpoints or status in between.
    It has not taken control yet at that point (its first cycle comes one period after start),
    so stopping writes nothing."""
    cycle = getattr(running.app, "cycle", None)
    if cycle is not None:
        await cycle.stop()
