"""The release path for real: ``python -m build`` on a clean copy of this checkout (its
tracked files only) makes an sdist and a wheel, and a wheel again from the sdist (as pip
does for an sdist install); the wheel installed into a fresh virtualenv gives working
jog, jogger-server and jogger, C supervisor included, which run a job end to end.

pip fetches the build and runtime dependencies from the package index (its cache helps);
with no index to reach, the tests skip and say so.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SUPERVISOR = "jogger/engine/jogger-supervise"
BUILD_TIMEOUT = 300

pytestmark = pytest.mark.timeout(900)


def run(
    argv: list[str | Path], *, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False, env=env, cwd=cwd
    )


def checked(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_copy(destination: Path) -> Path:
    """The checkout's tracked files as the work tree has them: no build output, no venv."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: nothing tells what a clean tree holds")
    listed = checked(run(["git", "-C", ROOT, "ls-files", "-z"])).split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not copied
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def index_reachable(scratch: Path) -> str:
    """'' when pip can fetch from its index, else why not."""
    done = run(
        [
            PYTHON,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            scratch,
            "setuptools>=77",
        ]
    )
    if done.returncode == 0:
        return ""
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"pip download exited {done.returncode}"


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel_from_tree: Path
    wheel_from_sdist: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    base = tmp_path_factory.mktemp("packaging")
    why = index_reachable(base / "probe")
    if why:
        pytest.skip(f"the package index cannot be reached: {why}")
    source = clean_copy(base / "src")
    # A wheel straight from the tree, then the default: an sdist, and a wheel built from it.
    checked(run([PYTHON, "-m", "build", "--wheel", "--outdir", base / "tree", source]))
    checked(run([PYTHON, "-m", "build", "--outdir", base / "sdist", source]))
    [wheel_from_tree] = (base / "tree").glob("*.whl")
    [sdist] = (base / "sdist").glob("*.tar.gz")
    [wheel_from_sdist] = (base / "sdist").glob("*.whl")
    return Dist(sdist, wheel_from_tree, wheel_from_sdist)


def test_the_sdist_holds_everything_the_wheel_is_built_from(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in (
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        "README.md",
        "SECURITY.md",
        "LICENSE",
        "jogger/engine/supervise.c",
        "jogger/engine/spawn_child.h",
        "jogger/engine/sandbox.h",
        "jogger/py.typed",
        "proto/jogger/v1/jobs.proto",
        "proto/grpc/health/v1/health.proto",
        "proto/grpc/reflection/v1/reflection.proto",
        "contrib/systemd/jogger.service",
        "contrib/systemd/stop-jobs.conf",
        "docs/rfd-2-live-restore.md",
    ):
        assert needed in names, needed
    assert not [name for name in names if name.startswith("tests/")]


@pytest.mark.parametrize("which", ["wheel_from_tree", "wheel_from_sdist"])
def test_the_wheel_is_for_this_platform_and_holds_the_supervisor_executable(
    dist: Dist, which: str
) -> None:
    wheel: Path = getattr(dist, which)
    machine = os.uname().machine
    assert wheel.name == f"jogger-{VERSION}-py3-none-linux_{machine}.whl"
    with zipfile.ZipFile(wheel) as archive:
        supervisor = archive.getinfo(SUPERVISOR)
        names = archive.namelist()
    mode = supervisor.external_attr >> 16
    assert stat.S_ISREG(mode)
    assert mode & 0o111 == 0o111
    assert not [name for name in names if name.endswith((".c", ".h"))]


@dataclass(frozen=True)
class Installed:
    bin: Path
    home: Path


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from the sdist, in a fresh virtualenv of this Python."""
    home = tmp_path_factory.mktemp("installed")
    venv = home / "venv"
    checked(run([PYTHON, "-m", "venv", venv]))
    checked(run([venv / "bin" / "pip", "install", "--quiet", dist.wheel_from_sdist]))
    return Installed(venv / "bin", home)


def outside_the_checkout() -> dict[str, str]:
    """An environment in which nothing points back at this checkout or its venv."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOGGER_", "PYTHON", "VIRTUAL_ENV")) and k != "PATH"
    } | {"PATH": "/usr/local/bin:/usr/bin:/bin"}


@pytest.mark.parametrize("program", ["jog", "jogger-server", "jogger"])
def test_each_installed_program_says_its_version(installed: Installed, program: str) -> None:
    done = run([installed.bin / program, "--version"], env=outside_the_checkout(), cwd="/")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{program} {VERSION}\n", "")


def test_the_installed_package_is_the_wheels_with_its_supervisor(installed: Installed) -> None:
    done = run(
        [
            installed.bin / "python",
            "-c",
            "import os, jogger.engine.supervisor as s; "
            "print(s.PROGRAM, os.access(s.PROGRAM, os.X_OK))",
        ],
        env=outside_the_checkout(),
        cwd="/",
    )
    program, executable = checked(done).split()
    assert Path(program).is_relative_to(installed.bin.parent)
    assert executable == "True"


async def test_the_installed_programs_run_a_job_end_to_end(installed: Installed) -> None:
    env = outside_the_checkout()
    certs = installed.home / "certs"
    made = await trio.run_process(
        [installed.bin / "jogger", "certs", "--out", certs, "--user", "alice"],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    server_env = env | {
        "JOGGER_CA_CERT_FILE": str(certs / "ca.pem"),
        "JOGGER_SERVER_CERT_FILE": str(certs / "server.pem"),
        "JOGGER_SERVER_KEY_FILE": str(certs / "server-key.pem"),
    }
    log = installed.home / "server.log"
    stderr = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        server = await trio.lowlevel.open_process(
            [
                installed.bin / "jogger-server",
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                installed.home / "state",
                "--run-as",
                "server",
            ],
            env=server_env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stderr=stderr,
        )
    finally:
        os.close(stderr)
    try:
        port = await listening_port(server, log)
        ran = await trio.run_process(
            [installed.bin / "jog", "run", "-n", "--", "echo", "hi"],
            env=env
            | {
                "JOGGER_HOST": f"localhost:{port}",
                "JOGGER_CA_CERT_FILE": str(certs / "ca.pem"),
                "JOGGER_USER_CERT_FILE": str(certs / "alice.pem"),
                "JOGGER_USER_KEY_FILE": str(certs / "alice-key.pem"),
            },
            cwd="/",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert (ran.returncode, ran.stdout) == (0, b"hi\n"), ran.stderr
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await server.wait() == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


async def listening_port(server: trio.Process, log: Path) -> int:
    """The port the server's first log line names, once it has written it."""
    with trio.fail_after(60):
        while True:
            text = await trio.Path(log).read_text()
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            if found:
                return int(found.group(1))
            assert server.poll() is None, "jogger-server exited:\n" + text
            await trio.sleep(0.05)  # nothing to wait on but the file itself
