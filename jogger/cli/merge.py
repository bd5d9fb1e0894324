"""Many hosts' output into one stdout, each line whole and with its host's name in front
(``jog run --hosts``).

Each host's task cuts its job's bytes into prefixed lines (cli/prefix.py) and sends them down
one bounded channel; one writer task writes them to stdout, each batch whole before the
next, so that no line is torn between hosts. The writer writes in a worker thread: a stdout
that blocks (a paused terminal, a full pipe) holds the hosts back through the channel (and
their servers through flow control), not trio's loop, which still hears Ctrl-C.

A closed stdout (the reader has what it wanted, cli/stdout.py) is said once, to
``on_closed``; the writer then takes what comes and drops it, so that no host waits on it.
A failing stdout is an error: it ends the block, and every host with it.
"""

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import trio

from . import stdout
from .prefix import LinePrefixer
from .stdout import StdoutClosed

BATCHES_IN_FLIGHT = 16
"""Batches of lines waiting for the writer, from all hosts together; each is what one output
chunk of one host completes."""
WRITE_SIZE = 256 << 10
"""The most the writer gathers from the channel for one write."""


class HostLines:
    """One host's output on its way to stdout: ``write`` its bytes as they come, ``end``
    once they are all there; ``close`` (or leave the ``with`` block) in any case."""

    def __init__(self, name: str, send: trio.MemorySendChannel[bytes]) -> None:
        self._lines = LinePrefixer(name)
        self._send = send

    async def write(self, data: bytes) -> None:
        """Send on the lines ``data`` completes; waits while the writer is behind."""
        lines = self._lines.feed(data)
        if lines:
            await self._send.send(lines)

    async def end(self) -> None:
        """Send the last line, when the output did not end with a newline: with one."""
        rest = self._lines.end()
        if rest:
            await self._send.send(rest)

    def close(self) -> None:
        self._send.close()

    def __enter__(self) -> "HostLines":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class MergedStdout:
    def __init__(self, send: trio.MemorySendChannel[bytes]) -> None:
        self._send = send

    def lines(self, name: str) -> HostLines:
        """The output of the host called ``name``; close it when done."""
        return HostLines(name, self._send.clone())


@asynccontextmanager
async def open_merged_stdout(on_closed: Callable[[], None]) -> AsyncIterator[MergedStdout]:
    """The writer, until the block ends and every HostLines is closed; everything sent by
    then has been written.

    Raises a CliError for a failing stdout (cli/stdout.py), cancelling the block.
    """
    send, receive = trio.open_memory_channel[bytes](BATCHES_IN_FLIGHT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_write, receive, on_closed)
        async with send:
            yield MergedStdout(send)


async def _write(receive: trio.MemoryReceiveChannel[bytes], on_closed: Callable[[], None]) -> None:
    closed = False
    async with receive:
        async for first in receive:
            batch, size = [first], len(first)
            while size < WRITE_SIZE:
                try:
                    more = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(more)
                size += len(more)
            if closed:
                continue
            try:
                # Abandoned at cancel (a second Ctrl-C): a write blocked on a paused terminal
                # must not keep jog from leaving. It goes on in its thread until jog exits.
                await trio.to_thread.run_sync(_write_all, b"".join(batch), abandon_on_cancel=True)
            except OSError as exc:
                error = stdout.write_error(exc)
                if not isinstance(error, StdoutClosed):
                    raise error from None
                closed = True
                on_closed()


def _write_all(data: bytes) -> None:
    """Write all of ``data`` to stdout's file descriptor (not through sys.stdout's buffer,
    whose lock a thread abandoned at exit would still hold)."""
    fd = sys.stdout.fileno()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
