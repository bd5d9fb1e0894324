"""A job's input through the real jog and jogger-server (issue 16): jog run's stdin, -n, -t
(a terminal on both sides: the client's is a real pseudo-terminal here), jog attach, the
detach sequence, and a second attach that is read-only.

These need the server's Write handler and the client's ``JobsClient.writer`` (the rpc-write
and server branches of issue 16): on the cli-input branch alone they cannot pass.
"""

import fcntl
import hashlib
import os
import pty
import re
import signal
import struct
import subprocess
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.e2e.conftest import BIN, Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki

DETACH = b"\x10\x11"


async def jog_with_stdin(
    cli: Cli, stdin: bytes | int, *args: str, within: float = 60
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(within):
        return await trio.run_process(
            [BIN / "jog", *args],
            env=cli.env(),
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


class Terminal:
    """A pseudo-terminal whose slave is jog's stdin, stdout and stderr; the test types into
    the master and reads what jog shows."""

    def __init__(self, rows: int = 24, cols: int = 80) -> None:
        master, self.slave = pty.openpty()
        self.resize(rows, cols)
        self.modes = termios.tcgetattr(self.slave)
        self._master = trio.lowlevel.FdStream(master)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def type(self, keys: bytes) -> None:
        await self._master.send_all(keys)

    async def expect(self, text: bytes) -> bytes:
        """Read until ``text`` has been shown (since the last expect); return what was."""
        with trio.fail_after(20):
            while text not in self.seen:
                self.seen += await self._master.receive_some()
        at = self.seen.index(text) + len(text)
        shown, self.seen = self.seen[:at], self.seen[at:]
        return shown

    async def aclose(self) -> None:
        await self._master.aclose()
        os.close(self.slave)


@asynccontextmanager
async def terminal(rows: int = 24, cols: int = 80) -> AsyncIterator[Terminal]:
    term = Terminal(rows, cols)
    try:
        yield term
    finally:
        await term.aclose()


async def jog_on(cli: Cli, term: Terminal, *args: str) -> trio.Process:
    return await trio.lowlevel.open_process(
        [BIN / "jog", *args],
        env=cli.env(TERM="xterm"),
        stdin=term.slave,
        stdout=term.slave,
        stderr=term.slave,
    )


async def exit_of(process: trio.Process) -> int:
    with trio.fail_after(30):
        return await process.wait()


async def test_run_feeds_stdin_to_the_job_byte_for_byte(cli: Cli) -> None:
    result = await jog_with_stdin(cli, b"a\0b\377", "run", "--", "cat")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a\0b\xff"
    assert result.stderr == b""


async def test_run_feeds_64_mib_in_order(cli: Cli) -> None:
    data = os.urandom(64 << 20)
    result = await jog_with_stdin(cli, data, "run", "--", "cat", within=110)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


async def test_run_n_gives_the_job_dev_null_whatever_stdin_is(cli: Cli) -> None:
    read, write = os.pipe()  # a stdin that never ends
    try:
        result = await jog_with_stdin(cli, read, "run", "-n", "--", "cat", within=20)
    finally:
        os.close(read)
        os.close(write)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""


async def test_run_leaves_when_the_job_ends_though_stdin_never_does(cli: Cli) -> None:
    read, write = os.pipe()
    try:
        result = await jog_with_stdin(cli, read, "run", "--", "sh", "-c", "exit 4", within=20)
    finally:
        os.close(read)
        os.close(write)
    assert result.returncode == 4


async def test_run_t_without_a_terminal_is_refused(cli: Cli) -> None:
    result = await jog_with_stdin(cli, b"", "run", "-t", "--", "tty")
    assert result.returncode == 2
    assert result.stderr == (
        b"jog: error: -t needs a terminal on stdin (use -n, or pipe without -t)\n"
    )


async def test_run_t_gives_the_job_a_terminal_and_restores_ours(cli: Cli) -> None:
    async with terminal() as term:
        runner = await jog_on(cli, term, "run", "-t", "--", "tty")
        assert await exit_of(runner) == 0
        assert re.search(rb"/dev/pts/\d+", await term.expect(b"\n"))
        assert termios.tcgetattr(term.slave) == term.modes


async def test_run_t_sends_the_window_size_at_start_and_on_sigwinch(cli: Cli) -> None:
    async with terminal(37, 123) as term:
        runner = await jog_on(
            cli, term, "run", "-t", "--", "sh", "-c", "stty size; read x; stty size"
        )
        await term.expect(b"37 123")
        term.resize(50, 140)
        runner.send_signal(signal.SIGWINCH)
        await trio.sleep(1)  # the resize goes out before the line below
        await term.type(b"\r")
        await term.expect(b"50 140")
        assert await exit_of(runner) == 0
        assert termios.tcgetattr(term.slave) == term.modes


async def test_ctrl_c_in_run_t_is_a_key_that_interrupts_the_job(cli: Cli) -> None:
    async with terminal() as term:
        runner = await jog_on(
            cli, term, "run", "-t", "--", "sh", "-c", "echo ready; exec sleep 100"
        )
        await term.expect(b"ready")
        await term.type(b"\x03")
        assert await exit_of(runner) == 128 + signal.SIGINT
        await term.expect(b"signal SIGINT")
        assert termios.tcgetattr(term.slave) == term.modes


async def test_sigterm_to_jog_restores_the_terminal_and_leaves_the_job(cli: Cli) -> None:
    async with terminal() as term:
        runner = await jog_on(cli, term, "run", "-t", "--", "sh", "-c", "echo ready; exec cat")
        await term.expect(b"ready")
        runner.send_signal(signal.SIGTERM)
        assert await exit_of(runner) == 128 + signal.SIGTERM
        await term.expect(b"keeps running")
        assert termios.tcgetattr(term.slave) == term.modes


async def test_attach_detach_and_attach_again_to_a_terminal_job(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "-t", "--", "cat"))
    for word in (b"hello", b"again"):
        async with terminal() as term:
            attached = await jog_on(cli, term, "attach", job)
            await trio.sleep(1)  # attached: the keys go to the job from now
            await term.type(word + b"\r")
            await term.expect(word + b"\r\n" + word)  # the job's terminal echo, then cat
            await term.type(DETACH)
            assert await exit_of(attached) == 0
            await term.expect(
                f"jog: detached from job {job}; jog attach {job} to come back".encode()
            )
            assert termios.tcgetattr(term.slave) == term.modes
    assert "running" in (await cli.jog("status", job)).stdout.decode()
    await cli.jog("stop", job)


async def test_a_second_attach_is_read_only(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "-t", "--", "cat"))
    async with terminal() as first, terminal() as second:
        writer = await jog_on(cli, first, "attach", job)
        await trio.sleep(1)
        await first.type(b"one\r")
        await first.expect(b"one\r\none")
        reader = await jog_on(cli, second, "attach", job)
        with trio.fail_after(20):
            while True:
                # The refusal comes when the second attach first writes (its window size,
                # or these keys), which never reach the job.
                await second.type(b"two\r")
                with trio.move_on_after(0.5) as waiting:
                    shown = await second.expect(b"attached read-only")
                if not waiting.cancelled_caught:
                    break
        assert f"jog: another client is writing to job {job}; attached read-only".encode() in (
            shown
        )
        await first.type(b"three\r")
        shown = await first.expect(b"three\r\nthree")
        assert b"two" not in shown
        await second.expect(b"three")  # the read-only attach follows the output
        for term, process in ((first, writer), (second, reader)):
            await term.type(DETACH)
            assert await exit_of(process) == 0
            assert termios.tcgetattr(term.slave) == term.modes
    await cli.jog("stop", job)


async def test_attach_feeds_a_pipe_job_and_exits_with_its_code(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "-i", "--", "sh", "-c", "cat; exit 5"))
    result = await jog_with_stdin(cli, b"x\0y", "attach", job)
    assert result.returncode == 5, result.stderr
    assert result.stdout == b"x\0y"


async def test_attach_to_a_job_without_input_is_an_error(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "--", "sleep", "100"))
    result = await jog_with_stdin(cli, b"", "attach", job)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"jog: error: job {job} takes no input (it was started without -i or -t); "
        f"jog output {job} follows its output\n"
    )
    await cli.jog("stop", job)


async def test_a_256_mib_tar_through_jog_run_unpacks_byte_exact(cli: Cli, tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    block = os.urandom(1 << 20)
    for k in range(64):  # 64 files of 4 MiB, each different
        (source / f"f{k:02d}").write_bytes(block * 3 + bytes([k]) * (1 << 20))
    read, write = os.pipe()
    try:
        packer = await trio.lowlevel.open_process(
            ["tar", "c", "-C", str(source), "."], stdout=write
        )
    finally:
        os.close(write)
    try:
        result = await jog_with_stdin(
            cli, read, "run", "--", "tar", "x", "-C", str(target), within=170
        )
    finally:
        os.close(read)
        with trio.fail_after(30):
            assert await packer.wait() == 0
    assert result.returncode == 0, result.stderr
    for k in range(64):
        name = f"f{k:02d}"
        assert (target / name).read_bytes() == (source / name).read_bytes(), name


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def test_a_job_that_never_reads_makes_jog_wait_and_the_server_stays_flat(
    cli: Cli,
) -> None:
    # 1 GiB offered to a job that never reads stdin: the pipe, jog and one HTTP/2 window
    # take a few MiB, then the writer (here, this test) waits; the server holds no more.
    read, write = os.pipe()
    os.set_blocking(write, False)
    before = rss_kib(cli.process.pid)
    runner = await trio.lowlevel.open_process(
        [BIN / "jog", "run", "--", "sleep", "300"], env=cli.env(), stdin=read
    )
    os.close(read)
    offered = 0
    chunk = b"\0" * (1 << 20)
    try:
        with trio.move_on_after(8):
            while offered < 1 << 30:
                try:
                    offered += os.write(write, chunk)
                except BlockingIOError:
                    await trio.sleep(0.05)
        assert offered < 64 << 20  # the rest waits with us, the writer
        assert rss_kib(cli.process.pid) - before < 48 << 10
    finally:
        runner.send_signal(signal.SIGINT)  # jog run's Ctrl-C: the job is stopped
        os.close(write)
        assert await exit_of(runner) != 0


async def test_a_terminal_job_is_attached_again_after_a_server_restart(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--on-shutdown", "keep")
    try:
        job = job_id_of(await first.jog("start", "-t", "--", "cat"))
        await type_and_detach(first, job, b"before")
    finally:
        await stop_server(first.process)  # kept: its supervisor holds the terminal
    second = await launch(pki, state, nursery)
    try:
        await type_and_detach(second, job, b"after")
        await second.jog("stop", job)
        assert b"before\r\nbefore\r\nafter\r\nafter" in (await second.jog("output", job)).stdout
    finally:
        await stop_server(second.process)


async def type_and_detach(cli: Cli, job: str, word: bytes) -> None:
    async with terminal() as term:
        attached = await jog_on(cli, term, "attach", job)
        await trio.sleep(1)  # attached: the keys go to the job from now
        await term.type(word + b"\r")
        await term.expect(word + b"\r\n" + word)
        await term.type(DETACH)
        assert await exit_of(attached) == 0
        assert termios.tcgetattr(term.slave) == term.modes


async def test_jog_run_t_types_on_into_its_terminal_across_a_server_restart(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--on-shutdown", "keep")
    async with terminal() as term:
        try:
            runner = await jog_on(first, term, "run", "-t", "--", "cat")
            await trio.sleep(1)
            await term.type(b"one\r")
            await term.expect(b"one\r\none")
        finally:
            await stop_server(first.process)  # kept: its supervisor holds the terminal
        second = await launch(pki, state, nursery, port=first.port)
        try:
            # jog connects again, follows on, and writes to the same terminal.
            with trio.fail_after(30):
                while True:
                    await term.type(b"two\r")
                    with trio.move_on_after(1) as waiting:
                        await term.expect(b"two\r\ntwo")
                    if not waiting.cancelled_caught:
                        break
            await term.type(DETACH)
            assert await exit_of(runner) == 0
            assert termios.tcgetattr(term.slave) == term.modes
        finally:
            jobs = (await second.jog("list")).stdout.decode().split()
            for job in jobs:
                if len(job) == 36:
                    await second.jog("stop", job)
            await stop_server(second.process)
