"""The accept loop waits out a shortage of file descriptors or memory, and raises the rest."""

import errno

import pytest
import trio

from jogger.rpc.server import ACCEPT_RETRY, serve_listener


class FailingListener(trio.abc.Listener[trio.SocketStream]):
    """Fails each accept() with the next of ``errors``, and records when it was asked."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.asked: list[float] = []
        self.closed = False

    async def accept(self) -> trio.SocketStream:
        await trio.lowlevel.checkpoint()
        self.asked.append(trio.current_time())
        code = self.errors.pop(0)
        raise OSError(code, f"accept: {errno.errorcode[code]}")

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


async def never_admit(stream: trio.SocketStream) -> None:
    raise AssertionError("no connection was accepted")


@pytest.mark.parametrize("shortage", [errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS])
async def test_a_shortage_is_waited_out_and_any_other_error_raised(
    shortage: int, autojump_clock: trio.abc.Clock
) -> None:
    listener = FailingListener(shortage, shortage, errno.EBADF)
    with pytest.raises(OSError, match="EBADF") as info:
        await serve_listener(listener, never_admit)
    assert info.value.errno == errno.EBADF
    start = listener.asked[0]
    assert [t - start for t in listener.asked] == pytest.approx([0, ACCEPT_RETRY, 2 * ACCEPT_RETRY])
    assert listener.closed


async def test_an_unexpected_error_is_raised_at_once() -> None:
    listener = FailingListener(errno.EINVAL)
    with pytest.raises(OSError, match="EINVAL"):
        await serve_listener(listener, never_admit)
    assert len(listener.asked) == 1
    assert listener.closed


async def test_a_shortage_is_logged(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    listener = FailingListener(errno.EMFILE, errno.EBADF)
    with pytest.raises(OSError, match="EBADF"):
        await serve_listener(listener, never_admit)
    assert [r.getMessage() for r in caplog.records] == ["accept failed: [Errno 24] accept: EMFILE"]
