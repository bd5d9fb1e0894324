"""jog against ssh: what users feel. Each figure beside ``ssh 127.0.0.1`` in the same run.

Start and status latency, output and stdin throughput, and keystroke echo over a terminal
(``jog run -t`` beside ``ssh -t``, each driven through a pseudo-terminal here).

    python bench/cli.py [--quick] [--only output,followers]

``--only`` runs some groups of rows: start (start, status, run latency), output (``jog run --
cat`` and an ended job's output), stdin, keys (keystroke echo), followers.

Installs Debian's openssh-server if it is missing (needs root and the Debian mirror) and runs
a private sshd on a loopback port with throw-away keys; without it, the ssh columns are
skipped with a message. Prints one table of medians; the ratio is jog / ssh (lower is
better for times, higher for throughput), beside plain ssh (a connection per command) and
multiplexed ssh ("ssh mux": ``ControlMaster=auto``, ``ControlPersist``, its master opened
before the first measure, as power users run it).
"""

import argparse
import contextlib
import os
import pty
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import trio

from jogger.rpc.client import connect
from jogger.rpc.tls import client_context

BIN = Path(sys.executable).parent
SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_sshd() -> str:
    """'' when sshd is ready to use, else why not."""
    if SSHD.exists():
        return ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "openssh-server is not installed and cannot be (not root, or no apt-get)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "openssh-server"],
    ):
        if subprocess.run(args, env=env, capture_output=True, check=False).returncode != 0:
            return "apt-get could not install openssh-server"
    return "" if SSHD.exists() else "openssh-server installed no /usr/sbin/sshd"


@contextmanager
def sshd(tmp: Path) -> Iterator[tuple[list[str], list[str]]]:
    """A private sshd on loopback; yields two ssh command prefixes that reach it: plain (a
    connection per command), and multiplexed as power users run it (``ControlMaster=auto``,
    ``ControlPersist``: commands share one connection, opened here beforehand)."""
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp / name], check=True
        )
    (tmp / "authorized_keys").write_text((tmp / "client.pub").read_text())
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPasswordAuthentication no\n"
        f"PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        f"PidFile {tmp / 'sshd.pid'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", tmp / "sshd_config"], stderr=subprocess.DEVNULL
    )
    command = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "ControlMaster=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-i",
        str(tmp / "client"),
        "-p",
        str(port),
        "127.0.0.1",
    ]
    try:
        for _ in range(100):
            if subprocess.run([*command, "true"], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the private sshd did not accept us")
        shared = [
            *command[:3],
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={tmp / 'cm-%C'}",
            "-o",
            "ControlPersist=600",
            *command[5:],
        ]
        subprocess.run([*shared, "true"], capture_output=True, check=True)  # the master
        try:
            yield command, shared
        finally:
            subprocess.run([*shared, "-O", "exit"], capture_output=True, check=False)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()


@contextmanager
def jogger_server(tmp: Path, *extra: str) -> Iterator[dict[str, str]]:
    certs = tmp / "certs"
    subprocess.run(
        [BIN / "jogger", "certs", "--out", certs, "--user", "bench"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    env = dict(
        os.environ,
        JOGGER_CA_CERT_FILE=str(certs / "ca.pem"),
        JOGGER_SERVER_CERT_FILE=str(certs / "server.pem"),
        JOGGER_SERVER_KEY_FILE=str(certs / "server-key.pem"),
        JOGGER_USER_CERT_FILE=str(certs / "bench.pem"),
        JOGGER_USER_KEY_FILE=str(certs / "bench-key.pem"),
        JOGGER_HOST=f"127.0.0.1:{port}",
    )
    server = subprocess.Popen(
        [
            BIN / "jogger-server",
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            tmp / "state",
            "--max-output-bytes",
            str(4 << 30),
            "--max-jobs",
            "1000",
            "--max-jobs-per-user",
            "1000",
            # As ssh does: the jobs run as the user who asked (root here), who can read the
            # benchmark's 0700 temporary directory; nobody, the default, could not.
            "--run-as",
            "server",
            *extra,
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            probe = subprocess.run([BIN / "jog", "list"], env=env, capture_output=True, check=False)
            if probe.returncode == 0:
                break
            time.sleep(0.05)
        yield env
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()


def timed(args: list[str | Path], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(args, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def median_of(n: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(n))


async def followers(env: dict[str, str], clients: int, mib: int) -> float:
    """``clients`` connections from one process follow one job writing ``mib`` MiB."""
    host, port = env["JOGGER_HOST"].rsplit(":", 1)
    context = client_context(
        Path(env["JOGGER_CA_CERT_FILE"]),
        Path(env["JOGGER_USER_CERT_FILE"]),
        Path(env["JOGGER_USER_KEY_FILE"]),
    )
    totals: list[int] = []
    async with connect(host, int(port), context) as owner:
        start = time.perf_counter()
        job = await owner.start(["dd", "if=/dev/zero", "bs=1M", f"count={mib}", "status=none"])

        async def follow() -> None:
            # A generous timeout: 100 handshakes at once on a loaded 2-core box take a while.
            async with connect(host, int(port), context, connect_timeout=120) as client:
                total = 0
                async with client.output(job.job_id) as chunks:
                    async for chunk in chunks:
                        total += len(chunk.data)
                totals.append(total)

        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(follow)
        elapsed = time.perf_counter() - start
    assert totals == [mib << 20] * clients, totals
    return elapsed


def piped(source: list[str], sink: list[str | Path], env: dict[str, str] | None = None) -> float:
    """Seconds for ``source | sink > /dev/null``."""
    start = time.perf_counter()
    producer = subprocess.Popen(source, stdout=subprocess.PIPE)
    assert producer.stdout is not None
    consumer = subprocess.run(
        sink, stdin=producer.stdout, stdout=subprocess.DEVNULL, env=env, check=True
    )
    producer.stdout.close()
    producer.wait()
    assert consumer.returncode == 0
    assert producer.returncode == 0
    return time.perf_counter() - start


def keystroke_echo(command: list[str | Path], env: dict[str, str] | None, n: int) -> list[float]:
    """Seconds from a key pressed on ``command``'s terminal to its echo, ``n`` times.

    ``command`` runs ``cat`` on a remote terminal: the remote terminal echoes each key. Run
    under a pseudo-terminal of ours, as a user at a terminal would."""
    pid, master = pty.fork()
    if pid == 0:  # the child: becomes the command, on our pty
        os.execvpe(str(command[0]), [str(a) for a in command], env or os.environ)
    try:
        _read_until(master, b"", 0.5)  # whatever the start prints
        samples = []
        # Wait for the remote cat to be there: keys typed before it would be echoed anyway
        # (the remote terminal echoes), but its start is not what we time.
        time.sleep(1.0)
        _read_until(master, b"", 0.2)
        for i in range(n):
            key = b"abcdefghij"[i % 10 : i % 10 + 1]
            start = time.perf_counter()
            os.write(master, key)
            _read_until(master, key, 5.0)
            samples.append(time.perf_counter() - start)
        os.write(master, b"\x03")  # Ctrl-C ends the remote cat
        _read_until(master, b"", 1.0)
        return samples
    finally:
        os.close(master)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    """Read what ``fd`` gives until ``wanted`` shows up (``b""``: for ``timeout``)."""
    seen = b""
    deadline = time.perf_counter() + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            if wanted:
                raise TimeoutError(f"no echo of {wanted!r} within {timeout} s: {seen[-200:]!r}")
            return seen
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return seen
        if not chunk:
            return seen
        seen += chunk
        if wanted and wanted in seen:
            return seen


GROUPS = ("start", "output", "stdin", "keys", "followers")


def main(quick: bool, only: frozenset[str] = frozenset(GROUPS)) -> None:
    n = 5 if quick else 20
    mib = 128 if quick else 1024
    rows: list[tuple[str, float, float | None, float | None, str]] = []
    why_no_ssh = ensure_sshd()
    with tempfile.TemporaryDirectory(prefix="jogger-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data.bin"
        with open(data, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(mib):
                f.write(block)
        with jogger_server(tmp) as env, sshd(tmp) if not why_no_ssh else _no_ssh() as (ssh, mux):
            jog = [BIN / "jog"]
            job = subprocess.run(
                [*jog, "start", "--", "true"], env=env, capture_output=True, text=True, check=True
            ).stdout.split()[1]
            start_rows = "start" in only
            ssh_true = median_of(n, lambda: timed([*ssh, "true"])) if ssh and start_rows else None
            mux_true = median_of(n, lambda: timed([*mux, "true"])) if mux and start_rows else None
            for label, args in (
                ("jog start -- true", ["start", "--", "true"]),
                ("jog status ID", ["status", job]),
                ("jog run -- true", ["run", "--", "true"]),
            ):
                if not start_rows:
                    break
                command: list[str | Path] = [*jog, *args]
                ours = median_of(n, partial(timed, command, env))
                rows.append((label, ours, ssh_true, mux_true, "s"))
            runs = 3
            if "output" in only:
                jog_run = median_of(runs, lambda: timed([*jog, "run", "--", "cat", str(data)], env))
                ssh_cat = median_of(runs, lambda: timed([*ssh, "cat", str(data)])) if ssh else None
                mux_cat = median_of(runs, lambda: timed([*mux, "cat", str(data)])) if mux else None
                rows.append(
                    (
                        f"{mib} MiB: jog run -- cat vs ssh cat",
                        mib * 1.048576 / jog_run,
                        mib * 1.048576 / ssh_cat if ssh_cat else None,
                        mib * 1.048576 / mux_cat if mux_cat else None,
                        "MB/s",
                    )
                )
                done = subprocess.run(
                    [*jog, "start", "--", "cat", str(data)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()[1]
                subprocess.run(
                    [*jog, "output", done],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                )
                jog_out = median_of(runs, lambda: timed([*jog, "output", done], env))
                rows.append(
                    (
                        f"{mib} MiB: jog output of an ended job",
                        mib * 1.048576 / jog_out,
                        mib * 1.048576 / ssh_cat if ssh_cat else None,
                        mib * 1.048576 / mux_cat if mux_cat else None,
                        "MB/s",
                    )
                )
            if "stdin" in only:
                stdin_mib = 64 if quick else 512
                dd = ["dd", "if=/dev/zero", "bs=1M", f"count={stdin_mib}", "status=none"]
                jog_in = median_of(runs, lambda: piped(dd, [*jog, "run", "--", "cat"], env))
                ssh_in = median_of(runs, lambda: piped(dd, [*ssh, "cat"])) if ssh else None
                mux_in = median_of(runs, lambda: piped(dd, [*mux, "cat"])) if mux else None
                rows.append(
                    (
                        f"{stdin_mib} MiB: dd | jog run -- cat vs ssh",
                        stdin_mib * 1.048576 / jog_in,
                        stdin_mib * 1.048576 / ssh_in if ssh_in else None,
                        stdin_mib * 1.048576 / mux_in if mux_in else None,
                        "MB/s",
                    )
                )
            if "keys" in only:
                rows.extend(keystroke_rows(jog, ssh, mux, env, 20 if quick else 200))
            if "followers" in only:
                clients, fan_mib = (20, 16) if quick else (100, 64)
                elapsed = trio.run(followers, env, clients, fan_mib)
                rows.append(
                    (
                        f"{clients} followers of one {fan_mib} MiB job, total",
                        clients * fan_mib * 1.048576 / elapsed,
                        None,
                        None,
                        "MB/s",
                    )
                )
    print_table(rows, why_no_ssh)


def keystroke_rows(
    jog: Sequence[str | Path], ssh: list[str], mux: list[str], env: dict[str, str], keys: int
) -> list[tuple[str, float, float | None, float | None, str]]:
    """Keystroke echo over a terminal, p50 and p99, in ms."""
    jog_keys = keystroke_echo([*jog, "run", "-t", "--", "cat"], env, keys)
    ssh_keys = keystroke_echo([*ssh, "-tt", "cat"], None, keys) if ssh else None
    mux_keys = keystroke_echo([*mux, "-tt", "cat"], None, keys) if mux else None
    return [
        (
            f"keystroke echo, -t -- cat, {label}",
            _quantile(jog_keys, pick) * 1e3,
            _quantile(ssh_keys, pick) * 1e3 if ssh_keys else None,
            _quantile(mux_keys, pick) * 1e3 if mux_keys else None,
            "ms",
        )
        for label, pick in (("p50", 0.5), ("p99", 0.99))
    ]


def print_table(
    rows: list[tuple[str, float, float | None, float | None, str]], why_no_ssh: str
) -> None:
    print(f"{'measure':44} {'jog':>9} {'ssh':>9} {'ratio':>6} {'ssh mux':>9} {'ratio':>6}  unit")
    print("-" * 93)
    for label, ours, theirs, shared, unit in rows:
        cells = []
        for baseline in (theirs, shared):
            shown = f"{baseline:9.3f}" if baseline else f"{'-':>9}"
            cells.append(f"{shown} {f'{ours / baseline:.2f}' if baseline else '-':>6}")
        print(f"{label:44} {ours:9.3f} {' '.join(cells)}  {unit}")
    if why_no_ssh:
        print(f"ssh baseline skipped: {why_no_ssh}")


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def _no_ssh() -> Iterator[tuple[list[str], list[str]]]:
    yield [], []


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups of rows to run, of: {', '.join(GROUPS)} (default: all)",
    )
    args = parser.parse_args()
    only = frozenset(args.only.split(","))
    if not only <= set(GROUPS):
        parser.error(f"--only: unknown group(s) {', '.join(sorted(only - set(GROUPS)))}")
    main(args.quick, only)
