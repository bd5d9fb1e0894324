"""``make demo``: real jobs, end to end, through the embedded engine.

Starts a job, follows its output with two readers at once, stops a job that ignores
SIGTERM, and prints what the engine reports. Exits non-zero if anything is not as promised.
"""

import getpass
import sys
import tempfile

import trio

from jogger import JobManager, JobState, JobStatus

TICKER = "for i in 1 2 3; do echo tick $i; sleep 0.2; done; echo 'and one line to stderr' >&2"
STUBBORN = "trap '' TERM; echo 'ignoring SIGTERM'; sleep 300 & wait"


def show(status: JobStatus) -> None:
    ended = f" exit_code={status.exit_code}" if status.exit_code is not None else ""
    ended += f" signal={status.signal}" if status.signal is not None else ""
    print(f"  status: {status.state.value}{ended} output_bytes={status.output_bytes}")


async def follow(jobs: JobManager, owner: str, job_id: str, into: list[bytes]) -> None:
    async for chunk in jobs.output(owner, job_id):
        into.append(chunk)


async def demo(state_dir: str) -> int:
    owner = getpass.getuser()
    async with JobManager(state_dir, grace=1.0) as jobs:
        job = await jobs.start(owner, ["sh", "-c", TICKER])
        print(f"$ start -- sh -c {TICKER!r}\n  started: {job.id}")
        first: list[bytes] = []
        second: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, jobs, owner, job.id, first)
            nursery.start_soon(follow, jobs, owner, job.id, second)
        print("$ output (two followers at once; the first one's copy)")
        sys.stdout.write("  | " + b"".join(first).decode().replace("\n", "\n  | ").rstrip("| "))
        done = jobs.status(owner, job.id)
        show(done)

        stubborn = await jobs.start(owner, ["sh", "-c", STUBBORN])
        print(f"$ start -- sh -c {STUBBORN!r}\n  started: {stubborn.id}")
        async for _ in jobs.output(owner, stubborn.id):
            break
        print("$ stop (grace 0.5 s)")
        stopped = await jobs.stop(owner, stubborn.id, grace=0.5)
        show(stopped)

    ok = (
        first == second
        and b"".join(first).count(b"tick") == 3
        and done.state is JobState.COMPLETED
        and stopped.state is JobState.KILLED
    )
    print("demo: ok" if ok else "demo: FAILED")
    return 0 if ok else 1


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="jogger-demo-") as state_dir:
        return trio.run(demo, state_dir)


if __name__ == "__main__":
    sys.exit(main())
