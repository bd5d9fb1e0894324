"""jog against a server that answers with what no gRPC server should: one clear line each."""

from collections.abc import Sequence
from functools import partial

import h2.config
import h2.connection
import h2.events
import pytest
import trio

from jogger.rpc.tls import server_context
from tests.e2e.conftest import BIN
from tests.pki import Pki

Headers = Sequence[tuple[str, str]]
RESPONSE = [(":status", "200"), ("content-type", "application/grpc+proto")]


async def answer_every_call(pki: Pki, trailers: Headers, tcp: trio.SocketStream) -> None:
    """Serve one connection: each request gets response headers, then ``trailers``."""
    context = server_context(pki.ca, pki.server.cert, pki.server.key)
    tls = trio.SSLStream(tcp, context, server_side=True)
    config = h2.config.H2Configuration(
        client_side=False, header_encoding="utf-8", validate_outbound_headers=False
    )
    connection = h2.connection.H2Connection(config)
    try:
        await tls.do_handshake()
        connection.initiate_connection()
        await tls.send_all(connection.data_to_send())
        while data := await tls.receive_some():
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    connection.send_headers(event.stream_id, RESPONSE)
                    connection.send_headers(event.stream_id, trailers, end_stream=True)
            await tls.send_all(connection.data_to_send())
    except (trio.BrokenResourceError, h2.exceptions.ProtocolError):
        pass  # the client gave up on us, as it should
    finally:
        await trio.aclose_forcefully(tls)


@pytest.mark.parametrize(
    ("trailers", "told"),
    [
        (
            [("grpc-status", "2"), ("grpc-message", "x" * 100_000)],
            "the server sent a response we refuse (",
        ),
        ([("grpc-status", "not a number")], "malformed response from the server: "),
        ([("grpc-message", "no status at all")], "malformed response from the server: "),
    ],
)
async def test_a_malformed_or_oversized_trailer_is_one_clear_line(
    pki: Pki, nursery: trio.Nursery, trailers: Headers, told: str
) -> None:
    listeners = await nursery.start(
        partial(trio.serve_tcp, partial(answer_every_call, pki, trailers), 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    alice = pki.user("alice")
    env = {
        "PATH": "/usr/bin:/bin",
        "JOGGER_HOST": f"localhost:{port}",
        "JOGGER_CA_CERT_FILE": str(pki.ca),
        "JOGGER_USER_CERT_FILE": str(alice.cert),
        "JOGGER_USER_KEY_FILE": str(alice.key),
    }
    with trio.fail_after(30):
        result = await trio.run_process(
            [BIN / "jog", "list"], env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    err = result.stderr.decode()
    assert result.returncode in (1, 3), err
    assert len(err.splitlines()) == 1, err
    assert "unexpected" not in err
    assert told in err, err
    nursery.cancel_scope.cancel()  # the test is over: stop the hostile server
