"""The real server restarted, gracefully and after SIGKILL: records, output, cgroups, /proc."""

import json
import os
import signal
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import Cli, launch, mounted_tmpfs, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki
from tests.procs import PYTHON, eventually, is_alive, processes

BINARY = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4000)"
# Writes numbered lines until it cannot: once the server is gone, its pipe has no reader.
COUNTER = (
    "import itertools, sys, time\n"
    "for i in itertools.count():\n"
    "    sys.stdout.write(f'{i}\\n'); sys.stdout.flush(); time.sleep(0.005)\n"
)
# A tree: the shell, a background sleep, and a python that ignores SIGTERM.
TREE = (
    "echo ready; sleep 300 & "
    f"{PYTHON} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "time.sleep(300)'"
)


async def status_of(cli: Cli, job: str) -> dict[str, object]:
    result = await cli.jog("status", "--json", job)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def session_of(pid: int) -> list[int]:
    """Live processes in session ``pid`` (a job leads its own)."""
    return [p.pid for p in processes() if p.sid == pid and p.state not in ("Z", "X")]


def job_cgroups(server_pid: int, job: str) -> list[Path]:
    """The job's cgroup directories, in every hierarchy the server's cgroups are in."""
    found = []
    for line in Path(f"/proc/{server_pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else ["unified"]:
            base = Path("/sys/fs/cgroup", controller, path.lstrip("/"))
            if base.is_dir():
                found += list(base.glob(f"*/*/{job}"))  # <root>/user-<owner>/<job>
    return found


async def test_a_graceful_restart_keeps_every_job(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery)
    try:
        done = job_id_of(await first.jog("start", "--", PYTHON, "-c", BINARY))
        output = await first.jog("output", done)
        assert output.stdout == bytes(range(256)) * 4000
        before = await status_of(first, done)
        running = job_id_of(await first.jog("start", "--", "sh", "-c", "echo up; sleep 300"))
        pid = (await status_of(first, running))["pid"]
        assert isinstance(pid, int)
    finally:
        await stop_server(first.process)
    assert first.process.returncode == 0
    assert session_of(pid) == []

    second = await launch(pki, state, nursery)
    try:
        assert await status_of(second, done) == before
        again = await second.jog("output", "--no-follow", done)
        assert again.returncode == 0
        assert again.stdout == output.stdout
        stopped = await status_of(second, running)
        assert (stopped["state"], stopped["reason"]) == ("stopped", "server-shutdown")
        assert (await second.jog("output", running)).stdout == b"up\n"
        listed = await second.jog("list", "--json")
        assert [j["job_id"] for j in json.loads(listed.stdout)] == [running, done]
        # Another user still sees none of them.
        assert json.loads((await second.jog("list", "--json", user="bob")).stdout) == []
    finally:
        await stop_server(second.process)


async def tree_is_up(pid: int) -> bool:
    await trio.lowlevel.checkpoint()
    return len(session_of(pid)) >= 3


@pytest.mark.parametrize("cgroups", ["auto", "none"])
async def test_after_sigkill_the_next_server_adopts_every_job(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery, cgroups: str
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--cgroups", cgroups)
    try:
        tree = job_id_of(await first.jog("start", "--", "sh", "-c", TREE))
        counter = job_id_of(await first.jog("start", "--", PYTHON, "-c", COUNTER))
        done = job_id_of(await first.jog("start", "--", "echo", "finished"))
        tree_status = await status_of(first, tree)
        assert (await first.jog("output", done)).stdout == b"finished\n"
        tree_pid = tree_status["pid"]
        assert isinstance(tree_pid, int)
        await eventually(lambda: tree_is_up(tree_pid))
        members = session_of(tree_pid)
        groups = job_cgroups(first.process.pid, tree)
        if tree_status["cgroup"] != "none":
            assert groups, "the job's cgroup should exist while it runs"
        # The crash: the server gets no chance to clean up.
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
    except BaseException:
        await stop_server(first.process)
        raise
    # The jobs outlive their server: the tree lives, and the counter counts on (its pipe
    # is its supervisor's, not the server's).
    assert all(is_alive(pid) for pid in members)
    log = state / "logs" / f"{counter}.log"
    size = log.stat().st_size

    async def counting() -> bool:
        await trio.lowlevel.checkpoint()
        return log.stat().st_size > size

    await eventually(counting)

    second = await launch(pki, state, nursery, "--cgroups", cgroups)
    try:
        for job in (tree, counter):
            assert (await status_of(second, job))["state"] == "running"
        assert all(is_alive(pid) for pid in members)
        assert (await status_of(second, done))["state"] == "completed"
        # Stop works on an adopted job: the whole tree goes, its cgroup too.
        assert (await second.jog("stop", tree)).returncode == 0
        assert (await status_of(second, tree))["state"] in ("stopped", "killed")
        assert [pid for pid in members if is_alive(pid)] == []
        assert [g for g in groups if g.exists()] == []
        assert (await second.jog("output", tree)).stdout == b"ready\n"
        # The counter's output has no gap and no duplicate across the crash.
        await second.jog("stop", counter)
        counted = (await second.jog("output", counter)).stdout
        lines = counted.decode().splitlines()
        assert lines == [str(i) for i in range(len(lines))]
        assert len(lines) > 10
        assert sum("adopted 2 running jobs" in line for line in second.log) == 1
        # And the new server runs jobs as usual.
        result = await second.jog("run", "--", "echo", "after")
        assert result.stdout == b"after\n"
    finally:
        await stop_server(second.process)
        for pid in session_of(tree_pid):  # only if the test failed: leave nothing behind
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_full_state_dir_ends_in_a_job_reason_not_a_server_crash(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with mounted_tmpfs(tmp_path / "small", "2m") as state:
        server = await launch(pki, state, nursery)
        try:
            writer = f"import sys; sys.stdout.buffer.write(b'x' * {4 << 20})"
            result = await server.jog("run", "--", PYTHON, "-c", writer)
            assert result.returncode == 0  # the job ran to its end
            assert 0 < len(result.stdout) < 2 << 20
            assert result.stderr.decode().endswith(
                "completed (exit code 0, reason: disk-full); output incomplete: the state "
                "dir's file system is full; later output was dropped\n"
            )
            # The server runs on and records what comes next; while the disk stays full,
            # jobs run but their output is dropped, and they say so.
            after = await server.jog("run", "--", "sh", "-c", "echo lost; exit 4")
            assert after.returncode == 4
            assert b"reason: disk-full" in after.stderr
            listed = json.loads((await server.jog("list", "--json")).stdout)
            assert [j["reason"] for j in listed] == ["disk-full", "disk-full"]
            assert server.process.poll() is None
        finally:
            await stop_server(server.process)
        assert server.process.returncode == 0


async def test_jog_says_not_found_for_a_pruned_job(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await launch(pki, tmp_path / "state", nursery, "--retain-jobs", "1")
    try:
        first = job_id_of(await server.jog("start", "--", "echo", "first"))
        assert (await server.jog("output", first)).stdout == b"first\n"
        second = job_id_of(await server.jog("start", "--", "echo", "second"))
        assert (await server.jog("output", second)).stdout == b"second\n"

        async def pruned() -> bool:
            return (await server.jog("status", first)).returncode != 0

        await eventually(pruned)
        gone = await server.jog("status", first)
        assert gone.returncode == 1
        assert gone.stderr.decode() == f"jog: error: job {first} not found\n"
        assert (await server.jog("output", first)).returncode == 1

        async def log_gone() -> bool:
            # The record goes first, then (in a worker thread) its log.
            return not (tmp_path / "state" / "logs" / f"{first}.log").exists()

        await eventually(log_gone)
        assert (await status_of(server, second))["state"] == "completed"
    finally:
        await stop_server(server.process)


async def test_on_shutdown_keep_leaves_jobs_running_for_the_next_server(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--on-shutdown", "keep")
    try:
        job = job_id_of(await first.jog("start", "--", PYTHON, "-c", COUNTER))
        pid = (await status_of(first, job))["pid"]
        assert isinstance(pid, int)
    finally:
        await stop_server(first.process)  # SIGTERM: a graceful shutdown, as for an upgrade
    assert first.process.returncode == 0
    assert is_alive(pid)
    assert sum("adopted" in line for line in first.log) == 0
    second = await launch(pki, state, nursery)  # on_shutdown stop, the default
    try:
        assert (await status_of(second, job))["state"] == "running"
        assert sum("adopted 1 running jobs" in line for line in second.log) == 1
    finally:
        await stop_server(second.process)
    assert not is_alive(pid)
    third = await launch(pki, state, nursery)
    try:
        final = await status_of(third, job)
        assert (final["state"], final["reason"]) == ("stopped", "server-shutdown")
        lines = (await third.jog("output", job)).stdout.decode().splitlines()
        assert lines == [str(i) for i in range(len(lines))]
    finally:
        await stop_server(third.process)
