"""The jobs never starve the server: the root of all jobs weighs less on the CPU than it.

Real cgroups, the weights as the kernel holds them in the files: cgroup v1 on our CI machines
(as root), cgroup v2 inside the VM (`make test-cgroup2`). Elsewhere they skip, saying why.
"""

import os
import uuid
from pathlib import Path

import pytest
import trio

from jogger.engine.cgroups import fs, open_backend
from jogger.engine.limits import JobLimits
from tests.engine.test_cgroups import cgroup_manager, group_of, read_file
from tests.procs import PYTHON

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")


@pytest.fixture
def cgroup_name() -> str:
    return f"jogger-test-{uuid.uuid4().hex[:8]}"


async def test_the_root_of_all_jobs_weighs_less_on_the_cpu_than_the_server(
    tmp_path: Path, cgroup_name: str
) -> None:
    async with cgroup_manager(tmp_path, cgroup_name) as manager:
        status = await manager.start("alice", ["sleep", "300"])
        v2 = manager.containment == "cgroup2"
        job = group_of(status.pid, "cpu")
        root = job.parent.parent
        assert (root.name, job.parent.name) == (cgroup_name, "user-alice")
        # cpu.weight 50 on v2; on v1 the same as cpu.shares (1024 is v2's 100).
        weight = read_file(f"{root}/cpu.weight" if v2 else f"{root}/cpu.shares").strip()
        assert weight == ("50" if v2 else "512")
        # The owner's weight divides the jobs' share among owners; it is not raised above it.
        user = read_file(f"{job.parent}/cpu.weight" if v2 else f"{job.parent}/cpu.shares")
        assert user.strip() == ("100" if v2 else "1024")
        # This process runs the manager: the server. It is beside the jobs' root, never in it.
        server = group_of(os.getpid(), "cpu")
        assert root not in (server, *server.parents)
        if server == root.parent:
            # Among the tasks of the jobs' root's parent (v1, or the v2 root cgroup): each of
            # its threads weighs what its nice value says, 1024 (cpu.weight 100) at nice 0.
            assert os.getpriority(os.PRIO_PROCESS, 0) == 0
        else:
            # In the leaf of its own that v2's no-internal-process rule made it move into.
            assert v2
            assert (server.parent, server.name) == (root.parent, "server")
            assert read_file(f"{server}/cpu.weight").strip() == "100"
        await manager.stop("alice", status.id)


# A server alone in its cgroup, as under systemd with Delegate=yes: it prints where it is and
# the weights it wrote, then removes what it set up.
ALONE = """
import sys, trio
from jogger.engine.cgroups import open_backend

async def main():
    backend = open_backend("cgroup2", sys.argv[1])
    try:
        print(open("/proc/self/cgroup").read().strip())
        print(open(backend.root / "cpu.weight").read().strip())
        print(open(backend.server_leaf / "cpu.weight").read().strip())
    finally:
        await backend.aclose()

trio.run(main)
"""


async def test_on_cgroup_v2_a_server_alone_in_its_cgroup_moves_into_a_leaf_that_outweighs_jobs(
    tmp_path: Path, cgroup_name: str
) -> None:
    backend = open_backend("auto", cgroup_name)
    containment = backend.containment
    await backend.aclose()  # (setting up the v1 backend made its root: remove it)
    if containment != "cgroup2":
        pytest.skip(f"needs the cgroup2 backend (here: {containment}; make test-cgroup2)")
    own = group_of(os.getpid(), "cpu") / f"{cgroup_name}-own"
    own.mkdir()
    try:
        if "cpu" not in read_file(f"{own}/cgroup.controllers").split():
            pytest.skip(f"the cpu controller is not delegated to {own.parent}")
        # The shell moves itself into the new group and becomes the server there.
        move_and_run = 'echo $$ > "$1/cgroup.procs" && exec "$2" -c "$3" "$4"'
        done = await trio.run_process(
            ["sh", "-c", move_and_run, "sh", str(own), PYTHON, ALONE, cgroup_name],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        where, jobs, server = done.stdout.decode().splitlines()
        assert where.startswith("0::")
        assert where.endswith(f"/{own.name}/server")
        assert (jobs, server) == ("50", "100")
        assert not (own / cgroup_name).exists()
    finally:
        with trio.fail_after(30):
            await fs.remove_tree(own)


async def test_on_cgroup_v1_a_new_job_moves_into_its_cpu_group_last(cgroup_name: str) -> None:
    # Every move takes the locks every fork on the host waits for; a job in its cpu group
    # runs at the jobs' low weight: it must take them no more once there (v1.placement_order).
    backend = open_backend("auto", cgroup_name)
    try:
        if backend.containment != "cgroup1":
            pytest.skip(f"needs the cgroup1 backend (here: {backend.containment})")
        group = backend.create("alice", str(uuid.uuid4()), JobLimits())
        try:
            moves = [Path(os.readlink(f"/proc/self/fd/{fd}")) for fd in group.placement()]
        finally:
            group.discard()
        cpu = group_of(os.getpid(), "cpu")
        assert len(moves) == len(set(moves)) >= 2
        assert all(move.name == "cgroup.procs" for move in moves)
        assert cpu in moves[-1].parents
        assert not any(cpu in move.parents for move in moves[:-1])
    finally:
        await backend.aclose()
