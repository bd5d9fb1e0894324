import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from jogger import (
    InvalidRequest,
    JobManager,
    JobState,
    LimitExceeded,
    ManagerClosed,
    ManagerLimits,
    SpawnError,
)
from jogger.engine import supervisor as process
from jogger.engine.cgroups import CgroupMode
from jogger.engine.supervisor import Supervisor
from tests.procs import PYTHON, collect, launch_in, my_children


async def run_to_end(jobs: JobManager, argv: list[str], **kwargs: object) -> bytes:
    status = await jobs.start("alice", argv, **kwargs)  # type: ignore[arg-type]
    with trio.fail_after(10):
        return await collect(jobs.output("alice", status.id))


async def test_start_returns_a_running_job_with_a_fresh_uuid(jobs: JobManager) -> None:
    first = await jobs.start("alice", ["sleep", "30"])
    second = await jobs.start("alice", ["sleep", "30"])
    assert first.state is JobState.RUNNING
    assert uuid.UUID(first.id).version == 4
    assert first.id != second.id
    assert first.owner == "alice"
    assert first.argv == ("sleep", "30")
    assert first.pid > 0
    assert first.ended_at is None


async def test_argv0_is_looked_up_on_path_without_a_shell(jobs: JobManager) -> None:
    # A shell would expand the glob and the variable; we must pass them through verbatim.
    out = await run_to_end(jobs, ["echo", "*", "$HOME", "a b"])
    assert out == b"* $HOME a b\n"


async def test_path_is_searched_as_execvp_does(jobs: JobManager, tmp_path: Path) -> None:
    # Entries in order, a trailing slash or none, an empty entry meaning the job's cwd; an
    # entry with a file that cannot be run does not end the search, but is what is reported
    # if nothing else is found.
    def script(directory: Path, text: str, mode: int = 0o755) -> None:
        directory.mkdir()
        (directory / "greet").write_text(f"#!/bin/sh\necho {text}\n")
        (directory / "greet").chmod(mode)

    script(tmp_path / "locked", "locked", 0o644)
    script(tmp_path / "here", "from-cwd")
    script(tmp_path / "later", "later")
    search = f"/no-jogger:{tmp_path}/locked/::{tmp_path}/later"
    out = await run_to_end(jobs, ["greet"], cwd=str(tmp_path / "here"), env={"PATH": search})
    assert out == b"from-cwd\n"
    search = f"/no-jogger:{tmp_path}/locked/:{tmp_path}/later/"
    assert await run_to_end(jobs, ["greet"], env={"PATH": search}) == b"later\n"
    with pytest.raises(SpawnError, match="cannot execute 'greet': Permission denied"):
        await jobs.start("alice", ["greet"], env={"PATH": f"/no-jogger:{tmp_path}/locked"})
    with pytest.raises(SpawnError, match="'greet': command not found"):
        await jobs.start("alice", ["greet"], env={"PATH": ""}, cwd="/")


async def test_cwd_and_env_overrides_reach_the_job(jobs: JobManager, tmp_path: Path) -> None:
    code = "import os; print(os.getcwd(), os.environ['GREETING'], os.environ['JOGGER_JOB_ID'])"
    status = await jobs.start(
        "alice", [PYTHON, "-c", code], cwd=str(tmp_path), env={"GREETING": "hi there"}
    )
    with trio.fail_after(10):
        out = await collect(jobs.output("alice", status.id))
    assert out.decode().split() == [str(tmp_path), "hi", "there", status.id]


async def test_job_environment_holds_only_path_overrides_and_job_id(jobs: JobManager) -> None:
    out = await run_to_end(jobs, ["env"], env={"A": "1"})
    names = sorted(line.split("=", 1)[0] for line in out.decode().splitlines())
    assert names == ["A", "JOGGER_JOB_ID", "PATH"]


async def test_stdin_is_dev_null(jobs: JobManager) -> None:
    out = await run_to_end(jobs, ["sh", "-c", "readlink /proc/self/fd/0; cat; echo end"])
    assert out == b"/dev/null\nend\n"


async def test_job_leads_its_own_session_and_process_group(jobs: JobManager) -> None:
    code = "import os; print(os.getpid(), os.getsid(0), os.getpgid(0))"
    out = await run_to_end(jobs, [PYTHON, "-c", code])
    pid, sid, pgid = out.split()
    assert pid == sid == pgid
    assert int(sid) != os.getsid(0)


async def assert_nothing_left(jobs: JobManager, state_dir: Path) -> None:
    assert (await jobs.list("alice")).jobs == []
    assert list((state_dir / "logs").iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-command-jogger"], "'no-such-command-jogger': command not found"),
        (["/nonexistent/bin/tool"], "cannot execute '/nonexistent/bin/tool': No such file"),
        (["/tmp"], "cannot execute '/tmp': Permission denied"),
        (["{tmp}/plain"], "cannot execute '.*/plain': Permission denied"),
        (["{tmp}/garbage"], "cannot execute '.*/garbage': Exec format error"),
    ],
)
@pytest.mark.parametrize("cgroups", ["none", "auto"])
async def test_unstartable_command_is_an_error_of_start_and_leaves_nothing(
    tmp_path: Path, argv: list[str], message: str, cgroups: CgroupMode
) -> None:
    # Without cgroups subprocess reports a failed exec; with them (as root) the job starts
    # behind a gate, and our own check must say the same.
    async with JobManager(tmp_path / "state", cgroups=cgroups) as jobs:
        await start_unstartable(jobs, tmp_path, argv, message)


async def start_unstartable(
    jobs: JobManager, tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "plain").write_bytes(b"#!/bin/sh\necho never\n")
    (tmp_path / "plain").chmod(0o644)
    (tmp_path / "garbage").write_bytes(b"\x00\x01 not a program")
    (tmp_path / "garbage").chmod(0o755)
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    with pytest.raises(SpawnError, match=message):
        await jobs.start("alice", argv)
    await assert_nothing_left(jobs, tmp_path / "state")


async def test_missing_cwd_is_an_error_of_start(jobs: JobManager, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(SpawnError, match="cannot use working directory"):
        await jobs.start("alice", ["true"], cwd=missing)
    await assert_nothing_left(jobs, tmp_path / "state")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"argv": []}, "argv must not be empty"),
        ({"argv": [""]}, "argv.0. must not be empty"),
        ({"argv": "echo hi"}, "argv must be a list of strings"),
        ({"argv": [b"echo"]}, "argv must be a list of strings"),
        ({"argv": ["echo", 3]}, "argv must be a list of strings"),
        ({"argv": ["echo", "a\0b"]}, "must not contain NUL"),
        ({"argv": ["echo", "\udcff"]}, "valid UTF-8"),
        ({"argv": ["echo"], "cwd": "relative/dir"}, "cwd must be an absolute path"),
        ({"argv": ["echo"], "cwd": "/tmp\0/elsewhere"}, "cwd must be an absolute path"),
        ({"argv": ["echo"], "env": {"A=B": "x"}}, "invalid environment variable"),
        ({"argv": ["echo"], "env": {"": "x"}}, "invalid environment variable"),
        ({"argv": ["echo"], "env": {"A": "x\0"}}, "invalid environment variable"),
        ({"argv": ["echo"], "env": {"A": 1}}, "mapping of strings"),
        ({"argv": ["echo"], "owner": ""}, "owner must be"),
        ({"argv": ["echo"], "owner": "a\nb"}, "owner must be"),
    ],
)
async def test_bad_request_is_rejected_and_changes_nothing(
    jobs: JobManager, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    owner = kwargs.pop("owner", "alice")
    with pytest.raises(InvalidRequest, match=message):
        await jobs.start(owner, **kwargs)  # type: ignore[arg-type]
    await assert_nothing_left(jobs, tmp_path / "state")


async def test_oversized_argv_is_rejected(tmp_path: Path) -> None:
    async with JobManager(tmp_path, limits=ManagerLimits(max_argv_bytes=100)) as jobs:
        await jobs.start("alice", ["echo", "x" * 80])
        with pytest.raises(InvalidRequest, match="the limit is 100"):
            await jobs.start("alice", ["echo", "x" * 120])
        with pytest.raises(InvalidRequest, match="the limit is 100"):
            await jobs.start("alice", ["echo"], env={"BIG": "y" * 120})
        assert len((await jobs.list("alice")).jobs) == 1


async def test_start_outside_the_manager_block_raises_manager_closed(tmp_path: Path) -> None:
    manager = JobManager(tmp_path)
    with pytest.raises(ManagerClosed):
        await manager.start("alice", ["true"])
    async with manager:
        pass
    with pytest.raises(ManagerClosed):
        await manager.start("alice", ["true"])


async def test_state_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "shared"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(InvalidRequest, match="writable by other users"):
        async with JobManager(state):
            pass


async def test_log_file_is_private(jobs: JobManager, tmp_path: Path) -> None:
    status = await jobs.start("alice", ["true"])
    log = tmp_path / "state" / "logs" / f"{status.id}.log"
    assert log.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state" / "logs").stat().st_mode & 0o777 == 0o700


async def test_a_job_starts_with_default_signals_and_nothing_blocked(jobs: JobManager) -> None:
    # Python ignores SIGPIPE (`yes | head` relies on it), a server started by nohup ignores
    # SIGHUP: exec would pass both on. A job must see every signal at its default.
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        status = await jobs.start("alice", ["grep", "^Sig\\(Ign\\|Blk\\)", "/proc/self/status"])
    finally:
        signal.signal(signal.SIGHUP, previous)
    with trio.fail_after(30):
        out = await collect(jobs.output("alice", status.id))
    assert out.split() == [b"SigBlk:", b"0" * 16, b"SigIgn:", b"0" * 16]


async def test_a_failed_cgroup_placement_is_a_spawn_error_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    # /dev/full refuses every write with ENOSPC, like a cgroup refusing a process.
    full = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(SpawnError, match="cannot place the job in its cgroup: No space"):
            await launch_in(tmp_path, ["sleep", "30"], placement=[full])
    finally:
        os.close(full)
    assert my_children() == []  # the supervisor, and with it the failed child, were reaped


async def tick(lateness: list[float], period: float = 0.05) -> None:
    """Sleep ``period`` at a time until cancelled, noting how late each wake-up was: a
    blocked event loop shows as one late wake-up."""
    while True:
        before = trio.current_time()
        await trio.sleep(period)
        lateness.append(trio.current_time() - before - period)


@contextlib.contextmanager
def full_pipe() -> Iterator[int]:
    """The write end of a full pipe, in blocking mode: a write to it waits for ever."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        for size in (65536, 1):
            with contextlib.suppress(BlockingIOError):
                while True:
                    os.write(write_end, b"x" * size)
        os.set_blocking(write_end, True)
        yield write_end
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_a_spawn_stuck_before_exec_is_killed_at_the_timeout_and_the_loop_runs_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A placement fd that never takes its write stands for a child stopped by a signal or
    # hung on a mount before its exec: the event loop must go on, and the child be killed.
    monkeypatch.setattr(process, "SPAWN_TIMEOUT", 1.0)
    lateness: list[float] = []
    with full_pipe() as stuck, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tick, lateness)
            began = trio.current_time()
            with pytest.raises(SpawnError, match=r"did not reach exec within 1 s .*killed"):
                await launch_in(tmp_path, ["true"], placement=[stuck])
            took = trio.current_time() - began
            nursery.cancel_scope.cancel()  # the ticker has done its part
    assert 1.0 <= took < 10
    assert len(lateness) >= 5
    assert max(lateness) < 0.9
    assert my_children() == []  # killed and reaped


async def test_a_cancelled_spawn_still_ends_with_its_stuck_child_killed_and_reaped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A spawn is never abandoned: the cancellation waits for the timeout's kill.
    monkeypatch.setattr(process, "SPAWN_TIMEOUT", 1.0)
    with (
        full_pipe() as stuck,
        trio.fail_after(30),
        trio.move_on_after(0.1) as scope,
        pytest.raises(SpawnError, match="did not reach exec"),
    ):
        await launch_in(tmp_path, ["true"], placement=[stuck])
    assert scope.cancel_called
    assert my_children() == []


def slow_spawns(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make every spawn take ``seconds`` longer, uncancellably, as a slow exec would."""
    launch = process.launch

    async def slow(*args: Any, **kwargs: Any) -> Supervisor:
        with trio.CancelScope(shield=True):  # as the spawn's own wait is
            await trio.sleep(seconds)
        return await launch(*args, **kwargs)

    monkeypatch.setattr("jogger.engine.local.launch", slow)


async def test_starts_under_way_count_against_the_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Other starts run while one awaits its spawn: it must count from before it.
    slow_spawns(monkeypatch, 0.3)
    results: list[object] = []

    async def start(jobs: JobManager) -> None:
        try:
            results.append((await jobs.start("alice", ["sleep", "30"])).state)
        except LimitExceeded as exc:
            results.append(str(exc))

    limits = ManagerLimits(max_jobs_per_owner=2)
    with trio.fail_after(30):
        async with JobManager(tmp_path, grace=1, limits=limits) as jobs, trio.open_nursery() as n:
            for _ in range(3):
                n.start_soon(start, jobs)
    assert sorted(results, key=str) == [
        "2 of your jobs are running; the limit is 2",
        JobState.RUNNING,
        JobState.RUNNING,
    ]
    assert my_children() == []


SPAWN_WITH_STDIO_CLOSED = """
import os, sys, trio
from pathlib import Path
from jogger.engine.errors import SpawnError
from jogger.engine.supervisor import read_end
from tests.procs import launch_in
err = os.dup(2)
os.close(0); os.close(1); os.close(2)
full = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)  # fd 0: a placement fd that refuses
tmp = Path(sys.argv[1])

async def main():
    for argv, placement in ((["true"], [full]), (["/nonexistent/cmd"], [])):
        try:
            await launch_in(tmp, argv, placement=placement)
            os.write(err, b"started\\n")
        except SpawnError as exc:
            os.write(err, str(exc).encode() + b"\\n")
    os.close(full)
    p = await launch_in(tmp, ["sh", "-c", "echo out; echo err >&2; cat"])
    await p.wait_exited()
    p.close()
    job_id = next(tmp.glob("run/*.end")).name.split(".")[0]
    end = read_end(tmp / "run", job_id)
    os.write(err, (tmp / f"{job_id}.log").read_bytes() + repr(end.exit_code).encode())

trio.run(main)
"""


def test_a_server_started_with_stdio_closed_still_wires_the_job_right(tmp_path: Path) -> None:
    # The placement fd, the pipes and /dev/null then land on fds 0-2, where the spawner
    # puts the job's own stdin, stdout and stderr.
    done = subprocess.run(
        [PYTHON, "-c", SPAWN_WITH_STDIO_CLOSED, str(tmp_path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.stderr.decode().splitlines() == [
        "cannot place the job in its cgroup: No space left on device",
        "cannot execute '/nonexistent/cmd': No such file or directory",
        "out",
        "err",
        "0",
    ]
