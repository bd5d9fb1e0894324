"""Fixtures the engine's tests share."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jogger.engine.store import JobStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    opened = JobStore(tmp_path / "jobs.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
