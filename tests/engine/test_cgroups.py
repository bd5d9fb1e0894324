"""Jobs in real cgroups: placement, limits, accounting, kill, cleanup.

These run wherever a cgroup backend works: cgroup v1 on our CI machines (as root), cgroup v2
inside the VM (`make test-cgroup2`). Elsewhere they skip, saying why.
"""

import glob
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from jogger import InvalidRequest, JobManager, JobState, SpawnError
from jogger.engine.cgroups import open_backend
from jogger.engine.limits import JobLimits
from jogger.engine.manager import DEFAULT_PATH
from jogger.engine.procfs import proc_stat
from tests.procs import PYTHON, collect, end_supervised, eventually, is_alive, launch_in

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")

MiB = 1 << 20


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def job_groups_under(name: str) -> list[str]:
    """Job cgroups (directories) inside every group called ``name``."""
    return [d for root in groups_named(name) for d in glob.glob(f"{root}/*/")]


def groups_named(name: str) -> list[str]:
    """Every directory called ``name`` in any cgroup hierarchy, at any depth."""
    return glob.glob(f"/sys/fs/cgroup/**/{name}", recursive=True)


@pytest.fixture
def cgroup_name() -> str:
    return f"jogger-test-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def cgroup_manager(
    tmp_path: Path, cgroup_name: str, **options: Any
) -> AsyncIterator[JobManager]:
    """A manager on a cgroup backend (else the test skips); on leaving, none of its cgroups
    may be left."""
    async with JobManager(
        tmp_path / "state", grace=2.0, cgroup_name=cgroup_name, **options
    ) as manager:
        if manager.containment == "none":
            pytest.skip("no cgroup backend works here (see the manager's warning)")
        yield manager
    assert groups_named(cgroup_name) == [], "a job's cgroup was left behind"


@pytest.fixture
async def jobs(tmp_path: Path, cgroup_name: str) -> AsyncIterator[JobManager]:
    async with cgroup_manager(
        tmp_path, cgroup_name, max_limits=JobLimits(memory=1 << 30, pids=1000)
    ) as manager:
        yield manager


async def run(jobs: JobManager, argv: list[str], **limits: int | float) -> tuple[bytes, object]:
    status = await jobs.start("alice", argv, limits=JobLimits(**limits))  # type: ignore[arg-type]
    with trio.fail_after(60):
        out = await collect(jobs.output("alice", status.id))
    return out, (await jobs.status("alice", status.id))


async def test_a_jobs_forked_child_runs_inside_the_jobs_cgroup(jobs: JobManager) -> None:
    # sh forks cat at once: cat's own view of its cgroups must name the job in every
    # hierarchy we use (v2: the one "0::" line).
    status = await jobs.start("alice", ["sh", "-c", "cat /proc/self/cgroup; echo $JOGGER_JOB_ID"])
    with trio.fail_after(30):
        out = (await collect(jobs.output("alice", status.id))).decode()
    lines = out.splitlines()
    assert lines[-1] == status.id
    if jobs.containment == "cgroup2":
        mine = [line for line in lines if line.startswith("0::")]
    else:
        mine = [
            line
            for line in lines[:-1]
            if set(line.split(":")[1].split(",")) & {"memory", "pids", "cpuacct", "freezer"}
        ]
    assert mine
    for line in mine:
        assert line.endswith(f"/{status.id}"), line


async def test_limits_are_set_read_back_and_reported(jobs: JobManager) -> None:
    asked = JobLimits(cpu=0.5, memory=64 * MiB, pids=32, cpu_weight=200)
    status = await jobs.start("alice", ["sleep", "30"], limits=asked)
    assert status.limits == asked
    assert status.containment == jobs.containment
    if jobs.containment == "cgroup2":
        (group,) = [Path(p) for p in groups_named(status.id)]
        assert (group / "memory.max").read_text().strip() == str(64 * MiB)
        assert (group / "pids.max").read_text().strip() == "32"
        assert (group / "cpu.max").read_text().split() == ["50000", "100000"]
        assert (group / "cpu.weight").read_text().strip() == "200"
        assert (group / "memory.swap.max").read_text().strip() == "0"
        assert (group / "memory.oom.group").read_text().strip() == "1"
    else:
        found = {Path(p).parent.parent.name: Path(p) for p in groups_named(status.id)}
        memory = next(Path(p) for p in groups_named(status.id) if "/memory/" in p)
        cpu = next(Path(p) for p in groups_named(status.id) if "/cpu/" in p)
        pids = next(Path(p) for p in groups_named(status.id) if "/pids/" in p)
        assert found
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 * MiB)
        assert (pids / "pids.max").read_text().strip() == "32"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cpu / "cpu.shares").read_text().strip() == "2048"
    final = await jobs.stop("alice", status.id)
    assert final.state is JobState.STOPPED
    assert final.cpu_seconds is not None
    assert final.memory_peak is not None
    assert final.memory_peak > 0


async def test_the_defaults_fill_in_what_a_start_does_not_ask_for(
    tmp_path: Path, cgroup_name: str
) -> None:
    defaults = JobLimits(memory=128 * MiB, pids=64)
    async with JobManager(
        tmp_path / "state", cgroup_name=cgroup_name, default_limits=defaults
    ) as jobs:
        if jobs.containment == "none":
            pytest.skip("no cgroup backend works here")
        status = await jobs.start("alice", ["true"], limits=JobLimits(pids=8))
        assert status.limits == JobLimits(memory=128 * MiB, pids=8)
        await jobs.wait("alice", status.id)


async def test_over_the_maximum_is_invalid_and_leaves_nothing(jobs: JobManager) -> None:
    with pytest.raises(InvalidRequest, match="memory 2G is over the server's maximum of 1G"):
        await jobs.start("alice", ["true"], limits=JobLimits(memory=2 << 30))
    with pytest.raises(InvalidRequest, match="cpu_weight must be from 1 to 10000"):
        await jobs.start("alice", ["true"], limits=JobLimits(cpu_weight=0))
    assert (await jobs.list("alice")).jobs == []


async def test_the_oom_killer_ending_a_job_is_reported(jobs: JobManager) -> None:
    hog = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n"
    _, final = await run(jobs, [PYTHON, "-c", hog], memory=48 * MiB)
    assert final.state is JobState.FAILED  # type: ignore[attr-defined]
    assert final.signal == 9  # type: ignore[attr-defined]
    assert final.reason == "oom"  # type: ignore[attr-defined]


async def test_a_cpu_quota_caps_a_busy_loop(jobs: JobManager) -> None:
    # Busy for 2 s with a fifth of a core: over the job's whole life (start-up included) the
    # kernel lets it use about a fifth of its wall time. Only an upper bound is asserted,
    # with room, never a speed; unlimited, it would use nearly all of its wall time.
    busy = "import time\nend = time.monotonic() + 2\nwhile time.monotonic() < end: pass\n"
    _, final = await run(jobs, [PYTHON, "-c", busy], cpu=0.2)
    used = final.cpu_seconds  # type: ignore[attr-defined]
    wall = (final.ended_at - final.started_at).total_seconds()  # type: ignore[attr-defined]
    assert used is not None
    assert wall >= 2
    assert 0.05 < used < 0.2 * wall * 1.5 + 0.1


async def test_pids_max_stops_a_fork_bomb_and_stop_kills_all_of_it(jobs: JobManager) -> None:
    bomb = (
        "import os, time\n"
        "children = []\n"
        "try:\n"
        "    while len(children) < 500:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(300)\n"
        "            os._exit(0)\n"
        "        children.append(pid)\n"
        "except OSError as e:\n"
        "    print('forks', len(children), *children, flush=True)\n"
        "time.sleep(300)\n"
    )
    status = await jobs.start("alice", [PYTHON, "-c", bomb], limits=JobLimits(pids=20))
    with trio.fail_after(30):
        async with jobs.output("alice", status.id) as chunks:
            async for chunk in chunks:
                words = chunk.split()
                break
        assert words[0] == b"forks"
        children = [int(pid) for pid in words[2:]]
        assert 10 < len(children) < 20  # pids.max counts the main process too
        assert all(is_alive(pid) for pid in children)
        final = await jobs.stop("alice", status.id)
    assert final.state is JobState.STOPPED
    assert not any(is_alive(pid) for pid in children)


async def test_a_setsid_daemon_cannot_escape_the_cgroup(jobs: JobManager) -> None:
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        print(os.getpid(), flush=True)\n"
        "        time.sleep(300)\n"
        "    os._exit(0)\n"
        "time.sleep(300)\n"
    )
    status = await jobs.start("alice", [PYTHON, "-c", daemon])
    with trio.fail_after(30):
        async with jobs.output("alice", status.id) as chunks:
            async for chunk in chunks:
                escaped = int(chunk.split()[0])
                break
        assert is_alive(escaped)
        await jobs.stop("alice", status.id)
    assert not is_alive(escaped)


async def test_jobs_start_with_oom_score_adj_zero(jobs: JobManager) -> None:
    before = read_file("/proc/self/oom_score_adj")
    try:
        write_file("/proc/self/oom_score_adj", "-100")
    except PermissionError:
        pytest.skip("lowering oom_score_adj needs CAP_SYS_RESOURCE, which we lack here")
    try:
        out, _ = await run(jobs, ["cat", "/proc/self/oom_score_adj"])
    finally:
        write_file("/proc/self/oom_score_adj", before)
    assert out == b"0\n"


async def test_leftover_job_cgroups_are_killed_and_removed_at_start(
    tmp_path: Path, cgroup_name: str
) -> None:
    # A crashed server's leftovers, made by hand: a job group with a process in it.
    backend = open_backend("auto", cgroup_name)
    if backend.containment == "none":
        pytest.skip("no cgroup backend works here")
    group = backend.create("alice", str(uuid.uuid4()), JobLimits())
    orphan = await launch_in(
        tmp_path, ["sleep", "300"], env={"PATH": "/bin:/usr/bin"}, placement=group.placement()
    )
    group.attach(orphan.job_pid)
    try:
        with trio.fail_after(30):
            async with JobManager(tmp_path / "state", cgroup_name=cgroup_name):
                found = proc_stat(orphan.job_pid)
                assert found is None or found.exited  # killed with its group
                assert job_groups_under(cgroup_name) == []
    finally:
        await end_supervised(orphan)
    assert groups_named(cgroup_name) == []


async def test_a_cgroup_is_never_reused(cgroup_name: str) -> None:
    backend = open_backend("auto", cgroup_name)
    if backend.containment == "none":
        pytest.skip("no cgroup backend works here")
    job_id = str(uuid.uuid4())
    group = backend.create("alice", job_id, JobLimits())
    try:
        with pytest.raises(SpawnError, match="exists already"):
            backend.create("alice", job_id, JobLimits())
    finally:
        group.discard()
        await backend.aclose()
    assert groups_named(cgroup_name) == []


async def test_without_cgroups_asking_for_limits_is_refused(tmp_path: Path) -> None:
    async with JobManager(tmp_path / "state", cgroups="none") as jobs:
        assert jobs.containment == "none"
        with pytest.raises(InvalidRequest, match="cannot enforce limits"):
            await jobs.start("alice", ["true"], limits=JobLimits(memory=64 * MiB))
        status = await jobs.start("alice", ["true"])
        assert status.containment == "none"
        assert status.limits == JobLimits()
        await jobs.wait("alice", status.id)


async def test_a_placed_job_gets_exactly_its_argv_and_environment(jobs: JobManager) -> None:
    # argv[0] as given (not the path found on PATH), nothing added to the environment, and
    # names a shell would drop kept.
    argv = ["cat", "/proc/self/cmdline", "/proc/self/environ"]
    status = await jobs.start("alice", argv, env={"odd.name-x": "a b", "EMPTY": ""})
    with trio.fail_after(30):
        out = await collect(jobs.output("alice", status.id))
    cmdline = b"".join(arg.encode() + b"\0" for arg in argv)
    assert out.startswith(cmdline)
    environ = sorted(out[len(cmdline) :].split(b"\0")[:-1])
    assert environ == sorted(
        [
            f"PATH={DEFAULT_PATH}".encode(),
            b"EMPTY=",
            b"odd.name-x=a b",
            f"JOGGER_JOB_ID={status.id}".encode(),
        ]
    )


_fork_marker: list[Path] = []


def _after_fork_in_child() -> None:
    if _fork_marker:
        os.close(os.open(_fork_marker[0], os.O_WRONLY | os.O_CREAT, 0o600))


async def test_starting_a_job_runs_no_python_in_a_forked_child(
    jobs: JobManager, tmp_path: Path
) -> None:
    # Python code between fork and exec is unsafe in a process with threads: grpcio's fork
    # handlers crashed such children in CI. A forked Python child would run this hook.
    _fork_marker.append(tmp_path / "forked")
    os.register_at_fork(after_in_child=_after_fork_in_child)
    try:
        out, _ = await run(jobs, ["echo", "ran"])
    finally:
        _fork_marker.clear()
    assert out == b"ran\n"
    assert not (tmp_path / "forked").exists()


def group_of(pid: int, controller: str) -> Path:
    """The cgroup directory of ``pid`` that holds ``controller`` (v1), or its v2 group."""
    for line in read_file(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            (mount,) = [m for m in os.listdir("/sys/fs/cgroup") if controller in m.split(",")]
            return Path("/sys/fs/cgroup", mount, path.lstrip("/"))
    for line in read_file(f"/proc/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup") / line[3:].lstrip("/")
    raise AssertionError(f"{pid} is in no {controller} group")


@pytest.fixture
async def budgeted(tmp_path: Path, cgroup_name: str) -> AsyncIterator[JobManager]:
    """A manager whose users may have 40 processes and 256 MiB each, all of them 1 GiB."""
    async with cgroup_manager(
        tmp_path,
        cgroup_name,
        user_limits=JobLimits(memory=256 * MiB, pids=40, cpu_weight=50),
        total_limits=JobLimits(memory=1 << 30, pids=500),
    ) as manager:
        yield manager


async def test_each_owner_has_a_group_with_their_budget(
    budgeted: JobManager, cgroup_name: str
) -> None:
    alice = await budgeted.start("alice", ["sleep", "300"])
    bob = await budgeted.start("bob", ["sleep", "300"])
    v2 = budgeted.containment == "cgroup2"
    for status, name in ((alice, "user-alice"), (bob, "user-bob")):
        job = group_of(status.pid, "pids")
        user = job.parent
        assert (job.name, user.name) == (status.id, name)
        assert read_file(f"{user}/pids.max").strip() == "40"
        memory = group_of(status.pid, "memory").parent
        limit = "memory.max" if v2 else "memory.limit_in_bytes"
        assert read_file(f"{memory}/{limit}").strip() == str(256 * MiB)
        cpu = group_of(status.pid, "cpu").parent
        assert read_file(f"{cpu}/cpu.weight" if v2 else f"{cpu}/cpu.shares").strip() == (
            "50" if v2 else "512"
        )
        # Above the owners: what all jobs together may use.
        assert read_file(f"{user.parent}/pids.max").strip() == "500"
    second = await budgeted.start("alice", ["sleep", "300"])
    assert group_of(second.pid, "pids").parent == group_of(alice.pid, "pids").parent
    for status in (alice, bob, second):
        await budgeted.stop(status.owner, status.id)
    # An owner's group goes with their last job (once its watcher has removed the job's).

    async def gone() -> bool:
        return not glob.glob(f"/sys/fs/cgroup/**/{cgroup_name}/user-alice", recursive=True)

    await eventually(gone)


async def test_an_owners_jobs_share_one_budget_of_processes(budgeted: JobManager) -> None:
    spawn = "for i in $(seq 30); do sleep 300 & done; echo spawned; wait"
    first = await budgeted.start("alice", ["sh", "-c", spawn])
    user = group_of(first.pid, "pids").parent

    def current(group: Path) -> int:
        return int(read_file(f"{group}/pids.current"))

    async def all_started() -> bool:
        return current(user) >= 31

    await eventually(all_started)
    # alice's second job finds her budget nearly spent: its forks fail past 40 in all.
    second = await budgeted.start("alice", ["sh", "-c", spawn])
    with trio.fail_after(30):
        final = await budgeted.wait("alice", second.id)
    assert final.state is JobState.FAILED
    assert current(user) <= 40
    # bob's budget is his own: all 30 of his processes start.
    bob = await budgeted.start("bob", ["sh", "-c", spawn])
    with trio.fail_after(20):
        async with budgeted.output("bob", bob.id) as chunks:
            async for chunk in chunks:
                if b"spawned" in chunk:
                    break
    assert current(group_of(bob.pid, "pids").parent) == 31
    for status in (first, bob):
        await budgeted.stop(status.owner, status.id)


@asynccontextmanager
async def v2_backend(cgroup_name: str) -> AsyncIterator[Any]:
    """The cgroup v2 backend on x86_64, where jobs are born in their group; else skip. Its
    root is removed on leaving, and before a skip (setting up the v1 backend made one)."""
    backend = open_backend("auto", cgroup_name)
    try:
        if backend.containment != "cgroup2":
            pytest.skip(
                f"needs the cgroup2 backend (here: {backend.containment}; make test-cgroup2)"
            )
        if os.uname().machine != "x86_64":
            pytest.skip("clone3 into a cgroup is used on x86_64 only")
        yield backend
    finally:
        await backend.aclose()


async def test_on_cgroup_v2_a_job_is_born_in_its_group(cgroup_name: str, tmp_path: Path) -> None:
    # The fallback write to cgroup.procs goes to /dev/full, which refuses it: the start can
    # only succeed if the kernel created the process in its group (CLONE_INTO_CGROUP).
    async with v2_backend(cgroup_name) as backend:
        group = backend.create("alice", str(uuid.uuid4()), JobLimits())
        refusing = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
        try:
            process = await launch_in(
                tmp_path,
                ["sleep", "300"],
                env={"PATH": "/bin:/usr/bin"},
                placement=[refusing],
                cgroup_fd=group.birthplace(),
            )
            group.attach(process.job_pid)
            try:
                assert group._is_member(process.job_pid)
                assert group._members() == [process.job_pid]
            finally:
                await end_supervised(process)
        finally:
            os.close(refusing)
            group.discard()


async def test_a_start_into_a_group_with_no_pids_left_says_so(
    cgroup_name: str, tmp_path: Path
) -> None:
    async with v2_backend(cgroup_name) as backend:
        group = backend.create("alice", str(uuid.uuid4()), JobLimits(pids=10))
        try:
            write_file(f"{group.path}/pids.max", "0")  # as if the job's user had used them all
            with pytest.raises(
                SpawnError, match="cannot place the job in its cgroup: no pids left"
            ):
                await launch_in(
                    tmp_path,
                    ["true"],
                    env={"PATH": "/bin:/usr/bin"},
                    placement=group.placement(),
                    cgroup_fd=group.birthplace(),
                )
            assert group._members() == []
        finally:
            group.discard()
