"""Jobs outlive their manager: kept at shutdown, or orphaned by a crash, and adopted by the next.

Real supervisors, real processes, real cgroups where the machine has them; a crash is a
manager in a subprocess killed with SIGKILL.
"""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from jogger import JobLimits, JobManager, JobState, ManagerLimits
from jogger.engine import OutputWindow
from jogger.engine.procfs import proc_stat
from tests.engine.test_accounts import job_cgroups
from tests.procs import PYTHON, eventually, is_alive, my_children, processes
from tests.procs import collect as read_all

LIMITS = ManagerLimits(max_jobs=256, max_jobs_per_owner=256)
# Prints numbered lines for a while, then exits 3.
COUNTER = (
    "import sys, time\n"
    "for i in range(int(sys.argv[1])):\n"
    "    sys.stdout.write(f'{i}\\n'); sys.stdout.flush(); time.sleep(0.002)\n"
    "sys.exit(3)\n"
)
# A grandchild that left the job's session, then the job waits.
SETSID_DOUBLE_FORK = "(setsid sleep 300 & echo grandchild $!); echo ready; sleep 300"
CRASHABLE = """
import json, sys, trio
from jogger import JobManager, ManagerLimits
async def main():
    limits = ManagerLimits(max_jobs=256, max_jobs_per_owner=256)
    async with JobManager(sys.argv[1], grace=1.0, limits=limits) as jobs:
        for argv in json.loads(sys.argv[2]):
            status = await jobs.start("alice", argv)
            print(status.id, flush=True)
        print("ready", flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


def manager(state: Path, **kwargs: object) -> JobManager:
    kwargs.setdefault("grace", 1.0)
    return JobManager(state, limits=LIMITS, **kwargs)  # type: ignore[arg-type]


async def crashed_manager(state: Path, jobs: list[list[str]]) -> list[str]:
    """Start ``jobs`` in a manager in another process, then SIGKILL it; the job ids."""
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [PYTHON, "-c", CRASHABLE, str(state), json.dumps(jobs)],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        out = b""
        while not out.endswith(b"ready\n"):
            chunk = await process.stdout.receive_some()
            assert chunk, f"the manager died: {out!r}"
            out += chunk
        process.kill()
        await process.wait()
        await process.stdout.aclose()
    return out.decode().split()[:-1]


async def kept(state: Path, jobs: list[list[str]], **kwargs: object) -> list[str]:
    """Start ``jobs`` in a manager that leaves them running when it exits; the job ids."""
    with trio.fail_after(60):
        async with manager(state, on_shutdown="keep", **kwargs) as first:
            return [(await first.start("alice", argv)).id for argv in jobs]


def supervisor_of(job_pid: int) -> int:
    found = [p for p in processes() if p.pid == job_pid]
    assert found, f"job process {job_pid} is gone"
    return found[0].ppid


async def reap(supervisor: int) -> None:
    """End a supervisor this process started and no manager adopted, and collect it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(supervisor, signal.SIGUSR1)  # its job is killed, and it ends
    pidfd = os.pidfd_open(supervisor)
    try:
        with trio.fail_after(30):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    collect(supervisor)


def collect(pid: int) -> None:
    """Reap our child ``pid``, which has exited."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)


def end_file(state: Path, job_id: str) -> Path:
    return state / "run" / f"{job_id}.end"


@asynccontextmanager
async def adopting(state: Path, **kwargs: object) -> AsyncIterator[JobManager]:
    with trio.fail_after(120):
        async with manager(state, **kwargs) as jobs:
            yield jobs


async def test_kept_jobs_run_on_and_the_next_manager_adopts_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (job_id,) = await kept(state, [[PYTHON, "-c", COUNTER, "3000"]])
    async with adopting(state) as jobs:
        status = await jobs.status("alice", job_id)
        assert status.state is JobState.RUNNING
        out = await read_all(jobs.output("alice", job_id))  # from byte 0, live, to the end
        final = await jobs.wait("alice", job_id)
    assert out == b"".join(b"%d\n" % i for i in range(3000))
    assert (final.state, final.exit_code) == (JobState.FAILED, 3)
    assert final.output_bytes == len(out)
    assert not end_file(state, job_id).exists()  # on record, so forgotten
    assert job_cgroups(state) == []


async def test_a_killed_manager_leaves_the_job_writing_and_the_next_has_every_byte(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    (job_id,) = await crashed_manager(state, [[PYTHON, "-c", COUNTER, "2000"]])
    log = state / "logs" / f"{job_id}.log"
    size = log.stat().st_size

    async def grows() -> bool:
        return log.stat().st_size > size

    await eventually(grows)  # the job writes on, with no server
    async with adopting(state) as jobs:
        out = await read_all(jobs.output("alice", job_id))
        final = await jobs.wait("alice", job_id)
    assert out == b"".join(b"%d\n" % i for i in range(2000))  # no gap, no duplicate
    assert (final.state, final.exit_code, final.reason) == (JobState.FAILED, 3, "")


async def test_the_time_index_goes_on_through_a_crash_and_strays_are_swept(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    (job_id,) = await crashed_manager(state, [[PYTHON, "-c", COUNTER, "2000"]])
    logs = state / "logs"
    # A crash between deleting a record's log and its index, or before recording a start.
    strays = [logs / "0f0e5a43-8a0b-4c4e-9a49-3f4d2b1c0a01.times"]
    strays += [logs / "0f0e5a43-8a0b-4c4e-9a49-3f4d2b1c0a02.log"]
    strays += [logs / "0f0e5a43-8a0b-4c4e-9a49-3f4d2b1c0a02.times"]
    for stray in strays:
        stray.write_bytes(b"")
    async with adopting(state) as jobs:
        await jobs.wait("alice", job_id)
        window = OutputWindow(timestamps=True)
        async with jobs.output_window("alice", job_id, window, follow=False) as (_, pieces):
            got = [(p.data, p.time_ns) async for p in pieces]
        assert not any(stray.exists() for stray in strays)
    assert b"".join(data for data, _ in got) == b"".join(b"%d\n" % i for i in range(2000))
    times = [t for _, t in got]
    assert None not in times
    assert times == sorted(times)  # type: ignore[type-var]
    assert (logs / f"{job_id}.times").exists()


async def test_a_job_that_ends_while_no_manager_runs_is_recorded_as_it_ended(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    (job_id,) = await crashed_manager(
        state, [["sh", "-c", "echo bye; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exit 7"]]
    )

    async def ended() -> bool:
        return end_file(state, job_id).exists()

    await eventually(ended)
    before = trio.current_time()
    async with adopting(state) as jobs:
        final = await jobs.status("alice", job_id)
        out = await read_all(jobs.output("alice", job_id))
    assert (final.state, final.exit_code, final.reason) == (JobState.FAILED, 7, "")
    assert final.ended_at is not None
    assert final.ended_at > final.started_at
    assert final.cpu_seconds is not None
    assert final.cpu_seconds > 0
    assert final.memory_peak is not None
    assert final.memory_peak > 0
    assert out == b"bye\n"
    assert final.output_bytes == 4
    assert trio.current_time() - before < 60
    assert not end_file(state, job_id).exists()


@pytest.mark.parametrize("cgroups", ["auto", "none"])
async def test_stop_after_adoption_kills_the_whole_tree(tmp_path: Path, cgroups: str) -> None:
    # Its SIGTERM too reaches the grandchild that left the session: the supervisor, its
    # subreaper, sends it to every process that descends from it, cgroup or not.
    state = tmp_path / "state"
    (job_id,) = await kept(state, [["sh", "-c", SETSID_DOUBLE_FORK]], cgroups=cgroups)
    async with adopting(state, cgroups=cgroups) as jobs:
        seen = b""
        async with jobs.output("alice", job_id) as chunks:
            async for chunk in chunks:
                seen += chunk
                if b"ready" in seen:
                    break
        grandchild = int(seen.split()[1])
        assert is_alive(grandchild)
        final = await jobs.stop("alice", job_id)
    assert final.state is JobState.STOPPED
    assert not is_alive(grandchild)  # it had left the session: the supervisor reaped it
    assert job_cgroups(state) == []


async def test_oom_after_adoption_is_reported_as_oom(tmp_path: Path) -> None:
    state = tmp_path / "state"
    hog = "import time; time.sleep(1); b = bytearray(400 << 20)"
    async with manager(state, on_shutdown="keep") as first:
        if first.containment == "none":
            pytest.skip("no cgroup backend works here: no memory limit to run out of")
        job_id = (
            await first.start("alice", [PYTHON, "-c", hog], limits=JobLimits(memory=64 << 20))
        ).id
    async with adopting(state) as jobs:
        final = await jobs.wait("alice", job_id)
    assert (final.state, final.reason) == (JobState.FAILED, "oom")


async def test_keep_then_stop_the_default_stops_jobs_at_shutdown(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (job_id,) = await kept(state, [["sleep", "300"]])
    async with adopting(state) as jobs:  # on_shutdown="stop", the default
        pid = (await jobs.status("alice", job_id)).pid
    async with adopting(state) as jobs:
        final = await jobs.status("alice", job_id)
    assert (final.state, final.reason) == (JobState.STOPPED, "server-shutdown")
    assert not is_alive(pid)


async def test_a_supervisor_killed_by_sigkill_leaves_no_job_and_is_recorded(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    async with adopting(state) as jobs:
        status = await jobs.start("alice", ["sh", "-c", SETSID_DOUBLE_FORK])
        seen = b""
        async with jobs.output("alice", status.id) as chunks:
            async for chunk in chunks:
                seen += chunk
                if b"ready" in seen:
                    break
        grandchild = int(seen.split()[1])
        os.kill(supervisor_of(status.pid), signal.SIGKILL)  # an admin, or the OOM killer
        final = await jobs.wait("alice", status.id)
        assert (final.state, final.reason) == (JobState.KILLED, "supervisor-lost")
        assert not is_alive(status.pid)
        if jobs.containment != "none":
            # Without a cgroup, a process that left the session is out of reach once its
            # subreaper is gone (SECURITY.md says so).
            assert not is_alive(grandchild)

            async def no_group() -> bool:
                return job_cgroups(state) == []

            await eventually(no_group)
    if is_alive(grandchild):
        os.kill(grandchild, signal.SIGKILL)


async def test_a_record_from_another_boot_is_resolved_as_a_reboot(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (job_id,) = await kept(state, [["sleep", "300"]])
    with sqlite3.connect(state / "jobs.db") as db:
        db.execute("UPDATE jobs SET boot_id = 'another-boot' WHERE id = ?", (job_id,))
        (supervisor,) = db.execute(
            "SELECT supervisor_pid FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    try:
        async with adopting(state) as jobs:
            final = await jobs.status("alice", job_id)
            assert (final.state, final.reason) == (JobState.KILLED, "host-reboot")
            # Nothing of another boot is trusted: only its cgroup, ours by name, is cleaned.
            assert job_cgroups(state) == []
    finally:
        await reap(supervisor)  # (a real reboot would have taken it)


async def test_a_reused_pid_is_never_adopted_nor_signalled(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (job_id,) = await kept(state, [["sleep", "300"]])
    stranger = await trio.lowlevel.open_process(["sleep", "300"])
    try:
        with sqlite3.connect(state / "jobs.db") as db:
            # The supervisor's pid is now a stranger's, with another start time.
            (real,) = db.execute(
                "SELECT supervisor_pid FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            db.execute("UPDATE jobs SET supervisor_pid = ? WHERE id = ?", (stranger.pid, job_id))
        async with adopting(state) as jobs:
            final = await jobs.status("alice", job_id)
        assert (final.state, final.reason) == (JobState.KILLED, "supervisor-lost")
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        await stranger.wait()
        await reap(real)


async def test_two_hundred_running_jobs_are_adopted_in_one_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ids = await crashed_manager(state, [["sleep", "300"]] * 200)
    began = trio.current_time()
    # A grace two hundred SIGTERMs surely fit in, on a slow VM too: adopted, they are
    # stopped, not killed, when this manager shuts down.
    async with adopting(state, grace=60.0) as jobs:
        took = trio.current_time() - began
        page = await jobs.list("alice", page_size=500)
        assert len(page.jobs) == 200
        assert {s.id for s in page.jobs if s.state is JobState.RUNNING} == set(ids)
    print(f"200 jobs adopted: the manager was up in {took:.3f} s")  # (pytest -s shows it)
    with sqlite3.connect(state / "jobs.db") as db:
        states = {s for (s,) in db.execute("SELECT state FROM jobs")}
    assert states == {"stopped"}


async def test_the_supervisor_leads_its_own_session(tmp_path: Path) -> None:
    async with adopting(tmp_path / "state") as jobs:
        status = await jobs.start("alice", ["sleep", "300"])
        supervisor = supervisor_of(status.pid)
        found = proc_stat(supervisor)
        assert found is not None
        assert found.sid == supervisor  # no terminal's signal meant for the server reaches it
        assert supervisor != os.getpid()
        assert (await jobs.stop("alice", status.id)).state is JobState.STOPPED


@pytest.fixture(autouse=True)
def _no_child_left() -> Iterator[None]:
    """Every supervisor a test here started in this process is reaped by the end of it."""
    yield
    assert my_children() == []
