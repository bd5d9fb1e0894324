"""The Slurm executor beside bare Slurm, in the same run, on one single-node cluster.

    python bench/slurm.py [--rounds N]

Needs root: it starts a one-node Slurm cluster with tests/slurm/slurm-up.sh (and stops it
after), unless SLURM_CONF names one already. Every pair alternates, round by round, and the
table gives medians and the ratio jog / bare:

1. ``jog start -- /bin/true`` against ``sbatch`` of the same command (the batch script
   ``exec "$@"``): the submission, as users type it (each a process).
2. ``jog run -n -- /bin/true`` against ``sbatch --wait`` of it: from submission to the end,
   which Slurm's scheduler dominates (it starts a job up to a second after its submission).
3. ``JobManager.start`` with the Slurm executor (in-process: the executor's own cost on top of
   its sbatch) against ``sbatch`` run from Python.

Target (issue 18): start latency at most 1.2 times bare sbatch's.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli import BIN, jogger_server

from jogger import JobManager

REPO = Path(__file__).resolve().parent.parent
SLURM = REPO / "tests" / "slurm"


@contextmanager
def cluster(where: Path) -> Iterator[None]:
    if os.environ.get("SLURM_CONF"):
        yield
        return
    up = subprocess.run(
        [SLURM / "slurm-up.sh", where / "cluster"],
        env={**os.environ, "SLURM_NODENAME": "jogbench"},
        capture_output=True,
        text=True,
        check=False,
    )
    if up.returncode != 0:
        sys.exit(f"slurm-up.sh failed:\n{up.stderr[-2000:]}")
    os.environ["SLURM_CONF"] = str(where / "cluster" / "slurm.conf")
    try:
        yield
    finally:
        subprocess.run([SLURM / "slurm-down.sh", where / "cluster"], check=False)
        del os.environ["SLURM_CONF"]


def timed(argv: list[str | Path], env: dict[str, str] | None = None) -> float:
    begin = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - begin


def pairs(rounds: int, jog: Callable[[], float], bare: Callable[[], float]) -> tuple[float, float]:
    a: list[float] = []
    b: list[float] = []
    for n in range(rounds):
        for which in (0, 1) if n % 2 == 0 else (1, 0):
            (a if which == 0 else b).append(jog() if which == 0 else bare())
    return statistics.median(a), statistics.median(b)


async def engine_starts(state: Path, rounds: int, sbatch: list[str | Path]) -> tuple[float, float]:
    a: list[float] = []
    b: list[float] = []
    async with JobManager(state, executor="slurm") as jobs:
        for n in range(rounds):
            for which in (0, 1) if n % 2 == 0 else (1, 0):
                begin = time.perf_counter()
                if which == 0:
                    await jobs.start("bench", ["/bin/true"])
                    a.append(time.perf_counter() - begin)
                else:
                    await trio.run_process(sbatch, capture_stdout=True)
                    b.append(time.perf_counter() - begin)
    return statistics.median(a), statistics.median(b)


def main(rounds: int) -> None:
    if os.geteuid() != 0:
        sys.exit("bench/slurm.py needs root: it runs a Slurm cluster")
    with tempfile.TemporaryDirectory(prefix="jogger-bench-slurm-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        script = tmp / "run.sh"
        script.write_text('#!/bin/sh\nexec "$@"\n')
        sbatch: list[str | Path] = [
            "sbatch",
            "--parsable",
            "--export=NONE",
            "--no-requeue",
            f"--output={tmp / 'bare.log'}",
            script,
            "/bin/true",
        ]
        rows: list[tuple[str, float, float, str]] = []
        with cluster(tmp), jogger_server(tmp, "--executor", "slurm") as env:
            jog, bare = pairs(
                rounds,
                lambda: timed([BIN / "jog", "start", "--", "/bin/true"], env),
                lambda: timed(sbatch),
            )
            rows.append(("submit: jog start vs sbatch", jog, bare, "s"))
            wait_rounds = max(3, rounds // 4)
            jog, bare = pairs(
                wait_rounds,
                lambda: timed([BIN / "jog", "run", "-n", "--", "/bin/true"], env),
                lambda: timed([*sbatch[:1], "--wait", *sbatch[1:]]),
            )
            rows.append(("to the end: jog run -n vs sbatch --wait", jog, bare, "s"))
            jog, bare = trio.run(engine_starts, tmp / "engine-state", rounds, sbatch)
            rows.append(("JobManager.start (slurm) vs sbatch, in-process", jog, bare, "s"))
    print(f"# bench/slurm.py: {rounds} rounds; {os.cpu_count()} CPUs; medians")
    print(f"{'measure':<50} {'jog':>9} {'bare':>9} {'ratio':>7}")
    for name, jog_s, bare_s, unit in rows:
        print(f"{name:<50} {jog_s:>7.3f} {unit} {bare_s:>7.3f} {unit} {jog_s / bare_s:>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    main(parser.parse_args().rounds)
