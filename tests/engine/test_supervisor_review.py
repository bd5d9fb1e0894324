"""Review of the job supervisor (supervise.c, supervisor.py, recovery.py): one test per bug
found, each with real supervisors and real processes."""

import contextlib
import errno
import math
import os
import signal
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from jogger import JobManager, JobState, JobStatus, ManagerLimits
from jogger.engine import recovery, supervisor
from jogger.engine.errors import SpawnError
from jogger.engine.output import OutputLog
from jogger.engine.procfs import proc_stat
from tests.engine.test_accounts import attacker_python, nobody
from tests.procs import (
    SAYS_GOODBYE,
    end_supervised,
    eventually,
    is_alive,
    launch_in,
    my_children,
    open_fds,
    processes,
    reap,
)

LIMITS = ManagerLimits(max_jobs=16, max_jobs_per_owner=16)


def manager(state: Path, **kwargs: object) -> JobManager:
    return JobManager(state, grace=1.0, limits=LIMITS, cgroups="none", **kwargs)  # type: ignore[arg-type]


async def kept_job(state: Path, argv: list[str]) -> tuple[JobStatus, int]:
    """Start ``argv`` in a manager that leaves it running when it exits: the job's status,
    and its supervisor's pid (a child of ours)."""
    async with manager(state, on_shutdown="keep") as first:
        job = await first.start("alice", argv)
    return job, next(p.ppid for p in processes() if p.pid == job.pid)


def zombie(pid: int) -> bool:
    found = proc_stat(pid)
    return found is None or found.exited


async def test_a_failed_start_leaves_no_reserved_end_record(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(60):
        async with manager(state) as jobs:
            for _ in range(3):
                with pytest.raises(SpawnError):
                    await jobs.start("alice", ["no-such-command-for-review"])
                with pytest.raises(SpawnError):
                    await jobs.start("alice", ["true"], cwd="/no/such/dir/for/review")
            left = sorted(p.name for p in (state / "run").iterdir())
    # Each failed start used to leave run/<id>.end.new (4 KiB reserved), forever.
    assert left == ["notify.sock"]


async def test_stale_reserved_end_records_are_swept_at_start_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with manager(state):
        pass
    stale = state / "run" / f"{uuid.uuid4()}.end.new"
    stale.write_bytes(b"")
    async with manager(state):
        pass
    assert not stale.exists()


async def test_grace_without_end_stops_the_job_and_not_the_manager(tmp_path: Path) -> None:
    # check_grace lets math.inf through ("no SIGKILL"): the supervisor's si_value overflowed,
    # the stopper raised OverflowError, and it took the manager and every other job down.
    with trio.fail_after(60):
        async with manager(tmp_path / "state") as jobs:
            job = await jobs.start("alice", SAYS_GOODBYE)
            async with jobs.output("alice", job.id) as chunks:
                async for chunk in chunks:
                    if b"ready" in chunk:
                        break
            other = await jobs.start("alice", ["sleep", "30"])
            final = await jobs.stop("alice", job.id, grace=math.inf)
            assert (final.state, final.exit_code) == (JobState.STOPPED, 0)
            assert (await jobs.status("alice", other.id)).state is JobState.RUNNING


async def test_a_manager_with_grace_without_end_can_start_jobs(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with JobManager(tmp_path / "state", grace=math.inf, cgroups="none") as jobs:
            job = await jobs.start("alice", ["true"])
            assert (await jobs.wait("alice", job.id)).state is JobState.COMPLETED


async def test_a_start_whose_socketpair_fails_leaks_no_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_fds(*args: object) -> tuple[socket.socket, socket.socket]:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    with trio.fail_after(60):
        async with manager(tmp_path / "state") as jobs:
            before = open_fds()
            monkeypatch.setattr("jogger.engine.supervisor.socket.socketpair", out_of_fds)
            for _ in range(5):
                with pytest.raises(OSError, match="Too many open files"):
                    await jobs.start("alice", ["true"])
            monkeypatch.undo()
            assert open_fds() == before  # the spec's memfd was left open each time


async def test_a_supervisor_that_exits_while_being_adopted_is_recorded_as_it_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    with trio.fail_after(60):
        job, supervisor_pid = await kept_job(state, ["sleep", "0.5"])
        real_adopt = supervisor.adopt

        def adopt_late(*args: object, **kwargs: object) -> supervisor.Supervisor | None:
            # The end was looked for, and not found; the job ends before we look at its
            # supervisor (a sleep stands for a slow /proc, or a busy machine).
            deadline = time.monotonic() + 10
            while not zombie(supervisor_pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            return real_adopt(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(recovery, "adopt", adopt_late)
        async with manager(state) as jobs:
            final = await jobs.status("alice", job.id)
    assert (final.state, final.exit_code, final.reason) == (JobState.COMPLETED, 0, "")


async def test_a_supervisor_of_ours_that_ended_between_two_managers_is_reaped(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with trio.fail_after(60):
        job, supervisor_pid = await kept_job(state, ["sleep", "0.2"])

        async def ended() -> bool:
            return zombie(supervisor_pid)

        await eventually(ended)
        async with manager(state) as jobs:
            final = await jobs.status("alice", job.id)
    assert final.state is JobState.COMPLETED
    try:
        assert [p for p in my_children() if p.pid == supervisor_pid] == []
    finally:
        reap(supervisor_pid)


async def test_a_supervisor_of_ours_that_wrote_its_end_but_still_runs_is_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A supervisor writes its job's end, then exits: the next manager may read the end in
    # between. It must wait for that exit to reap it, or it stays a zombie of ours.
    state = tmp_path / "state"
    with trio.fail_after(60):
        job, supervisor_pid = await kept_job(state, ["sleep", "300"])
        real_read_end = supervisor.read_end
        read: list[str] = []

        def end_written(run_dir: Path, job_id: str) -> supervisor.End | None:
            if job_id != job.id:
                return real_read_end(run_dir, job_id)

            # As if the job had ended and its end were written: the supervisor exits a
            # moment later (here its job, then itself, are killed).
            def exit_later() -> None:
                os.kill(job.pid, signal.SIGKILL)
                os.kill(supervisor_pid, signal.SIGKILL)

            threading.Timer(0.3, exit_later).start()
            read.append(job_id)
            return supervisor.End(
                exit_code=0,
                signal=None,
                ended_at=datetime.now(UTC),
                cpu_seconds=0.0,
                memory_peak=0,
                output_bytes=0,
                output_truncated=False,
                disk_full=False,
                output_error="",
                sent_term=False,
                sent_kill=False,
                note="",
            )

        monkeypatch.setattr(recovery, "read_end", end_written)
        try:
            assert not zombie(supervisor_pid)
            async with manager(state) as jobs:
                final = await jobs.status("alice", job.id)
        finally:
            if not read:  # the fake end was never read: nothing of the job may outlive us
                os.kill(job.pid, signal.SIGKILL)  # (a child of our supervisor, still there)
                os.kill(supervisor_pid, signal.SIGKILL)
    assert final.state is JobState.COMPLETED
    try:
        assert [p for p in my_children() if p.pid == supervisor_pid] == []
    finally:
        reap(supervisor_pid)


async def test_a_supervisor_killed_before_its_report_leaves_no_job(tmp_path: Path) -> None:
    # The job's process blocks before its exec (a write to a full pipe stands for a
    # cgroup.procs write, a chdir or an exec that hangs); its supervisor is SIGKILLed (an
    # admin, the OOM killer, or launch itself on a timeout). The job must not run on.
    marker = f"review-{uuid.uuid4()}"
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    run = tmp_path / "run"
    run.mkdir()
    job_id = str(uuid.uuid4())
    _, log_fd = OutputLog.create(tmp_path / f"{job_id}.log", 1 << 20)
    failed: list[BaseException] = []
    child = 0
    try:
        # Prompt: the supervisor's death used to go unseen until SPAWN_TIMEOUT + 10 s, as
        # the blocked process held the report's socket.
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def start() -> None:
                    try:
                        await supervisor.launch(
                            supervisor.PROGRAM,
                            job_id,
                            ["sh", "-c", "sleep 300", marker],
                            cwd=None,
                            env=dict(os.environ),
                            log_fd=log_fd,
                            limit=1 << 20,
                            run_dir=run,
                            stop_timeout=1.0,
                            placement=[write_end],
                        )
                    except SpawnError as exc:
                        failed.append(exc)

                nursery.start_soon(start)

                def spawned() -> tuple[int, int] | None:
                    supervisors = [p.pid for p in my_children()]
                    for p in processes():
                        if p.ppid in supervisors:
                            return p.ppid, p.pid
                    return None

                found: tuple[int, int] | None = None

                async def blocked() -> bool:
                    nonlocal found
                    found = spawned()
                    return found is not None

                await eventually(blocked)
                assert found is not None
                parent, child = found
                os.kill(parent, signal.SIGKILL)
        assert failed  # the start failed: nobody will ever know of this job
        os.set_blocking(read_end, False)
        with contextlib.suppress(BlockingIOError):
            while os.read(read_end, 65536):  # the hang is over
                pass

        async def gone() -> bool:
            return not is_alive(child)

        await eventually(gone)
    finally:
        os.close(log_fd)
        os.close(write_end)
        os.close(read_end)
        for p in processes():
            if p.pid == child:
                os.kill(p.pid, signal.SIGKILL)


# Forks as fast as it can, each child in a session of its own; RLIMIT_NPROC (the job runs as
# nobody, for whom it holds) keeps it from taking the machine.
SETSID_FORK_BOMB = (
    "import os, resource\n"
    "resource.setrlimit(resource.RLIMIT_NPROC, (150, 150))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    try:\n"
    "        if os.fork() == 0:\n"
    "            os.setsid()\n"
    "    except OSError:\n"
    "        pass\n"
)


def marked(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
    return found


def stop_then_kill(marker: str) -> None:
    """End every process that carries ``marker``: stopped first, so that none forks more."""
    for _ in range(500):
        seen = marked(marker)
        if not seen:
            return
        for pid in seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        time.sleep(0.01)
        if set(marked(marker)) <= set(seen):
            for pid in seen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"processes marked {marker} are left")


@pytest.mark.skipif(os.geteuid() != 0, reason="running a job as nobody needs root")
async def test_stop_without_cgroups_ends_a_setsid_fork_bomb(tmp_path: Path) -> None:
    marker = f"review-bomb-{uuid.uuid4()}"
    try:
        with trio.fail_after(60):
            async with manager(tmp_path / "state") as jobs:
                job = await jobs.start(
                    "alice",
                    [attacker_python(), "-c", SETSID_FORK_BOMB, marker],
                    account=nobody(),
                )
                async with jobs.output("alice", job.id) as chunks:
                    async for chunk in chunks:
                        if b"ready" in chunk:
                            break
                await trio.sleep(0.5)
                final = await jobs.stop("alice", job.id, grace=0.1)
        # SIGTERM reaches every bomb process the supervisor finds; whether one forked
        # since outlives it, so that SIGKILL ends the job, is a matter of timing (on a
        # loaded machine none may).
        assert final.state in (JobState.STOPPED, JobState.KILLED)
        assert marked(marker) == []
    finally:
        stop_then_kill(marker)


async def test_an_end_whose_reserved_file_was_deleted_is_still_written(tmp_path: Path) -> None:
    # A server that took the supervisor for lost (forget_end in recovery) deletes
    # run/<id>.end.new while the supervisor lives: its end used to be renamed from nothing
    # once a second for a minute, and never written (a flake of the host-reboot test).
    started = await launch_in(tmp_path, ["sleep", "0.2"])
    try:
        (job_id,) = [p.name.removesuffix(".end.new") for p in (tmp_path / "run").glob("*.new")]
        (tmp_path / "run" / f"{job_id}.end.new").unlink()
        with trio.fail_after(5):
            await started.wait_exited()
        end = supervisor.read_end(tmp_path / "run", job_id)
        assert end is not None
        assert end.exit_code == 0
    finally:
        await end_supervised(started)
