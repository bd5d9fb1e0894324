"""How jog reads its stdin for a job (jogger/cli/stdin.py): in order, binary-safe, and
without changing the flags it shares with its shell or pipeline."""

import fcntl
import os
import pty
from pathlib import Path

import trio

from jogger.cli.stdin import CHUNK, LocalInput, stdin_is_null


async def read_all(source: LocalInput) -> bytes:
    data = b""
    with trio.fail_after(10):
        while chunk := await source.read():
            assert len(chunk) <= CHUNK
            data += chunk
    return data


async def test_a_pipe_is_read_whole_and_its_flags_are_left_alone() -> None:
    read, write = os.pipe()
    flags = fcntl.fcntl(read, fcntl.F_GETFL)
    payload = bytes(range(256)) * 4096  # 1 MiB, more than a pipe holds at once
    try:
        async with trio.open_nursery() as nursery:

            async def writer() -> None:
                await trio.to_thread.run_sync(os.write, write, payload)
                os.close(write)

            nursery.start_soon(writer)
            assert await read_all(LocalInput(read)) == payload
        assert fcntl.fcntl(read, fcntl.F_GETFL) == flags
    finally:
        os.close(read)


async def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "in"
    payload = b"a\0b\xff" * 100_000
    path.write_bytes(payload)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert await read_all(LocalInput(fd)) == payload
    finally:
        os.close(fd)


async def test_a_cancelled_read_of_a_pipe_loses_no_bytes() -> None:
    read, write = os.pipe()
    try:
        source = LocalInput(read)
        with trio.move_on_after(0.05):
            await source.read()
        os.write(write, b"kept")
        with trio.fail_after(5):
            assert await source.read() == b"kept"
    finally:
        os.close(read)
        os.close(write)


async def test_a_terminal_that_hung_up_reads_as_the_end() -> None:
    master, slave = pty.openpty()
    try:
        source = LocalInput(slave)
        os.write(master, b"x\n")  # a line: the terminal is in cooked mode
        with trio.fail_after(5):
            assert await source.read() == b"x\n"
        os.close(master)
        master = -1
        with trio.fail_after(5):
            assert await source.read() == b""
    finally:
        os.close(slave)
        if master >= 0:
            os.close(master)


def test_dev_null_and_a_closed_fd_are_null_and_a_pipe_is_not() -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    read, write = os.pipe()
    try:
        assert stdin_is_null(null)
        assert not stdin_is_null(read)
    finally:
        os.close(null)
        os.close(read)
        os.close(write)
    assert stdin_is_null(read)  # closed now
