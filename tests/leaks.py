"""Checks after every test (a pytest plugin, see conftest.py): no child process and no
cgroup of ours left behind.

A leak is blamed on the test that made it, once: what was there before a test is not its.
A child left running is remembered, and reaped (not blamed again) once it has exited, since
tests that check for children left would otherwise fail on it, one after another.
"""

import functools
import glob
import os
from collections.abc import Iterator

import pytest

from jogger.engine import cgroups
from tests.procs import Proc, my_children, reap

_left_running: set[int] = set()
"""Children a test left running (already blamed): reaped, quietly, once they have exited."""


@pytest.fixture(autouse=True)
def _no_child_left() -> Iterator[None]:
    """Every child process a test started has ended, and been reaped, by its end."""
    _reap_the_blamed()
    before = {p.pid for p in my_children()}
    yield
    left = [p for p in my_children() if p.pid not in before]
    described = [_describe(p) for p in left]
    for p in left:
        if p.state == "Z":
            reap(p.pid)
        else:
            _left_running.add(p.pid)
    assert described == [], "a child process was left behind"


@pytest.fixture(autouse=True)
def _no_cgroup_left() -> Iterator[None]:
    """Every cgroup of ours (``jogger-*``) a test made under this process's own cgroups is
    gone by its end: a manager removes its own when it ends, and a crashed one's is the next
    one's on that state dir to remove. Nothing is removed here: it shows, for the record."""
    before = set(_our_cgroups())
    yield
    left = sorted(set(_our_cgroups()) - before)
    assert left == [], "a cgroup was left behind"


def _reap_the_blamed() -> None:
    running = {p.pid for p in my_children() if p.state != "Z"}
    for pid in list(_left_running):
        if pid not in running:
            reap(pid)
            _left_running.discard(pid)


def _describe(p: Proc) -> str:
    state = "ended, never reaped" if p.state == "Z" else "still running"
    return f"{p.pid} ({_comm(p.pid)}, {state}, session {p.sid})"


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _our_cgroups() -> list[str]:
    # Each jogger-* group at any depth below our own cgroups, and every group in it ("**"
    # matches no directory too).
    return [
        found
        for base in _own_cgroup_dirs()
        for found in glob.glob(f"{glob.escape(base)}/**/jogger-*/**/", recursive=True)
    ]


@functools.cache
def _own_cgroup_dirs() -> list[str]:
    """This process's cgroup directory in each cgroup mount, as it was at the first look: an
    in-process manager on cgroup v2 may move us into a leaf of it (``server``)."""
    own = cgroups._own_cgroups()
    found = set()
    for mount, kind, options in cgroups._mounts():
        keys = [""] if kind == "cgroup2" else [o for o in options if o]
        keys = [k for k in keys if k in own]
        if keys:
            found.add(os.path.realpath(mount / own[keys[0]].lstrip("/")))
    return sorted(found)
