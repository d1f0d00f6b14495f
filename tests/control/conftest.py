"""The shared fixture of the control tests: a running app on a fake clock."""

from __future__ import annotations

import pytest

from tests.control.helpers import clocked_app


@pytest.fixture
async def site(tmp_path):
    """The app over real HTTP with a fake clock (no slow-down after a wrong password)."""
    async with clocked_app(tmp_path / "data") as running:
        running.app.auth.max_delay_s = 0.0
        yield running
