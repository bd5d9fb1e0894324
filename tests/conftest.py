"""Fixtures for every test folder: an engine, the test PKI, an in-process server."""

import contextlib
import glob
import os
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import trio

from jogger import JobManager, ManagerLimits
from tests.pki import Pki, make_pki
from tests.procs import my_children
from tests.servers import Server, server_config, start_server


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[JobManager]:
    async with JobManager(
        tmp_path / "state", grace=2.0, limits=ManagerLimits(max_jobs=64)
    ) as manager:
        yield manager


@pytest.fixture(autouse=True)
def _no_zombie_left() -> Iterator[None]:
    """A child of this process that ended is reaped by the test that started it.

    An unreaped child is a leak (a process-table slot, and a pid nobody may reuse), and
    tests that check for children left would blame the tests that run after it. This fails
    the test that leaked it, then reaps it, so that it is blamed once.
    """
    before = {p.pid for p in my_children() if p.state == "Z"}
    yield
    leaked = [p for p in my_children() if p.state == "Z" and p.pid not in before]
    names = [f"{p.pid} ({_comm(p.pid)}, session {p.sid})" for p in leaked]
    for p in leaked:
        os.waitpid(p.pid, os.WNOHANG)
    assert names == [], "a child process ended and was never reaped"


@pytest.fixture(autouse=True)
def _no_cgroup_left() -> Iterator[None]:
    """Every cgroup of ours (``jogger-*``, in any hierarchy) a test made is gone by its end:
    a manager removes its own group when it ends, and a crashed one's is the next one's on
    that state dir to remove. Fails the test that left one, then removes those that are
    empty, so that it is blamed once."""
    before = set(_our_cgroups())
    yield
    left = sorted(set(_our_cgroups()) - before)
    for group in sorted(left, key=lambda path: -path.count("/")):  # the deepest first
        with contextlib.suppress(OSError):  # not empty: it stays, and shows
            os.rmdir(group)
    assert left == [], "a cgroup was left behind"


def _our_cgroups() -> list[str]:
    # (Each group, and every group in it: "**" matches no directory too.)
    return glob.glob("/sys/fs/cgroup/**/jogger-*/**/", recursive=True)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


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
