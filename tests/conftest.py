from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jogger import JobManager, Limits


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[JobManager]:
    async with JobManager(tmp_path / "state", grace=2.0, limits=Limits(max_jobs=64)) as manager:
        yield manager
