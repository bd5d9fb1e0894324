"""jog output and jog run ride through a restart of the real server: every byte once, one
line on stderr per restart, and one error line when the server does not come back.

Jobs outlive the server (docs/rfd-2-live-restore.md): after a SIGKILL the next server
adopts the job, and the follower resumes it live; a graceful restart (``--on-shutdown
stop``, the default) stops the job and ends the stream with its status before the server
exits. These tests compare what jog printed with what the server serves from byte 0 once
the job has ended, and derive the exit code from the recorded status.
"""

import json
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import BIN, Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki
from tests.procs import PYTHON

# Numbered lines for some seconds (longer on a busy machine), then its end.
COUNTER = (
    "import sys, time\n"
    "for i in range(1500):\n"
    "    sys.stdout.write(f'{i}\\n'); sys.stdout.flush(); time.sleep(0.004)\n"
)
RESTARTED = "the server restarted"
# Lines 0 to 99, then, once FLAG exists, the rest up to LINES at once (40 MB), a pause, the end.
LINES = 5_000_000
BURST = (
    "import os, sys, time\n"
    "def lines(a, b): return ''.join(f'{i}\\n' for i in range(a, b))\n"
    "sys.stdout.write(lines(0, 100)); sys.stdout.flush()\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
    f"for a in range(100, {LINES}, 10**5): sys.stdout.write(lines(a, min(a + 10**5, {LINES})))\n"
    "sys.stdout.flush(); time.sleep(2)\n"
)


@dataclass
class Jog:
    """A real jog process whose stdout and stderr are read as they come."""

    process: trio.Process
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    ended: trio.Event = field(default_factory=trio.Event)

    async def read(self) -> None:
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_collect, self.process.stdout, self.out)
                nursery.start_soon(_collect, self.process.stderr, self.err)
            self.ended.set()
            await self.process.wait()
        finally:
            if self.process.returncode is None:
                # The test failed before jog ended: no jog outlives its test. Shielded: we
                # are here because the test's nursery was cancelled, and the kill is quick.
                self.process.kill()
                with trio.CancelScope(shield=True):
                    await self.process.wait()

    async def wait_for(self, text: bytes) -> None:
        with trio.fail_after(20):
            while text not in self.out:
                if self.ended.is_set():
                    raise AssertionError(f"jog ended without {text!r}: {bytes(self.err)!r}")
                await trio.sleep(0.01)

    async def finish(self, seconds: float = 60) -> int:
        """jog's exit code, once it has exited and its output is all read."""
        with trio.fail_after(seconds):
            code = await self.process.wait()
            await self.ended.wait()
        return code

    def errors(self) -> list[str]:
        return self.err.decode().splitlines()


async def _collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    async for data in stream:
        into += data


async def jog(nursery: trio.Nursery, cli: Cli, *args: str) -> Jog:
    process = await trio.lowlevel.open_process(
        [BIN / "jog", *args], env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    running = Jog(process)
    nursery.start_soon(running.read)
    return running


def numbers(count: int) -> bytes:
    return "".join(f"{i}\n" for i in range(count)).encode()


NUMBERS = numbers(1500)


def assert_numbered(data: bytes) -> None:
    """COUNTER's 0, 1, 2... one a line, none missing or twice; the last may be cut short."""
    assert data.startswith(b"0\n")
    assert NUMBERS.startswith(data), "not 0, 1, 2... (a gap, or a line twice)"


async def served(cli: Cli, job: str) -> bytes:
    """The job's whole output as the server has it, once the job has ended."""
    result = await cli.jog("output", job)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def recorded_end(cli: Cli, job: str) -> tuple[int, str]:
    """The exit code jog run gives the job's recorded end, and the recorded reason."""
    result = await cli.jog("status", "--json", job)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] != "running"
    if status["exit_code"] is not None:
        return status["exit_code"], status["reason"]
    if status["signal"] is not None:
        return 128 + status["signal"], status["reason"]
    return 1, status["reason"]


async def only_job(cli: Cli) -> str:
    [listed] = json.loads((await cli.jog("list", "--json")).stdout)
    job: str = listed["job_id"]
    return job


async def crash(server: Cli) -> None:
    """SIGKILL: the server gets no chance to end a stream."""
    server.process.send_signal(signal.SIGKILL)
    await server.process.wait()


def restarted_lines(running: Jog) -> list[str]:
    return [line for line in running.errors() if RESTARTED in line]


async def resolve(pki: Pki, state: Path, nursery: trio.Nursery) -> None:
    """A server started and stopped on ``state``, for a test whose server never came back:
    it resolves what the crash left (the job's cgroup, a job still running), so that
    nothing outlives the test."""
    server = await launch(pki, state, nursery)
    await stop_server(server.process)


async def test_a_follower_rides_through_a_sigkill_of_the_server(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery)
    try:
        job = job_id_of(await first.jog("start", "--", PYTHON, "-c", COUNTER))
        follower = await jog(nursery, first, "output", job)
        await follower.wait_for(b"\n10\n")
        await crash(first)
    finally:
        await stop_server(first.process)
    second = await launch(pki, state, nursery, port=first.port)
    try:
        assert await follower.finish() == 0, follower.errors()
        whole = await served(second, job)
        assert bytes(follower.out) == whole
        assert_numbered(whole)
        [line] = restarted_lines(follower)
        assert line.startswith(f"jog: the server restarted; resumed job {job} at byte ")
        resumed_at = int(line.rsplit(" ", 1)[1])
        assert 0 < resumed_at <= len(whole)
        # And the job's end, as always.
        assert follower.errors()[-1].startswith(f"jog: job {job} ")
        assert "Traceback" not in follower.err.decode()
    finally:
        await stop_server(second.process)


async def test_a_follower_that_fell_behind_resumes_where_it_was(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    flag = tmp_path / "go"
    first = await launch(pki, state, nursery)
    try:
        job = job_id_of(await first.jog("start", "--", PYTHON, "-c", BURST, str(flag)))
        follower = await jog(nursery, first, "output", job)
        await follower.wait_for(b"\n99\n")
        # The follower stops reading while the job writes 40 MB: the server can send it
        # what its window and the sockets hold, and no more, before it dies.
        follower.process.send_signal(signal.SIGSTOP)
        flag.touch()
        whole = numbers(LINES)
        log = state / "logs" / f"{job}.log"
        with trio.fail_after(60):
            while log.stat().st_size < len(whole):  # noqa: ASYNC110 - the job writes it
                await trio.sleep(0.05)
        await crash(first)
    finally:
        follower.process.send_signal(signal.SIGCONT)
        await stop_server(first.process)
    second = await launch(pki, state, nursery, port=first.port)
    try:
        assert await follower.finish() == 0, follower.errors()
        assert await served(second, job) == whole
        assert bytes(follower.out) == whole
        [line] = restarted_lines(follower)
        resumed_at = int(line.rsplit(" ", 1)[1])
        assert resumed_at < len(whole) // 2  # what the dead server never sent came from here
    finally:
        await stop_server(second.process)


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_jog_run_rides_through_a_restart_and_exits_with_the_jobs_code(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery, how: str
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery)
    try:
        runner = await jog(nursery, first, "run", "--", PYTHON, "-c", COUNTER)
        await runner.wait_for(b"\n10\n")
        if how == "sigkill":
            await crash(first)
    finally:
        await stop_server(first.process)  # for "sigterm": the graceful shutdown
    second = await launch(pki, state, nursery, port=first.port)
    try:
        code = await runner.finish()
        job = await only_job(second)
        expected, reason = await recorded_end(second, job)
        assert code == expected, runner.errors()
        whole = await served(second, job)
        assert bytes(runner.out) == whole
        assert_numbered(whole)
        restarts = restarted_lines(runner)
        if how == "sigkill" or reason != "server-shutdown":
            assert len(restarts) == 1, runner.errors()
        else:
            # The shutdown stopped the job, and its stream usually ended with the job's
            # status before the server went: then there was nothing to resume.
            assert len(restarts) <= 1, runner.errors()
        assert "Traceback" not in runner.err.decode()
    finally:
        await stop_server(second.process)


@pytest.mark.parametrize("seconds", ["0", "2"])
async def test_without_a_server_jog_output_gives_up_after_the_reconnect_timeout(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery, seconds: str
) -> None:
    state = tmp_path / "state"
    server = await launch(pki, state, nursery)
    try:
        job = job_id_of(await server.jog("start", "--", PYTHON, "-c", COUNTER))
        follower = await jog(nursery, server, "output", "--reconnect-timeout", seconds, job)
        await follower.wait_for(b"\n10\n")
        await crash(server)
    finally:
        await stop_server(server.process)
    try:
        # Within a few seconds (generous: a busy machine), not the default minute.
        assert await follower.finish(seconds=30) == 3
        [line] = follower.errors()
        assert line.startswith(f"jog: error: localhost:{server.port}: ")
        assert "Traceback" not in line
        # What jog printed is what the job wrote, to where the connection dropped.
        log = (state / "logs" / f"{job}.log").read_bytes()
        assert log.startswith(bytes(follower.out))
        assert_numbered(bytes(follower.out))
        if seconds == "0":
            assert "did not come back" not in line  # today's error, at once
        else:
            assert "lost the connection, and it did not come back within 2 s (" in line
            assert line.endswith(f"; to read on: jog output --offset {len(follower.out)} {job}")
    finally:
        await resolve(pki, state, nursery)


async def test_ctrl_c_while_jog_output_waits_for_the_server_detaches(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    server = await launch(pki, state, nursery)
    try:
        job = job_id_of(await server.jog("start", "--", PYTHON, "-c", COUNTER))
        follower = await jog(nursery, server, "output", job)
        await follower.wait_for(b"\n10\n")
        await crash(server)
    finally:
        await stop_server(server.process)
    try:
        await trio.sleep(0.5)  # it is waiting to reconnect (or about to: either way, it leaves)
        follower.process.send_signal(signal.SIGINT)
        assert await follower.finish(seconds=20) == 130
        assert follower.errors() == [f"jog: detached; job {job} keeps running"]
    finally:
        await resolve(pki, state, nursery)


async def run_then_crash(
    pki: Pki, state: Path, nursery: trio.Nursery, *args: str
) -> tuple[Cli, Jog, str]:
    """A server, `jog run ARGS -- COUNTER` on it, and the server SIGKILLed mid-stream; then
    Ctrl-C to jog, which is waiting to reconnect (or about to). Returns the job's id."""
    server = await launch(pki, state, nursery)
    try:
        runner = await jog(nursery, server, "run", *args, "--", PYTHON, "-c", COUNTER)
        await runner.wait_for(b"\n10\n")
        job = await only_job(server)
        await crash(server)
    finally:
        await stop_server(server.process)
    try:
        await trio.sleep(0.5)
        runner.process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            while f"jog: stopping job {job}" not in runner.errors():  # noqa: ASYNC110 - its reader
                await trio.sleep(0.01)
    except BaseException:
        await resolve(pki, state, nursery)
        raise
    return server, runner, job


async def test_ctrl_c_while_jog_run_waits_sends_the_stop_once_the_server_is_back(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first, runner, job = await run_then_crash(pki, state, nursery)
    second = await launch(pki, state, nursery, port=first.port)
    try:
        assert await runner.finish() == 130, runner.errors()
        assert len(restarted_lines(runner)) == 1, runner.errors()
        assert runner.errors()[-1].startswith(f"jog: job {job} ")
        # The stop reached the new server, once. (Its answer may have been cut short: jog
        # leaves once the output has ended, as it did before there was a restart.)
        stops = [line for line in second.log if "method=/jogger.v1.Jobs/Stop" in line]
        assert len(stops) == 1, second.log
        await recorded_end(second, job)  # it has ended: stopped, or killed by the crash
        assert bytes(runner.out) == await served(second, job)
    finally:
        await stop_server(second.process)


async def test_ctrl_c_while_jog_run_waits_in_vain_says_the_job_was_not_stopped(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    _, runner, job = await run_then_crash(pki, state, nursery, "--reconnect-timeout", "2")
    try:
        assert await runner.finish(seconds=30) == 3
        stopping, error = runner.errors()
        assert stopping == f"jog: stopping job {job}"
        assert error.startswith("jog: error: localhost:")
        assert "did not come back within 2 s" in error
        assert error.endswith(f"; job {job} may still be running: the stop did not get through")
    finally:
        await resolve(pki, state, nursery)
