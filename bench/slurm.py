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
   its sbatch, and the record's fsync) against ``sbatch`` run from Python.
4. Until the job runs: ``JobManager.start`` then ``status`` every 10 ms until it is no longer
   queued, against ``sbatch`` then ``squeue`` every 10 ms; the executor sees Slurm's word only
   every ``poll_interval`` (rows at the default 0.5 s and at 0.2 s).

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

from jogger import JobManager, JobState
from jogger.engine.slurm.executor import SlurmOptions

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


def idle() -> None:
    """Wait until Slurm runs and queues nothing: each sample starts on an idle cluster."""
    for _ in range(3000):
        left = subprocess.run(
            ["squeue", "--noheader", "--format=%i"], capture_output=True, text=True, check=True
        )
        if not left.stdout.strip():
            return
        time.sleep(0.01)
    sys.exit("the cluster did not empty in 30 s")


def timed(argv: list[str | Path], env: dict[str, str] | None = None) -> float:
    idle()
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


async def bare_until_running(sbatch: list[str | Path]) -> float:
    """sbatch, then squeue every 10 ms until the job has left the queue: seconds."""
    await trio.to_thread.run_sync(idle)
    begin = time.perf_counter()
    done = await trio.run_process(sbatch, capture_stdout=True)
    job = done.stdout.decode().strip().split(";")[0]
    while True:
        state = await trio.run_process(
            ["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={job}"],
            capture_stdout=True,
        )
        if state.stdout.decode().strip() not in ("PENDING", "CONFIGURING", ""):
            return time.perf_counter() - begin
        await trio.sleep(0.01)


async def jog_until_running(jobs: JobManager) -> float:
    """JobManager.start, then its status every 10 ms until the job is not queued: seconds."""
    await trio.to_thread.run_sync(idle)
    begin = time.perf_counter()
    job = await jobs.start("bench", ["/bin/sleep", "0.5"])
    while (await jobs.status("bench", job.id)).state is JobState.QUEUED:  # noqa: ASYNC110
        await trio.sleep(0.01)  # (as the squeue loop beside it: the same 10 ms look)
    return time.perf_counter() - begin


async def engine_starts(
    state: Path, rounds: int, sbatch: list[str | Path], poll: float
) -> dict[str, tuple[float, float]]:
    """In-process, one manager: its start against sbatch's, and until running."""
    a: list[float] = []
    b: list[float] = []
    c: list[float] = []
    d: list[float] = []
    sleeper = [*sbatch[:-1], "/bin/sleep", "0.5"]
    options = SlurmOptions(poll_interval=poll)
    async with JobManager(state, executor="slurm", slurm=options) as jobs:
        for n in range(rounds):
            for which in (0, 1) if n % 2 == 0 else (1, 0):
                await trio.to_thread.run_sync(idle)
                begin = time.perf_counter()
                if which == 0:
                    await jobs.start("bench", ["/bin/true"])
                    a.append(time.perf_counter() - begin)
                    c.append(await jog_until_running(jobs))
                else:
                    await trio.run_process(sbatch, capture_stdout=True)
                    b.append(time.perf_counter() - begin)
                    d.append(await bare_until_running(sleeper))
    return {
        "start": (statistics.median(a), statistics.median(b)),
        "running": (statistics.median(c), statistics.median(d)),
    }


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
            for poll in (0.5, 0.2):
                found = trio.run(engine_starts, tmp / f"engine-{poll}", rounds, sbatch, poll)
                jog, bare = found["start"]
                rows.append((f"JobManager.start vs sbatch (poll {poll} s)", jog, bare, "s"))
                jog, bare = found["running"]
                rows.append((f"to running: start+status vs sbatch+squeue ({poll})", jog, bare, "s"))
    print(f"# bench/slurm.py: {rounds} rounds; {os.cpu_count()} CPUs; medians")
    print(f"{'measure':<50} {'jog':>9} {'bare':>9} {'ratio':>7}")
    for name, jog_s, bare_s, unit in rows:
        print(f"{name:<50} {jog_s:>7.3f} {unit} {bare_s:>7.3f} {unit} {jog_s / bare_s:>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    main(parser.parse_args().rounds)
