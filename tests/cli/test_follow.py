"""jog's Follower against a fake server that drops the connection where it is told: it asks
again from the byte it reached, prints each byte once and one line per restart, and gives up
on time (trio's autojump clock: the waits take no real time)."""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

from jogger.cli.connect import Dialer
from jogger.cli.follow import Follower, GaveUp
from jogger.cli.stdout import StdoutClosed
from jogger.cli.window_args import Window
from jogger.rpc.client import JobsClient
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.failures import TransportError
from jogger.v1 import jobs_pb2

LOG = b"".join(b"%d\n" % i for i in range(40))
CHUNK = 7


class FakeServer:
    """One job's log. The connection drops when the stream reaches an offset of ``drops``;
    then the server is down for ``down`` seconds (for ever with inf)."""

    def __init__(
        self, *, drops: list[int], down: float = 3.0, unreadable: int = -1, pruned: bool = False
    ) -> None:
        self.drops = drops
        self.down = down
        self.up_at = 0.0
        self.unreadable = unreadable
        """From this offset on, the output is UNAVAILABLE (a log the server cannot read)."""
        self.pruned = pruned
        """After a drop, the job is gone (NOT_FOUND)."""
        self.asked: list[int] = []
        self.windows: list[tuple[int | None, int | None, bool]] = []
        self.dials = 0

    def drop(self) -> TransportError:
        self.up_at = trio.current_time() + self.down
        return TransportError("the server closed the connection")


class FakeClient(JobsClient):
    def __init__(self, server: FakeServer) -> None:
        self._server = server

    async def status(self, job_id: str) -> jobs_pb2.JobStatus:
        await trio.lowlevel.checkpoint()
        if self._server.pruned and self._server.dials > 1:
            raise RpcError(StatusCode.NOT_FOUND, f"job {job_id} not found")
        return jobs_pb2.JobStatus(job_id=job_id)

    @asynccontextmanager
    async def output(
        self,
        job_id: str,
        *,
        offset: int = 0,
        follow: bool = True,
        tail: int | None = None,
        since_ns: int | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[AsyncIterator[jobs_pb2.OutputChunk]]:
        self._server.asked.append(offset)
        self._server.windows.append((tail, since_ns, timestamps))
        yield self._chunks(job_id, offset, tail)

    async def _chunks(
        self, job_id: str, offset: int, tail: int | None
    ) -> AsyncIterator[jobs_pb2.OutputChunk]:
        server = self._server
        if tail is not None:  # the last `tail` bytes stand in for lines here
            offset = max(offset, len(LOG) - tail)
            yield jobs_pb2.OutputChunk(offset=offset)
        while offset < len(LOG):
            await trio.sleep(0.01)
            if offset == server.unreadable:
                raise RpcError(StatusCode.UNAVAILABLE, "cannot read the job's output: EIO")
            end = min(len(LOG), offset + CHUNK, *(d for d in server.drops if d > offset))
            yield jobs_pb2.OutputChunk(offset=offset, data=LOG[offset:end])
            offset = end
            if offset in server.drops:
                server.drops.remove(offset)
                raise server.drop()
        final = jobs_pb2.JobStatus(job_id=job_id, exit_code=0)
        yield jobs_pb2.OutputChunk(offset=offset, final=final)


class FakeDialer(Dialer):
    def __init__(self, server: FakeServer) -> None:
        self._server = server
        self.where = "jobs.example:7654"

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[JobsClient]:
        await trio.sleep(0.01)
        self._server.dials += 1
        if trio.current_time() < self._server.up_at:
            raise TransportError("cannot connect: Connection refused")
        yield FakeClient(self._server)

    def __call__(self) -> AbstractAsyncContextManager[JobsClient]:
        return self._connect()


async def test_every_byte_once_and_one_line_per_restart(
    autojump_clock: trio.abc.Clock, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    server = FakeServer(drops=[25, 70])
    final = await Follower("J", reconnect_timeout=60).run(FakeDialer(server))
    assert final.exit_code == 0
    out, err = capsysbinary.readouterr()
    assert out == LOG
    assert server.asked == [0, 25, 70]
    assert err.decode().splitlines() == [
        "jog: the server restarted; resumed job J at byte 25",
        "jog: the server restarted; resumed job J at byte 70",
    ]
    # It waited for the server, with backoff: a dozen attempts in 6 s, not hundreds.
    assert 4 < server.dials < 20


async def test_from_an_offset_the_first_offset_counts(
    autojump_clock: trio.abc.Clock, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    server = FakeServer(drops=[30])
    await Follower("J", offset=12, reconnect_timeout=60).run(FakeDialer(server))
    assert capsysbinary.readouterr().out == LOG[12:]
    assert server.asked == [12, 30]


async def test_after_a_reconnect_the_tail_is_not_asked_again_but_the_rest_of_the_window_is(
    autojump_clock: trio.abc.Clock, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    server = FakeServer(drops=[len(LOG) - 20])
    window = Window(tail=40, since_ns=5, timestamps=False)
    await Follower("J", reconnect_timeout=60, window=window).run(FakeDialer(server))
    assert capsysbinary.readouterr().out == LOG[-40:]
    assert server.asked == [0, len(LOG) - 20]
    assert server.windows == [(40, 5, False), (None, 5, False)]


async def test_it_gives_up_once_the_server_stays_away_for_the_timeout(
    autojump_clock: trio.abc.Clock, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    server = FakeServer(drops=[25], down=float("inf"))
    started = trio.current_time()
    with pytest.raises(GaveUp) as caught:
        await Follower("J", reconnect_timeout=5).run(FakeDialer(server))
    assert 5 <= trio.current_time() - started < 6
    assert str(caught.value) == (
        "jobs.example:7654: lost the connection, and it did not come back within 5 s "
        "(cannot connect: Connection refused); to read on: jog output --offset 25 J"
    )
    assert caught.value.lost.endswith("(cannot connect: Connection refused)")
    out, err = capsysbinary.readouterr()
    assert (out, err) == (LOG[:25], b"")


async def test_a_timeout_of_zero_raises_the_drop_as_it_is(
    autojump_clock: trio.abc.Clock, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    server = FakeServer(drops=[25])
    with pytest.raises(TransportError, match="the server closed the connection"):
        await Follower("J", reconnect_timeout=0).run(FakeDialer(server))
    assert server.dials == 1


async def test_a_server_that_answers_but_cannot_serve_the_output_is_given_up_on(
    autojump_clock: trio.abc.Clock, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    # It comes back after the drop, and then fails every Output at once with UNAVAILABLE:
    # the time it answers does not renew the timeout, and the user is told once.
    server = FakeServer(drops=[25], unreadable=25)
    started = trio.current_time()
    with pytest.raises(GaveUp, match=r"\(unavailable: cannot read the job's output: EIO\)"):
        await Follower("J", reconnect_timeout=10).run(FakeDialer(server))
    assert trio.current_time() - started < 12
    assert capsysbinary.readouterr().err.decode().splitlines() == [
        "jog: the server restarted; resumed job J at byte 25"
    ]


async def test_a_refusal_is_not_tried_again(
    autojump_clock: trio.abc.Clock, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    server = FakeServer(drops=[25], down=0, pruned=True)
    with pytest.raises(RpcError, match="job J not found"):
        await Follower("J", reconnect_timeout=60).run(FakeDialer(server))
    assert server.dials == 2
    assert capsysbinary.readouterr().err == b""


async def test_a_closed_stdout_ends_the_follower_without_a_retry(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def closed(data: bytes) -> None:
        raise StdoutClosed

    monkeypatch.setattr("jogger.cli.stdout.write", closed)
    server = FakeServer(drops=[])
    with pytest.raises(StdoutClosed):
        await Follower("J", reconnect_timeout=60).run(FakeDialer(server))
    assert server.dials == 1
