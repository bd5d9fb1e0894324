"""jog across many hosts: one ``jog run --hosts`` on 8 servers against 8 ``jog run``s one
after another, in the same run.

    python bench/hosts.py [--quick] [--servers N] [--rounds N]

Starts N jogger-servers (default 8) on loopback, each with its own state dir and port, and
one set of development certificates. Each round times, in alternating order:

1. ``jog run -- true`` on each server in turn, and ``jog run --hosts ALL -- true``;
2. the same with ``seq 100000`` (575 KiB of output per host, every line prefixed with
   --hosts), stdout to /dev/null;
3. ``jog list`` on each server in turn, and ``jog list --hosts ALL``.

Prints one table of medians; the ratio is --hosts / sequential (lower is better).
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
JOG = BIN / "jog"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(env: dict[str, str], state: Path) -> Iterator[str]:
    """A jogger-server on a free loopback port until the block ends; yields its address."""
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            BIN / "jogger-server",
            "--listen",
            address,
            "--state-dir",
            state,
            "--max-jobs",
            "10000",
            "--max-jobs-per-user",
            "10000",
            # The jobs run as the user who asked, as in bench/cli.py: nobody could not run them
            # from this 0700 temporary directory.
            "--run-as",
            "server",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(400):
            probe = subprocess.run(
                [JOG, "list", "--host", address], env=env, capture_output=True, check=False
            )
            if probe.returncode == 0:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"jogger-server on {address} did not answer")
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()


def timed(args: list[str | Path], env: dict[str, str]) -> float:
    start = time.perf_counter()
    # stderr too: after a few rounds jog list says it shows the newest 100 jobs.
    subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(servers: int, rounds: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="jogger-bench-hosts-") as tmp_name,
        ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        certs = tmp / "certs"
        subprocess.run(
            [BIN / "jogger", "certs", "--out", certs, "--user", "bench"],
            check=True,
            capture_output=True,
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("JOGGER_")},
            "XDG_CONFIG_HOME": str(tmp / "config"),  # no contexts: addresses only
            "JOGGER_CA_CERT_FILE": str(certs / "ca.pem"),
            "JOGGER_SERVER_CERT_FILE": str(certs / "server.pem"),
            "JOGGER_SERVER_KEY_FILE": str(certs / "server-key.pem"),
            "JOGGER_USER_CERT_FILE": str(certs / "bench.pem"),
            "JOGGER_USER_KEY_FILE": str(certs / "bench-key.pem"),
        }
        addresses = [stack.enter_context(server(env, tmp / f"state-{n}")) for n in range(servers)]
        every = ",".join(addresses)
        measures: list[tuple[str, list[str]]] = [
            (f"jog run -- true, {servers} hosts", ["run", "--", "true"]),
            (f"jog run -- seq 100000, {servers} hosts", ["run", "--", "seq", "100000"]),
            (f"jog list, {servers} hosts", ["list"]),
        ]
        samples: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m, _ in measures}
        for round_ in range(rounds):
            for label, args in measures:
                command, rest = args[0], args[1:]

                def one_by_one(command: str = command, rest: list[str] = rest) -> float:
                    return sum(
                        timed([JOG, command, "--host", address, *rest], env)
                        for address in addresses
                    )

                def at_once(command: str = command, rest: list[str] = rest) -> float:
                    return timed([JOG, command, "--hosts", every, *rest], env)

                # Alternate which goes first, so that neither always runs on a warmer box.
                first, second = (one_by_one, at_once) if round_ % 2 == 0 else (at_once, one_by_one)
                a, b = first(), second()
                sequential, fanned = (a, b) if first is one_by_one else (b, a)
                samples[label][0].append(sequential)
                samples[label][1].append(fanned)
    title = f"measure (median of {rounds} rounds)"
    print(f"{title:44} {'sequential':>11} {'--hosts':>9} {'ratio':>6}")
    print("-" * 74)
    for label, (sequential_times, fanned_times) in samples.items():
        s, f = statistics.median(sequential_times), statistics.median(fanned_times)
        print(f"{label:44} {s:9.3f} s {f:7.3f} s {f / s:6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, for a smoke test")
    parser.add_argument("--servers", type=int, default=8, help="how many servers (default 8)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    options = parser.parse_args()
    main(options.servers, 3 if options.quick else options.rounds)
