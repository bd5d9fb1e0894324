"""What the tests look at in /proc to prove nothing was left behind."""

import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import trio

from jogger.engine import supervisor
from jogger.engine.output import OutputLog
from jogger.engine.supervisor import Supervisor

PYTHON = sys.executable


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str


def processes() -> list[Proc]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # it ended while we looked
        # The command name is in parentheses and may contain anything; fields follow the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        found.append(Proc(int(name), int(fields[1]), int(fields[2]), int(fields[3]), fields[0]))
    return found


def alive_in_groups(pgids: set[int]) -> list[Proc]:
    """Processes of these process groups that have not yet died (zombies count as dead)."""
    return [p for p in processes() if p.pgid in pgids and p.state not in ("Z", "X")]


def reap(pid: int) -> None:
    """Reap our child ``pid`` if it has exited and nobody reaped it."""
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)


def my_children() -> list[Proc]:
    """Our own child processes, zombies included: an unreaped child is a leak too."""
    me = os.getpid()
    return [p for p in processes() if p.ppid == me]


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def task_count() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return count(root)


def rss_peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


Output = AbstractAsyncContextManager[AsyncIterator[bytes]]
"""What JobManager.output returns."""


async def collect(output: Output) -> bytes:
    """Every chunk of a job's output, read to its end."""
    async with output as chunks:
        return await rest_of(chunks)


async def rest_of(chunks: AsyncIterator[bytes]) -> bytes:
    """The chunks not read yet, to the end."""
    return b"".join([chunk async for chunk in chunks])


def is_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie has died; it only waits to be reaped).

    One file, not a scan of /proc: the tests that call it share the server's event loop, and a
    scan per pid on a busy machine (hundreds of processes) was a loop stall of its own."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


# A job that says goodbye on SIGTERM and exits 0: python, not sh, so that no child of the
# script is killed by the same group signal and reported by the shell.
SAYS_GOODBYE = [
    PYTHON,
    "-c",
    "import os, signal, sys, time\n"
    "def bye(*_):\n"
    "    os.write(1, b'goodbye\\n')\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n",
]


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` holds, for effects that have no event to wait on (the work of
    another task or process), looking every 10 ms and failing after 10 seconds."""
    with trio.fail_after(10):
        while not await check():  # noqa: ASYNC110 - nothing to wait on but the effect itself
            await trio.sleep(0.01)


async def launch_in(
    tmp: Path,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    placement: list[int] | None = None,
    cgroup_fd: int = -1,
) -> Supervisor:
    """A job's supervisor started by hand (not by a manager), logging into ``tmp``."""
    run = tmp / "run"
    run.mkdir(exist_ok=True)
    job_id = str(uuid.uuid4())
    _, fd = OutputLog.create(tmp / f"{job_id}.log", 1 << 20)
    try:
        started = await supervisor.launch(
            supervisor.PROGRAM,
            job_id,
            argv,
            cwd=None,
            env=env if env is not None else dict(os.environ),
            log_fd=fd,
            limit=1 << 20,
            run_dir=run,
            stop_timeout=1.0,
            placement=placement or [],
            cgroup_fd=cgroup_fd,
        )
    finally:
        os.close(fd)
    started.committed()  # as a manager does once the start is on record
    return started


async def end_supervised(supervised: Supervisor) -> None:
    """Kill the job of a supervisor started by ``launch_in``, and collect the supervisor."""
    supervised.signal(signal.SIGUSR1)
    with trio.fail_after(30):
        await supervised.wait_exited()
    supervised.close()
