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

from .rpc.auth import USERNAME

CERTS = Path("certs")
BIN = Path(sys.executable).parent


def _user() -> str:
    name = getpass.getuser()
    return name if USERNAME.fullmatch(name) else "demo"


def _ensure_certs(user: str) -> None:
    if not (CERTS / "ca.pem").exists() or not (CERTS / f"{user}.pem").exists():
        subprocess.run(
            [BIN / "jogger", "certs", "--out", CERTS, "--user", user],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def _jog(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    print(f"$ jog {shlex.join(args)}", flush=True)
    result = subprocess.run(
        [BIN / "jog", *args], env=env, text=True, capture_output=True, check=False
    )
    for line in (result.stdout + result.stderr).splitlines():
        print(f"  {line}", flush=True)
    return result


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
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not found:
            print(f"demo: the server did not start: {line}{server.stderr.read()}")
            yield False
            return
        # Keep reading the server's log so that it never blocks on a full pipe.
        threading.Thread(target=server.stderr.read, daemon=True).start()
        env["JOGGER_HOST"] = f"127.0.0.1:{found.group(1)}"
        print(f"jogger-server is listening on {env['JOGGER_HOST']}")
        yield True
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
        print(f"jogger-server exited with {code} after SIGTERM")
        codes.append(code)


def main() -> int:
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
    ok = (
        run.returncode == 3
        and run.stdout.count("tick") == 3
        and "to stderr" in run.stdout
        and "running" in status.stdout
        and job_id in listing.stdout
        and "stopped" in stop.stdout
        and ticker_id != ""
    )
    return (ticker_id, job_id) if ok else None


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
