"""``make demo``: a real server on loopback, real jobs through the real ``jog``.

Generates development certificates into ./certs if they are missing, starts jogger-server
on a free loopback port with a temporary state dir, runs jobs with ``jog run``, ``jog
start``, ``jog status``, ``jog list`` and ``jog stop``, then shuts the server down with
SIGTERM, restarts it on the same state dir and shows that the jobs are still there. Leaves
nothing running. Exits non-zero if anything is not as promised.
"""

import getpass
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .rpc.auth import USERNAME

CERTS = Path("certs")
BIN = Path(sys.executable).parent
START_TIMEOUT = 20.0
"""How long the server may take to say where it listens."""
STOP_TIMEOUT = 20.0
"""How long it may take to exit after SIGTERM (its --grace is 2 s), and again after SIGKILL."""
JOG_TIMEOUT = 20.0
"""How long one jog command (or jogger certs) may take."""


def _user() -> str:
    name = getpass.getuser()
    return name if USERNAME.fullmatch(name) else "demo"


def _ensure_certs(user: str) -> None:
    if not (CERTS / "ca.pem").exists() or not (CERTS / f"{user}.pem").exists():
        subprocess.run(
            [BIN / "jogger", "certs", "--out", CERTS, "--user", user],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=JOG_TIMEOUT,
        )


def _jog(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    print(f"$ jog {shlex.join(args)}")
    try:
        result = subprocess.run(
            [BIN / "jog", *args],
            env=env,
            text=True,
            capture_output=True,
            check=False,
            timeout=JOG_TIMEOUT,
        )
    except subprocess.TimeoutExpired:  # run() has killed it
        print(f"  demo: jog did not finish within {JOG_TIMEOUT} s")
        return subprocess.CompletedProcess([], 124, "", "")
    for line in (result.stdout + result.stderr).splitlines():
        print(f"  {line}")
    return result


class _Log:
    """The server's stderr, read by a thread from the start (so that the server never blocks
    on a full pipe): every line kept, and the address once it says where it listens."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.address = ""
        self._changed = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if found and not self.address:
                    self.address = f"127.0.0.1:{found.group(1)}"
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for_address(self, timeout: float) -> str:
        """The address the server listens on; "" if it exited or said nothing in time."""
        with self._changed:
            self._changed.wait_for(lambda: self.address or self._ended, timeout)
            return self.address

    def finish(self, timeout: float) -> None:
        self._thread.join(timeout)


@contextmanager
def _server(env: dict[str, str], state: str, codes: list[int]) -> Iterator[bool]:
    """Run jogger-server on a free loopback port; yield whether it came up. Its exit code
    after SIGTERM goes to ``codes``."""
    server = subprocess.Popen(
        [BIN / "jogger-server", "--listen", "127.0.0.1:0", "--state-dir", state, "--grace", "2"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    log = _Log(server.stderr)
    try:
        address = log.wait_for_address(START_TIMEOUT)
        if not address:
            why = (
                "exited"
                if server.poll() is not None
                else f"is not listening after {START_TIMEOUT} s"
            )
            print(f"demo: the server {why}; it printed:")
            for line in log.lines or ["(nothing)"]:
                print(f"  {line}")
            yield False
            return
        env["JOGGER_HOST"] = address
        print(f"jogger-server is listening on {address}")
        for line in log.lines:
            if "level=WARNING" in line:
                print(f"  server: {line.split(' logger=', 1)[-1].split(' ', 1)[-1]}")
        yield True
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"demo: the server did not exit within {STOP_TIMEOUT} s of SIGTERM; killing it")
            server.kill()
            code = server.wait(timeout=STOP_TIMEOUT)
        log.finish(STOP_TIMEOUT)
        print(f"jogger-server exited with {code} after SIGTERM")
        codes.append(code)


def main() -> int:
    # Each line as it happens, also into a pipe (``make demo | tee``) and without
    # PYTHONUNBUFFERED.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    user = _user()
    _ensure_certs(user)
    env = dict(
        os.environ,
        JOGGER_CA_CERT_FILE=str(CERTS / "ca.pem"),
        JOGGER_SERVER_CERT_FILE=str(CERTS / "server.pem"),
        JOGGER_SERVER_KEY_FILE=str(CERTS / "server-key.pem"),
        JOGGER_USER_CERT_FILE=str(CERTS / f"{user}.pem"),
        JOGGER_USER_KEY_FILE=str(CERTS / f"{user}-key.pem"),
    )
    print(f"as user {user!r}")
    codes: list[int] = []
    with tempfile.TemporaryDirectory(prefix="jogger-demo-") as state:
        with _server(env, state, codes) as up:
            jobs = _scenario(env) if up else None
        ok = jobs is not None
        if jobs is not None:
            print("-- the server restarts on the same state dir: the jobs are still there")
            with _server(env, state, codes) as up:
                ok = up and _after_restart(env, *jobs)
    ok = ok and codes == [0, 0]
    print("demo: ok" if ok else "demo: FAILED")
    return 0 if ok else 1


def _scenario(env: dict[str, str]) -> tuple[str, str] | None:
    """Jobs run, listed and stopped; returns (the ticker's id, the stopped job's id)."""
    ticker = "for i in 1 2 3; do echo tick $i; sleep 0.2; done; echo 'to stderr' >&2; exit 3"
    run = _jog(env, "run", "--", "sh", "-c", ticker)
    started = _jog(env, "start", "--", "sleep", "600")
    job_id = started.stdout.split()[-1] if started.returncode == 0 else ""
    status = _jog(env, "status", job_id)
    listing = _jog(env, "list")
    stop = _jog(env, "stop", "--grace", "1", job_id)
    ticker_id = next((line.split()[0] for line in listing.stdout.splitlines()[2:]), "")
    isolated = _isolated(env)
    ok = isolated and (
        run.returncode == 3
        and run.stdout.count("tick") == 3
        and "to stderr" in run.stdout
        and "running" in status.stdout
        and job_id in listing.stdout
        and "stopped" in stop.stdout
        and ticker_id != ""
    )
    return (ticker_id, job_id) if ok else None


def _isolated(env: dict[str, str]) -> bool:
    """A job in namespaces of its own, where the server can make them (root)."""
    if os.geteuid() != 0:
        print("-- jog run --isolate needs a server that is root (namespaces): not shown")
        return True
    look = 'echo "hostname $(hostname), processes: $(ls /proc | grep -c "^[0-9]")"; ls /tmp'
    run = _jog(env, "run", "--isolate", "--", "sh", "-c", look)
    return run.returncode == 0 and "hostname jog-" in run.stdout


def _after_restart(env: dict[str, str], ticker_id: str, stopped_id: str) -> bool:
    listing = _jog(env, "list")
    output = _jog(env, "output", ticker_id)
    status = _jog(env, "status", stopped_id)
    return (
        ticker_id in listing.stdout
        and stopped_id in listing.stdout
        and output.stdout.count("tick") == 3
        and "stopped" in status.stdout
    )


if __name__ == "__main__":
    sys.exit(main())
