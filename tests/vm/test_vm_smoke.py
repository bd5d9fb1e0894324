"""Inside the cgroup2 VM (make test-cgroup2): the hierarchy the cgroup tests rely on is there."""

import os
from pathlib import Path

import pytest
import trio

pytestmark = pytest.mark.skipif(
    os.environ.get("JOGGER_IN_VM") != "1",
    reason="runs only inside the cgroup2 VM: make test-cgroup2",
)

ROOT = Path("/sys/fs/cgroup")
WANTED = {"cpu", "memory", "io", "pids"}


def test_root_has_the_controllers_we_use() -> None:
    controllers = set((ROOT / "cgroup.controllers").read_text().split())
    assert controllers >= WANTED


def test_child_cgroup_with_a_memory_limit() -> None:
    (ROOT / "cgroup.subtree_control").write_text("+cpu +memory +io +pids")
    assert set((ROOT / "cgroup.subtree_control").read_text().split()) >= WANTED
    child = ROOT / f"jogger-vm-smoke-{os.getpid()}"
    child.mkdir()
    try:
        assert set((child / "cgroup.controllers").read_text().split()) >= WANTED
        (child / "memory.max").write_text("67108864")
        assert (child / "memory.max").read_text().strip() == "67108864"
    finally:
        child.rmdir()
    assert not child.exists()


async def test_trio_runs_a_subprocess() -> None:
    result = await trio.run_process(["true"])
    assert result.returncode == 0
