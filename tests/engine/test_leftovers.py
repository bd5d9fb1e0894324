"""What a job leaves behind when its main process exits dies with it: the supervisor kills
its children, and walks /proc for their descendants only when it has a child to start from
(supervise.c, kill_children)."""

from pathlib import Path

import trio

from jogger import JobManager, JobState
from tests.procs import eventually, is_alive

# A child in a session of its own, with a child of its own (a grandchild of the job's main
# process, out of its process group), both written down before the main process exits.
LEAVES_A_TREE = (
    "setsid sh -c 'sleep 300 & echo $! > grandchild; wait' & echo $! > child; "
    "while [ ! -s grandchild ]; do sleep 0.01; done; exit 0"
)


async def test_a_tree_a_job_leaves_in_a_new_session_dies_with_the_job(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    async with JobManager(tmp_path / "state", cgroups="none") as jobs:
        with trio.fail_after(30):
            status = await jobs.start("alice", ["sh", "-c", LEAVES_A_TREE], cwd=str(work))
            final = await jobs.wait("alice", status.id)
            assert final.state is JobState.COMPLETED
            left = [int((work / name).read_text()) for name in ("child", "grandchild")]

            async def gone() -> bool:  # reaped by now, or dying
                await trio.lowlevel.checkpoint()
                return not any(is_alive(pid) for pid in left)

            await eventually(gone)


async def test_a_job_that_leaves_nothing_ends_as_before(tmp_path: Path) -> None:
    async with JobManager(tmp_path / "state", cgroups="none") as jobs:
        with trio.fail_after(30):
            status = await jobs.start("alice", ["sh", "-c", "exit 3"])
            final = await jobs.wait("alice", status.id)
    assert final.state is JobState.FAILED
    assert final.exit_code == 3
