"""Isolated jobs try to escape, each beside a job that is not isolated.

Real namespaces, made by the real supervisor; the jobs run as nobody (namespaces and the user
switch need root: these skip without it, and CI runs them as root, on the host's cgroup v1
and in the cgroup v2 VM). Where an escape is refused, a control shows that the same attempt
works without isolation, so that no test here passes because the attempt itself is broken.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from jogger import JobLimits, JobManager, JobState, JobStatus, ManagerLimits
from jogger.engine.errors import SpawnError
from jogger.engine.isolation import ALL, Isolation, Namespace, hostname
from jogger.engine.status import Input
from tests.engine.test_accounts import job_cgroups, nobody
from tests.procs import collect, eventually, is_alive, processes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and nobody need root")

EVERYTHING = Isolation(ALL)
READ_ONLY = Isolation(ALL, read_only_root=True)
LIMITS = ManagerLimits(max_jobs=64, max_jobs_per_owner=64)
PYTHON3 = shutil.which("python3", path="/usr/bin:/bin") or "python3"


def manager(state: Path, **kwargs: object) -> JobManager:
    kwargs.setdefault("grace", 1.0)
    return JobManager(state, limits=LIMITS, **kwargs)  # type: ignore[arg-type]


async def run(
    jobs: JobManager, script: str, isolation: Isolation = EVERYTHING, **kwargs: object
) -> tuple[bytes, JobStatus]:
    """Run ``sh -c script`` as nobody to its end: its output and final status."""
    status = await jobs.start(
        "alice",
        ["sh", "-c", script],
        account=nobody(),
        isolation=isolation,
        **kwargs,  # type: ignore[arg-type]
    )
    with trio.fail_after(30):
        out = await collect(jobs.output("alice", status.id, follow=True))
        return out, await jobs.wait("alice", status.id)


async def neighbour(jobs: JobManager, marker: str, **env: str) -> JobStatus:
    """A job that is not isolated, as nobody too: ``sleep`` with a unique argument."""
    return await jobs.start("alice", ["sleep", marker], account=nobody(), env=env)


async def start_ready(jobs: JobManager, script: str) -> JobStatus:
    """Start ``sh -c script`` as nobody in every namespace; return once it said "ready"."""
    status = await jobs.start("alice", ["sh", "-c", script], account=nobody(), isolation=EVERYTHING)
    with trio.fail_after(30):
        async with jobs.output("alice", status.id) as chunks:
            async for chunk in chunks:
                if b"ready" in chunk:
                    break
    return status


def unique_sleep() -> str:
    """A sleep argument no other process has: 300 seconds and a random fraction."""
    return f"300.{uuid.uuid4().int % 10**9:09d}"


def marked(marker: str) -> list[int]:
    """Live processes that run ``sleep marker``."""
    found = []
    for proc in processes():
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            if command == b"sleep\0" + marker.encode() + b"\0" and proc.state not in "ZX":
                found.append(proc.pid)
    return found


@contextlib.contextmanager
def world_writable_dir(parent: Path) -> Iterator[Path]:
    path = parent / f"jogger-test-{uuid.uuid4().hex[:12]}"
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_the_job_sees_only_its_own_processes(jobs: JobManager) -> None:
    marker = unique_sleep()
    await neighbour(jobs, marker)
    look = "ls /proc | grep -c '^[0-9]'; cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; ps -e"
    out, final = await run(jobs, look)
    assert final.exit_code == 0, out
    count = int(out.split()[0])
    assert count <= 5, out  # its init, sh, and what the pipeline forks
    assert marker.encode() not in out
    assert b"jogger-init" in out or b"jogger-supervise" in out  # process 1, its init
    control, _ = await run(jobs, look, isolation=Isolation())
    assert marker.encode() in control


async def test_kill_minus_one_touches_nothing_outside(jobs: JobManager) -> None:
    marker = unique_sleep()
    outside = await neighbour(jobs, marker)
    out, final = await run(jobs, f"sleep {unique_sleep()} & kill -9 -1; wait $!; echo survived $?")
    # Its own sleep got the SIGKILL (sh itself is spared by the kernel, as the caller).
    assert b"survived 137" in out, out
    assert final.exit_code == 0
    assert (await jobs.status("alice", outside.id)).state is JobState.RUNNING
    assert marked(marker) != []


async def test_another_jobs_argv_and_environment_are_not_readable(jobs: JobManager) -> None:
    token = f"SECRET_TOKEN-{uuid.uuid4()}"
    marker = unique_sleep()
    await neighbour(jobs, marker, SECRET_TOKEN=token)
    snoop = "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'"
    out, _ = await run(jobs, snoop)
    assert token.encode() not in out
    assert marker.encode() not in out
    control, _ = await run(jobs, snoop, isolation=Isolation())
    assert token.encode() in control  # the leak isolation closes: same uid, same /proc
    assert marker.encode() in control


async def test_the_loopback_port_of_the_host_is_unreachable(jobs: JobManager) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        connect = f"socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        probe = (
            f'{PYTHON3} -c "import socket\n'
            f"try:\n {connect}; print('connected')\n"
            "except OSError as e: print('refused', e.errno)\"; "
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
        )
        out, _ = await run(jobs, probe)
        assert out.split(b"\n")[0].startswith(b"refused"), out
        assert out.split()[-1:] == [b"lo"], out  # lo,
        assert out.count(b"\n") == 2, out  # and only lo
        control, _ = await run(jobs, probe, isolation=Isolation())
        assert control.startswith(b"connected"), control
        with_host_network, _ = await run(jobs, probe, isolation=Isolation(ALL - {Namespace.NET}))
        assert with_host_network.startswith(b"connected"), with_host_network


async def test_each_job_has_its_own_tmp(jobs: JobManager, tmp_path: Path) -> None:
    name = f"jogger-secret-{uuid.uuid4().hex}"
    write = f"for d in /tmp /var/tmp /dev/shm; do echo x > $d/{name} || exit 1; done; ls /tmp"
    first = await jobs.start(
        "alice",
        ["sh", "-c", f"{write}; echo written; sleep {unique_sleep()}"],
        account=nobody(),
        isolation=EVERYTHING,
    )
    async with jobs.output("alice", first.id) as chunks:
        seen = b""
        async for chunk in chunks:
            seen += chunk
            if b"written" in seen:
                break
    assert name.encode() in seen  # it sees its own
    look = f"ls -a /tmp /var/tmp /dev/shm; cat /tmp/{name} /var/tmp/{name} /dev/shm/{name}"
    out, _ = await run(jobs, look)
    assert name.encode() not in out.replace(b"No such file", b"").split(b"cat:")[0]
    assert out.count(b"No such file") == 3, out
    for where in ("/tmp", "/var/tmp", "/dev/shm"):
        assert name not in os.listdir(where)
    await jobs.stop("alice", first.id)


async def test_a_cwd_in_tmp_is_kept_in_the_private_tmp(jobs: JobManager, tmp_path: Path) -> None:
    with world_writable_dir(Path("/tmp")) as work:
        out, final = await run(jobs, "pwd; echo made > here; ls /tmp", cwd=str(work))
        assert final.exit_code == 0, out
        assert out.split() == [str(work).encode(), work.name.encode()]
        assert (work / "here").read_bytes() == b"made\n"


async def test_read_only_root_leaves_only_cwd_and_temporary_dirs_writable(
    jobs: JobManager, tmp_path: Path
) -> None:
    with world_writable_dir(Path("/run")) as elsewhere, world_writable_dir(tmp_path) as work:
        script = (
            f"echo a > {elsewhere}/x; echo $?; echo b > ./mine && echo cwd-ok; "
            "echo c > /tmp/t && echo tmp-ok; echo d > /var/tmp/t && echo var-tmp-ok; "
            "echo e > /dev/null && echo dev-ok"
        )
        out, final = await run(jobs, script, READ_ONLY, cwd=str(work))
        assert b"Read-only file system" in out, out
        assert out.split()[-5:] == [b"2", b"cwd-ok", b"tmp-ok", b"var-tmp-ok", b"dev-ok"], out
        assert not (elsewhere / "x").exists()
        assert (work / "mine").read_bytes() == b"b\n"
        assert final.isolation == READ_ONLY
        control, _ = await run(jobs, f"echo a > {elsewhere}/x; echo $?", cwd=str(work))
        assert control.split() == [b"0"]


async def test_mounts_are_refused_and_the_hostname_is_the_documented_one(
    jobs: JobManager,
) -> None:
    script = (
        "mount -t tmpfs none /mnt 2>/dev/null; echo mount $?; "
        "umount /proc 2>/dev/null; echo umount $?; "
        "mount -o remount,rw /proc 2>/dev/null; echo remount-proc $?; "
        "mount -o remount,rw /proc/sys 2>/dev/null; echo remount-sys $?; "
        "(echo x > /proc/sys/kernel/hostname) 2>/dev/null; echo write-sys $?; "
        "hostname; cat /proc/sys/kernel/hostname"
    )
    status = await jobs.start("alice", ["sh", "-c", script], account=nobody(), isolation=READ_ONLY)
    with trio.fail_after(30):
        out = await collect(jobs.output("alice", status.id, follow=True))
    lines = out.decode().split("\n")
    for line in lines[:5]:
        assert line.split()[1] != "0", out
    assert lines[5:7] == [hostname(status.id)] * 2
    assert hostname(status.id) == f"jog-{status.id[:8]}"
    assert socket.gethostname() != hostname(status.id)


async def test_exit_codes_and_signals_pass_through_the_init(jobs: JobManager) -> None:
    _, exited = await run(jobs, "exit 7")
    assert (exited.state, exited.exit_code, exited.signal) == (JobState.FAILED, 7, None)
    _, killed = await run(jobs, "kill -USR1 $$")
    assert (killed.state, killed.exit_code, killed.signal) == (
        JobState.FAILED,
        None,
        signal.SIGUSR1,
    )
    _, missing = await run(jobs, "exec /nonexistent/jogger")
    assert missing.exit_code == 127


async def test_a_command_that_cannot_start_is_refused_as_without_isolation(
    jobs: JobManager, tmp_path: Path
) -> None:
    with pytest.raises(SpawnError, match="command not found"):
        await jobs.start("alice", ["no-such-command-jogger"], isolation=EVERYTHING)
    with pytest.raises(SpawnError, match="working directory"):
        await jobs.start("alice", ["true"], isolation=READ_ONLY, cwd=str(tmp_path / "missing"))
    assert (await jobs.list("alice")).jobs == []


async def test_stop_ends_every_process_of_the_job(jobs: JobManager) -> None:
    marker = unique_sleep()
    script = f"sleep {marker} & setsid sleep {marker} & (sleep {marker} &); echo ready; wait"
    status = await start_ready(jobs, script)

    async def three() -> bool:
        return len(marked(marker)) == 3

    await eventually(three)
    final = await jobs.stop("alice", status.id, grace=5)
    assert final.state is JobState.STOPPED
    assert marked(marker) == []
    assert not is_alive(status.pid)


async def test_a_job_that_ignores_sigterm_is_killed_whole(jobs: JobManager) -> None:
    marker = unique_sleep()
    script = f"trap '' TERM; sleep {marker} & echo ready; while :; do wait; done"
    status = await start_ready(jobs, script)
    final = await jobs.stop("alice", status.id, grace=0.5)
    assert final.state is JobState.KILLED
    assert marked(marker) == []


async def test_the_oom_killer_is_reported_with_isolation(jobs: JobManager) -> None:
    if jobs.containment == "none":
        pytest.skip("no cgroup backend works here: no memory limit to run out of")
    hog = f"{PYTHON3} -c 'import time; time.sleep(0.5); b = bytearray(400 << 20)'"
    _, final = await run(jobs, f"exec {hog}", limits=JobLimits(memory=64 << 20))
    assert (final.state, final.reason) == (JobState.FAILED, "oom")


async def test_a_fork_bomb_meets_pids_max_and_stop_ends_it(jobs: JobManager) -> None:
    if jobs.containment == "none":
        pytest.skip("no cgroup backend works here: no pids limit")
    bomb = (
        "import os, sys, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 500:\n"
        "        if os.fork() == 0:\n"
        "            os.execv('/bin/sleep', ['sleep', sys.argv[1]])\n"
        "        n += 1\n"
        "except OSError:\n"
        "    print('forks', n, flush=True)\n"
        "time.sleep(300)\n"
    )
    marker = unique_sleep()
    status = await jobs.start(
        "alice",
        [PYTHON3, "-c", bomb, marker],
        account=nobody(),
        isolation=EVERYTHING,
        limits=JobLimits(pids=20),
    )
    with trio.fail_after(30):
        async with jobs.output("alice", status.id) as chunks:
            async for chunk in chunks:
                words = chunk.split()
                break
    assert words[0] == b"forks"
    # pids.max counts the init and the main process too, and sleeps not yet exec'd.
    assert 5 < int(words[1]) <= 18
    final = await jobs.stop("alice", status.id)
    assert final.state is JobState.STOPPED
    assert marked(marker) == []


async def test_a_terminal_job_can_be_isolated(jobs: JobManager) -> None:
    out, final = await run(jobs, "tty; hostname", input=Input.TERMINAL)
    assert final.exit_code == 0
    assert out.split()[0].startswith(b"/dev/pts/"), out


async def test_a_restarted_manager_adopts_an_isolated_job_and_stop_ends_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    marker = unique_sleep()
    script = f"setsid sleep {marker} & echo ready; exec sleep {marker}"

    async def both_sleep() -> bool:  # ("ready" comes before the second sleep's exec)
        return len(marked(marker)) == 2

    with trio.fail_after(60):
        async with manager(state, on_shutdown="keep") as first:
            status = await start_ready(first, script)
        try:
            await eventually(both_sleep)
        except BaseException:
            async with manager(state):  # adopts the job, and stops it on the way out
                raise
        async with manager(state) as second:
            adopted = await second.status("alice", status.id)
            assert adopted.state is JobState.RUNNING
            assert adopted.isolation == EVERYTHING
            final = await second.stop("alice", status.id)
    assert final.state is JobState.STOPPED
    assert final.isolation == EVERYTHING
    assert marked(marker) == []
    assert job_cgroups(state) == []


async def test_a_killed_supervisor_takes_the_namespace_with_it(tmp_path: Path) -> None:
    # Even without cgroups: the init dies with its supervisor, and the kernel ends the rest.
    marker = unique_sleep()
    script = f"setsid sleep {marker} & (sleep {marker} &); echo ready; sleep {marker}"
    with trio.fail_after(60):
        async with manager(tmp_path / "state", cgroups="none") as jobs:
            status = await start_ready(jobs, script)
            init = next(p for p in processes() if p.pid == status.pid)
            os.kill(init.ppid, signal.SIGKILL)  # the supervisor
            final = await jobs.wait("alice", status.id)
    assert (final.state, final.reason) == (JobState.KILLED, "supervisor-lost")

    async def gone() -> bool:
        return marked(marker) == []

    await eventually(gone)


def test_a_manager_without_root_refuses_isolation(tmp_path: Path) -> None:
    # A real manager in a process that is not root: refused before anything is started.
    script = (
        "import sys, trio\n"
        "from jogger import JobManager\n"
        "from jogger.engine.errors import IsolationUnavailable\n"
        "from jogger.engine.isolation import ALL, Isolation\n"
        "async def main():\n"
        "    async with JobManager(sys.argv[1], cgroups='none') as jobs:\n"
        "        try:\n"
        "            await jobs.start('alice', ['true'], isolation=Isolation(ALL))\n"
        "        except IsolationUnavailable as e:\n"
        "            print('refused:', e)\n"
        "        print('jobs', len((await jobs.list('alice')).jobs))\n"
        "trio.run(main)\n"
    )
    user = nobody()
    with world_writable_dir(Path("/tmp")) as state:
        done = subprocess.run(
            [
                *("setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"),
                *(sys.executable, "-c", script, str(state / "state")),
            ],
            capture_output=True,
            timeout=60,
            cwd=Path(__file__).parents[2],
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        f"refused: this server cannot isolate jobs: making namespaces needs root "
        f"(CAP_SYS_ADMIN), and it runs as uid {user.uid} without it",
        "jobs 0",
    ]
