"""The real jogger-server with the unit's capability bounding set and NoNewPrivileges, as
systemd would start it (setpriv(1) does the same to a root process before its exec): what
the server must still do for its jobs, it does.

For a root service without file capabilities, systemd's CapabilityBoundingSet= leaves the
process exactly those capabilities (permitted and effective), as setpriv's --bounding-set
does here; the other sandboxing directives (mount namespaces, seccomp filters) need systemd
itself, which is not process 1 on the test machines.
"""

import os
import pwd
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from tests.contrib.units import UNIT, one, settings
from tests.e2e.conftest import Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="switching users and namespaces need root"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing"),
]

# linux/capability.h: the numbers of the capabilities the unit may name.
NUMBERS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_RESOURCE": 24,
}
NOBODY = pwd.getpwnam("nobody")


def unit_capabilities() -> list[str]:
    return one(settings(UNIT), "CapabilityBoundingSet").split()


def setpriv() -> list[str]:
    """setpriv's arguments for what the unit gives the server."""
    names = ",".join("+" + name.removeprefix("CAP_").lower() for name in unit_capabilities())
    argv = ["setpriv", "--inh-caps=-all", f"--bounding-set=-all,{names}"]
    if one(settings(UNIT), "NoNewPrivileges") == "yes":
        argv.append("--no-new-privs")
    return [*argv, "--"]


@pytest.fixture
async def sandboxed(pki: Pki, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Cli]:
    """The server as the unit would run it (its jobs as nobody: --run-as fixed)."""
    server = await launch(pki, tmp_path / "state", nursery, "--run-as", "fixed", prefix=setpriv())
    try:
        yield server
    finally:
        await stop_server(server.process)


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split()[1]
    raise LookupError(name)


async def test_the_server_has_the_units_capabilities_and_no_others(sandboxed: Cli) -> None:
    expected = sum(1 << NUMBERS[name] for name in unit_capabilities())
    pid = sandboxed.process.pid
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status_field(pid, field), 16) == expected, field
    assert status_field(pid, "NoNewPrivs") == "1"


async def test_a_job_runs_as_nobody_and_is_stopped_by_the_server(sandboxed: Cli) -> None:
    ran = await sandboxed.jog("run", "-n", "--", "id", "-u")
    assert (ran.returncode, ran.stdout) == (0, f"{NOBODY.pw_uid}\n".encode()), ran.stderr
    started = await sandboxed.jog("start", "--", "sleep", "300")
    job = job_id_of(started)
    stopped = await sandboxed.jog("stop", "--grace", "5", job)
    assert stopped.returncode == 0, stopped.stderr
    shown = (await sandboxed.jog("status", job)).stdout.decode()
    assert "stopped" in shown, shown


async def test_a_terminal_job_owns_its_terminal(sandboxed: Cli) -> None:
    started = await sandboxed.jog("start", "-t", "--", "sh", "-c", 'stat -c %U:%a "$(tty)"')
    output = await sandboxed.jog("output", job_id_of(started))
    assert output.returncode == 0, output.stderr
    assert output.stdout.strip() == b"nobody:620"


@pytest.fixture
def nobodys_work() -> Iterator[Path]:
    """A directory of nobody's in a home only nobody may search (0700)."""
    top = Path(tempfile.mkdtemp(prefix="jogger-home-"))
    try:
        top.chmod(0o711)
        home = top / "nobody"
        work = home / "work"
        work.mkdir(parents=True)
        for path in (home, work):
            os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
        home.chmod(0o700)
        yield work
    finally:
        shutil.rmtree(top)


async def test_an_isolated_job_starts_in_a_directory_only_its_user_may_search(
    sandboxed: Cli, nobodys_work: Path
) -> None:
    # The job's init, still root, binds the working directory back into a read-only root:
    # through a home that only its owner may search (CAP_DAC_READ_SEARCH).
    ran = await sandboxed.jog(
        "run",
        "-n",
        "--isolate",
        "--read-only-root",
        "--cwd",
        str(nobodys_work),
        "--",
        "sh",
        "-c",
        "hostname; pwd; touch written && echo wrote",
    )
    assert ran.returncode == 0, ran.stderr
    hostname, cwd, wrote = ran.stdout.decode().split()
    assert hostname.startswith("jog-")
    assert (cwd, wrote) == (str(nobodys_work), "wrote")
    assert (nobodys_work / "written").exists()
