"""Feeding a job's input from jog's stdin, beside its output (cli/follow.py's ``beside``).

- A **pipe** (``jog run``, ``jog attach`` of a ``jog start -i`` job): stdin's bytes, in
  order, until EOF, which closes the stream: the job reads EOF.
- A **terminal** (``jog run -t``, ``jog attach`` of a ``jog start -t`` job): the keys of jog's
  raw terminal, the window size at the start and at every SIGWINCH, and the detach sequence
  (cli/detach.py), which raises Detached.

A pipe gets one Write stream, on the first connection only (a lost stream ends a pipe's
input on the server, so it is not opened again on the next). A terminal outlives the
connection, and the server too: it is written again on each new connection, until the job
ends or another client writes to it. Whatever ends a stream without an error of ours ends
the feeding quietly, and the output, followed apart, says how the job ended: the job closed
its input or ended (InputClosed, FAILED_PRECONDITION), the connection dropped. ABORTED,
another client writing, says so once and feeds no more: read-only. A terminal's keys are
still read after that, for the detach sequence alone: in raw mode it is the only way out
before the job ends.
"""

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from .._exceptiongroups import single_errors
from ..rpc.client import InputClosed, JobsClient
from ..rpc.errors import RpcError, StatusCode
from ..rpc.failures import TransportError
from .detach import DetachKeys
from .exits import CliError
from .resume import is_drop
from .stdin import LocalInput
from .winsize import window_size


class Detached(Exception):
    """The detach sequence was typed: leave, and let the job run on."""


def come_back(job_id: str | None) -> str:
    """The hint after leaving a job with a terminal running."""
    return f"jog attach {job_id} to come back"


class Feeder:
    """The ``beside`` task that feeds one job's input from jog's stdin.

    ``terminal_fd``: the raw terminal whose keys and window to send, or None for a pipe.
    ``attaching``: a refusal because the job takes no input (FAILED_PRECONDITION) is an
    error for ``jog attach``; for ``jog run`` it means that the job has ended already.
    """

    def __init__(
        self,
        job_id: str,
        source: LocalInput,
        *,
        terminal_fd: int | None = None,
        attaching: bool = False,
    ) -> None:
        self.job_id = job_id
        self._source = source
        self._terminal_fd = terminal_fd
        self._attaching = attaching
        self._keys = DetachKeys()
        self._opened = False
        self._done = False
        """No more writing: the job took no more input, or another client writes."""

    async def __call__(self, client: JobsClient) -> None:
        """Feed the input on this connection, if it is the first one.

        Cancellation: at any point; a stream left open is reset (a pipe's input then ends).
        """
        if self._terminal_fd is None:
            if not self._opened:
                self._opened = True
                with self._quietly_ending():
                    await self._feed_pipe(client)
            return
        if not self._done:
            with self._quietly_ending():
                await self._feed_terminal(client, self._terminal_fd)
                return
        await self._watch_for_detach()

    async def _feed_pipe(self, client: JobsClient) -> None:
        async with client.writer(self.job_id) as writer:
            while data := await self._source.read():
                await writer.write(data)
            await writer.close()

    async def _feed_terminal(self, client: JobsClient, fd: int) -> None:
        # Listening before the stream opens: a resize meanwhile is not missed.
        with trio.open_signal_receiver(signal.SIGWINCH) as resizes:
            async with client.writer(self.job_id) as writer:
                one_at_a_time = trio.Lock()
                size = window_size(fd)
                if size is not None:
                    await writer.resize(*size)
                with single_errors():
                    async with trio.open_nursery() as nursery:

                        async def send_sizes() -> None:
                            async for _ in resizes:
                                size = window_size(fd)
                                if size is not None:
                                    async with one_at_a_time:
                                        await writer.resize(*size)

                        nursery.start_soon(send_sizes)
                        while data := await self._source.read():
                            keys, detached = self._keys.feed(data)
                            if keys:
                                async with one_at_a_time:
                                    await writer.write(keys)
                            if detached:
                                raise Detached
                        # The terminal hung up: no more keys, nor sizes to send.
                        nursery.cancel_scope.cancel()
                # Let go of the terminal: the job keeps it, and may be attached to again.
                await writer.close()

    async def _watch_for_detach(self) -> None:
        while data := await self._source.read():
            if self._keys.feed(data)[1]:
                raise Detached

    @contextmanager
    def _quietly_ending(self) -> Iterator[None]:
        """Ends of the stream that are not errors end the feeding; the rest are raised. A
        terminal's keys are then watched for the detach sequence alone (by the caller)."""
        try:
            with single_errors():
                yield
        except InputClosed:
            self._done = True  # the job closed its input or ended: the output says how
        except RpcError as exc:
            if exc.code in (StatusCode.ABORTED, StatusCode.FAILED_PRECONDITION):
                self._done = True
            if exc.code == StatusCode.ABORTED:
                print(
                    f"jog: another client is writing to job {self.job_id}; attached read-only",
                    file=sys.stderr,
                    # In raw mode a newline does not return the carriage.
                    end="\n" if self._terminal_fd is None else "\r\n",
                )
            elif exc.code == StatusCode.FAILED_PRECONDITION and self._attaching:
                raise CliError(f"cannot write to job {self.job_id}: {exc.message}") from None
            elif exc.code != StatusCode.FAILED_PRECONDITION and not is_drop(exc):
                raise
        except TransportError as exc:
            if not is_drop(exc):
                raise
