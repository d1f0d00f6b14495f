from __future__ import annotations

import pytest

from tests.support.server import running_app


@pytest.fixture
async def cb(tmp_path):
    """A running chargebrain (in this event loop) with a fresh data dir; yields `Running`."""
    async with running_app(tmp_path / "data") as running:
        yield running
