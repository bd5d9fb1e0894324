"""Fixtures for every test folder: an engine, the test PKI, an in-process server."""

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
import trio

from jogger import JobManager, ManagerLimits
from tests.pki import Pki, make_pki
from tests.servers import Server, server_config, start_server

pytest_plugins = ("tests.leaks",)  # no child process or cgroup left after any test


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[JobManager]:
    async with JobManager(
        tmp_path / "state", grace=2.0, limits=ManagerLimits(max_jobs=64)
    ) as manager:
        yield manager


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for localhost, and users' certificates (see pki.py)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def server(pki: Pki, tmp_path: Path, nursery: trio.Nursery) -> Server:
    """jogger-server in this process, on a free loopback port, until the test ends."""
    config = server_config(pki, tmp_path / "state")
    return await start_server(nursery, pki, config)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Keep the reason of a ``pytest.skip(reason)`` inside a trio test.

    pytest-trio 0.8 unwraps the nursery's ExceptionGroup around a skip and raises a new
    ``pytest.skip()`` with no reason, so that ``-rs`` would list only "Skipped". The group
    is that new exception's context: raise the original skip from it.
    """
    try:
        return (yield)
    except pytest.skip.Exception as exc:
        inner = exc.__context__
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if not exc.msg and isinstance(inner, pytest.skip.Exception) and inner.msg:
            raise inner from None  # itself: -rs names the line that skipped
        raise
