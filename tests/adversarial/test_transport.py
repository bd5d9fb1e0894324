"""Hostile transport: each attack costs the attacker, and a well-behaved user's `jog run`
still works while it goes on."""

import contextlib
import dataclasses
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import hyperframe.frame
import pytest
import trio
import trio.testing

from jogger.rpc.admission import TransportLimits
from jogger.rpc.errors import StatusCode
from jogger.rpc.protocol import MAX_HEADER_LIST_SIZE, SERVER_CONNECTION_WINDOW, SERVER_MAX_STREAMS
from jogger.rpc.tls import client_context
from jogger.rpc.wire import PEER_RESETS, Connection
from jogger.server.main import serve
from jogger.v1 import jobs_pb2
from tests.adversarial.lag import LoopLag
from tests.e2e.conftest import launch, server_env, stop_server
from tests.pki import Pki
from tests.procs import eventually, task_count
from tests.rpc.raw_h2 import Outcome, RawConnection, message, open_raw, raw_connection
from tests.servers import Server, server_config, start_server

BIN = Path(sys.executable).parent
LIST = "/jogger.v1.Jobs/List"
EMPTY_LIST = message(jobs_pb2.ListRequest().SerializeToString())
LIMITS = TransportLimits(
    handshake_timeout=2.0,
    request_timeout=2.0,
    max_handshakes_per_host=20,
    max_connections_per_user=8,
    max_calls_per_user=300,
)


@pytest.fixture
async def server(pki: Pki, tmp_path: Path, nursery: trio.Nursery, loop_lag: LoopLag) -> Server:
    """The real server in this process, with limits small enough to reach in a test."""
    config = dataclasses.replace(server_config(pki, tmp_path / "state"), transport=LIMITS)
    return await start_server(nursery, pki, config)


async def jog_run_works(server: Server) -> float:
    """bob, who does nothing wrong, runs a job with the real CLI and gets its output; how
    long it took (seconds) is returned, and logged (shown with a failing test's log)."""
    env = server.jog_env("bob")
    start = time.monotonic()
    with trio.fail_after(30):
        result = await trio.run_process(
            [BIN / "jog", "run", "--", "echo", "still served"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"still served\n"
    took = time.monotonic() - start
    logging.getLogger("tests.adversarial").info("bob's jog run took %.3f s", took)
    return took


async def closed_by_peer(sock: trio.socket.SocketType) -> bool:
    try:
        return await sock.recv(1) == b""
    except ConnectionResetError:
        return True


async def silent_socket(server: Server, source: str = "127.0.0.2") -> trio.socket.SocketType:
    """A TCP connection that never says anything, from another loopback address."""
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", server.port))
    return sock


async def test_the_server_advertises_modest_http2_settings(server: Server) -> None:
    # purerpc's own: 65,536 streams, 16 MiB frames, a 64 MiB stream window and 1 GiB more
    # for the connection.
    async with raw_connection(server) as conn:
        with trio.fail_after(10):
            await conn.call(LIST, EMPTY_LIST)  # by now the server's SETTINGS have arrived
        settings = conn.h2.remote_settings
        assert settings.max_concurrent_streams == SERVER_MAX_STREAMS == 128
        assert settings.max_frame_size == 16 << 10
        assert settings.max_header_list_size == MAX_HEADER_LIST_SIZE == 8 << 10
        assert settings.initial_window_size <= 4 << 20
        # Four stream windows, so that one stalled Write stream cannot stall the others.
        assert conn.h2.outbound_flow_control_window <= SERVER_CONNECTION_WINDOW == 8 << 20


async def test_silent_connections_are_closed_after_the_handshake_timeout(server: Server) -> None:
    tasks = task_count()
    sockets = [await silent_socket(server) for _ in range(LIMITS.max_handshakes_per_host)]
    try:
        await jog_run_works(server)
        with trio.fail_after(LIMITS.handshake_timeout + 10):
            for sock in sockets:
                assert await closed_by_peer(sock)
    finally:
        for sock in sockets:
            sock.close()
    await eventually(tasks_back_to(tasks))


async def test_one_host_cannot_take_every_handshake_slot(server: Server) -> None:
    held = [await silent_socket(server) for _ in range(LIMITS.max_handshakes_per_host)]
    try:
        await trio.testing.wait_all_tasks_blocked()  # no cushion: the lag probe ticks
        # One more from the same host is closed at once, long before the handshake timeout.
        extra = await silent_socket(server)
        with trio.fail_after(LIMITS.handshake_timeout / 2), extra:
            assert await closed_by_peer(extra)
        # Other hosts still get in.
        await jog_run_works(server)
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    "says", [b"", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], ids=["nothing", "no-frame"]
)
async def test_a_client_that_completes_tls_and_sends_no_frame_is_closed(
    server: Server, says: bytes
) -> None:
    # With nothing, or with the connection preface but not one frame (its SETTINGS).
    alice = server.pki.user("alice")
    context = client_context(server.pki.ca, alice.cert, alice.key)
    tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
    tls = trio.SSLStream(tcp, context, server_hostname="localhost")
    async with tls:
        await tls.do_handshake()
        await tls.send_all(says)
        await jog_run_works(server)
        with trio.fail_after(LIMITS.handshake_timeout + 10):
            # The server's preface arrives; then, with no preface of ours, the end.
            with contextlib.suppress(trio.BrokenResourceError):  # closed without close_notify
                while await tls.receive_some(1 << 16):
                    pass


async def test_plaintext_to_the_tls_port_is_closed(server: Server) -> None:
    with trio.fail_after(10):
        tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with tcp:
            await tcp.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 64)
            reply = b""
            while data := await tcp.receive_some(1 << 16):
                reply += data
        # A TLS alert record (content type 21) at most; never an HTTP/2 frame.
        assert reply == b"" or reply[0] == 21
    await jog_run_works(server)


async def test_tls_without_a_client_certificate_gets_no_call_through(server: Server) -> None:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server.pki.ca))
    context.set_alpn_protocols(["h2"])
    tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
    tls = trio.SSLStream(tcp, context, server_hostname="localhost")
    refusal = "no refusal"
    with trio.fail_after(10):
        try:
            # TLS 1.3: the refusal arrives after the client thinks the handshake is done.
            await tls.do_handshake()
            await tls.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            answer = await tls.receive_some(1 << 16)
        except trio.BrokenResourceError as exc:
            refusal = str(exc.__cause__)
            answer = b""
        finally:
            await trio.aclose_forcefully(tls)
    assert answer == b""  # not one HTTP/2 frame
    assert "CERTIFICATE_REQUIRED" in refusal.upper()
    await jog_run_works(server)


async def test_a_stalled_request_is_answered_and_frees_its_slot(server: Server) -> None:
    async with raw_connection(server) as conn:
        stream_id = conn.h2.get_next_available_stream_id()
        conn.h2.send_headers(stream_id, request_headers(LIST))  # and then no message
        await conn.flush()
        await jog_run_works(server)
        with trio.fail_after(LIMITS.request_timeout + 10):
            outcome = await conn.wait(stream_id)
        assert outcome.grpc_status == StatusCode.DEADLINE_EXCEEDED.value
        assert "did not arrive" in outcome.message
        assert (await conn.call(LIST, EMPTY_LIST)).grpc_status == StatusCode.OK.value


async def test_a_user_over_the_connection_limit_is_told_so(server: Server) -> None:
    async with trio.open_nursery() as nursery:
        held = [
            await nursery.start(hold_connection, server, "alice")
            for _ in range(LIMITS.max_connections_per_user)
        ]
        async with raw_connection(server) as extra:
            refused = await extra.call(LIST, EMPTY_LIST)
            assert refused.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
            assert "alice has 8 connections open" in refused.message
            # And the server does not keep it: it is closed after a short while.
            with trio.fail_after(LIMITS.refused_life + 10):
                await extra.wait(-1)
            assert extra.terminated
        # The connections within the limit, and other users, are served.
        assert (await held[0].call(LIST, EMPTY_LIST)).grpc_status == StatusCode.OK.value
        await jog_run_works(server)
        nursery.cancel_scope.cancel()  # the held connections are done with


async def test_refused_connections_cannot_take_every_connection_slot(server: Server) -> None:
    # alice, at her connection limit, keeps opening more. Each one kept open to be told why
    # holds a slot, so only a few per address are kept; the rest are closed at once.
    async with trio.open_nursery() as nursery:
        for _ in range(LIMITS.max_connections_per_user):
            await nursery.start(hold_connection, server, "alice")
        told = closed = 0
        extras = []
        with trio.fail_after(30):
            for _ in range(3 * LIMITS.max_refused_per_host):
                conn = await open_quietly(server, "alice")
                if conn is None:
                    closed += 1
                    continue
                extras.append(conn)
                try:
                    outcome = await conn.call(LIST, EMPTY_LIST)
                except trio.BrokenResourceError:
                    outcome = Outcome()  # closed (reset) at once, before it could ask
                if outcome.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value:
                    told += 1
                else:
                    assert outcome.grpc_status is None
                    closed += 1
        assert told == LIMITS.max_refused_per_host
        assert closed == 2 * LIMITS.max_refused_per_host
        await jog_run_works(server)
        for conn in extras:
            await conn.aclose()
        nursery.cancel_scope.cancel()  # the held connections are done with


async def test_a_user_over_the_call_limit_is_told_so(server: Server) -> None:
    # alice follows an idle job on enough streams, over several connections, to reach the
    # limit; one more call is refused, and bob is not affected.
    async with server.connect() as owner:
        job = await owner.start(["sh", "-c", "echo idle; exec sleep 300"])
    request = message(jobs_pb2.OutputRequest(job_id=job.job_id, follow=True).SerializeToString())
    per_connection = 100
    async with trio.open_nursery() as nursery:
        connections = [
            await nursery.start(hold_connection, server, "alice")
            for _ in range(LIMITS.max_calls_per_user // per_connection)
        ]
        for conn in connections:
            for _ in range(per_connection):
                stream_id = conn.h2.get_next_available_stream_id()
                conn.h2.send_headers(stream_id, request_headers(OUTPUT))
                conn.h2.send_data(stream_id, request, end_stream=True)
                # The attacker shares the server's loop here: its own encoding must not
                # count as the server's lag.
                await trio.lowlevel.checkpoint()
            await conn.flush()
        refused = Outcome()

        async def at_the_limit() -> bool:
            # A List ends at once: asking does not add to the calls in flight.
            nonlocal refused
            async with raw_connection(server) as extra:
                refused = await extra.call(LIST, EMPTY_LIST)
            return bool(refused.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value)

        await eventually(at_the_limit)
        assert f"alice has {LIMITS.max_calls_per_user} calls in flight" in refused.message
        await jog_run_works(server)
        nursery.cancel_scope.cancel()  # the followers are done with
    async with server.connect() as owner:
        await owner.stop(job.job_id)


async def test_streams_past_the_advertised_limit_end_the_connection(server: Server) -> None:
    # h2 would not let us open more streams than the server allows: frames are sent by hand.
    tasks = task_count()
    async with raw_connection(server) as conn:
        encoder = hpack.Encoder()
        frames = b""
        for n in range(SERVER_MAX_STREAMS + 50):
            frame = hyperframe.frame.HeadersFrame(2 * n + 1001)
            frame.data = encoder.encode(request_headers(LIST))
            frame.flags.add("END_HEADERS")  # and never END_STREAM: each call waits
            frames += frame.serialize()
        await conn.send_raw(frames)
        with trio.fail_after(10):
            await conn.wait(-1)
        assert conn.goaway == h2.errors.ErrorCodes.PROTOCOL_ERROR
        await jog_run_works(server)
    await eventually(tasks_back_to(tasks))


async def test_rapid_reset_is_cut_off_with_enhance_your_calm(server: Server) -> None:
    # CVE-2023-44487: open a stream and reset it at once, in a tight loop. The server never
    # runs more handlers than it advertised, and closes the connection once resets outrun
    # any honest client.
    tasks = task_count()
    most = 0
    async with raw_connection(server) as conn, trio.open_nursery() as nursery:
        nursery.start_soon(conn.read_until_closed)  # all along, so that GOAWAY is seen
        with trio.fail_after(30):
            for _ in range(20 * PEER_RESETS[0]):
                stream_id = conn.h2.get_next_available_stream_id()
                conn.h2.send_headers(stream_id, request_headers(LIST))
                conn.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                try:
                    await conn.flush()
                except trio.BrokenResourceError:
                    break
                most = max(most, task_count() - tasks)
                if conn.terminated:
                    break
    assert conn.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    # One server task per connection and its reader, plus its calls.
    assert most <= SERVER_MAX_STREAMS + 4
    await jog_run_works(server)
    await eventually(tasks_back_to(tasks))


async def test_an_oversized_header_block_ends_only_that_connection(server: Server) -> None:
    # 40 CONTINUATION frames of 16 KiB each: h2 3.x would buffer them all; the decoded
    # header list is refused past its limit and the connection gets GOAWAY.
    async with raw_connection(server) as conn:
        block = hpack.Encoder().encode(
            [*request_headers(LIST), *[(f"x-pad-{i}", "p" * 16000) for i in range(40)]],
            huffman=False,
        )
        assert len(block) > 40 * 16000 > MAX_HEADER_LIST_SIZE
        first = hyperframe.frame.HeadersFrame(1)
        first.data = block[: 16 << 10]
        frames = first.serialize()
        rest = block[16 << 10 :]
        while rest:
            continuation = hyperframe.frame.ContinuationFrame(1)
            continuation.data, rest = rest[: 16 << 10], rest[16 << 10 :]
            if not rest:
                continuation.flags.add("END_HEADERS")
            frames += continuation.serialize()
        await conn.send_raw(frames)
        with trio.fail_after(10):
            await conn.wait(-1)
        assert conn.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    await jog_run_works(server)


async def test_a_frame_larger_than_16_kib_ends_only_that_connection(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    async with server.connect() as owner:
        job = await owner.start(["sh", "-c", "while :; do echo tick; sleep 0.01; done"])
    follow = message(jobs_pb2.OutputRequest(job_id=job.job_id, follow=True).SerializeToString())
    async with raw_connection(server) as conn:
        # Calls that are writing when the connection ends: they end quietly with it.
        for _ in range(5):
            stream_id = conn.h2.get_next_available_stream_id()
            conn.h2.send_headers(stream_id, request_headers(OUTPUT))
            conn.h2.send_data(stream_id, follow, end_stream=True)
        stream_id = conn.h2.get_next_available_stream_id()
        conn.h2.send_headers(stream_id, request_headers(LIST))
        await conn.flush()
        # The 9-byte header of a 1 MiB DATA frame, and a little of it: enough to be refused.
        data = hyperframe.frame.DataFrame(stream_id)
        data.data = b"x" * (1 << 20)
        await conn.send_raw(data.serialize()[:1000])
        with trio.fail_after(10):
            await conn.wait(-1)
        assert conn.goaway == h2.errors.ErrorCodes.FRAME_SIZE_ERROR
    await jog_run_works(server)
    async with server.connect() as owner:
        await owner.stop(job.job_id)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_the_listener_does_not_share_its_port(server: Server, pki: Pki) -> None:
    # No SO_REUSEPORT: a second server, or a job, cannot bind our port and take connections.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError, match="Address already in use"):
            other.bind(("127.0.0.1", server.port))
    # A second jogger-server on the same port exits non-zero and says why.
    env = server_env(pki)
    with trio.fail_after(30):
        second = await trio.run_process(
            [
                BIN / "jogger-server",
                "--listen",
                f"127.0.0.1:{server.port}",
                "--state-dir",
                str(server.state_dir.parent / "second"),
            ],
            env=env,
            capture_stderr=True,
            check=False,
        )
    assert second.returncode == 1
    assert second.stderr.decode().splitlines()[-1] == (
        f"jogger-server: error: cannot listen on 127.0.0.1:{server.port}: address already in "
        "use (is another server running there? --listen chooses another address)"
    )
    # And one on another port with the same state dir: it would "recover" our jobs.
    with trio.fail_after(30):
        third = await trio.run_process(
            [BIN / "jogger-server", "--listen", "127.0.0.1:0", "--state-dir", server.state_dir],
            env=env,
            capture_stderr=True,
            check=False,
        )
    assert third.returncode == 1
    assert f"is in use by another jogger (pid {os.getpid()})".encode() in third.stderr
    await jog_run_works(server)


async def test_a_flood_of_failures_writes_a_few_log_lines(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # 300 plaintext connections, each a failed TLS handshake the server would log.
    caplog.set_level(logging.INFO, logger="jogger.rpc")
    began = trio.current_time()
    for _ in range(300):
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as tcp:
                await tcp.send_all(b"GET / HTTP/1.1\r\n\r\n")
                while await tcp.receive_some(1 << 16):
                    pass
    await trio.sleep(1.1)  # a token comes back: the next line says how many were dropped
    async with await trio.open_tcp_stream("127.0.0.1", server.port) as tcp:
        await tcp.send_all(b"GET / HTTP/1.1\r\n\r\n")
        while await tcp.receive_some(1 << 16):
            pass
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    # A burst of at most 20 (fewer if earlier tests in this process spent some), then about
    # one a second; and some line says how many were dropped.
    assert 1 <= len(refused) <= 20 + (trio.current_time() - began) + 1
    assert any("similar lines dropped" in line for line in refused)
    await jog_run_works(server)


async def test_output_streams_nobody_reads_hold_bounded_server_memory(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    # The server as its own process, to read its RSS. 200 Output streams of a 64 MiB log,
    # over two connections that grant every window and then never read: the server holds
    # what it has queued for them, which must not be 200 messages of 1 MiB (it was 1.2 GiB
    # before messages were shared out per connection and queued only at write time).
    cli = await launch(pki, tmp_path / "state", nursery)
    server = Server("127.0.0.1", cli.port, pki, tmp_path / "state")
    try:
        async with server.connect() as client:
            job = await client.start(["head", "-c", str(64 << 20), "/dev/zero"])
            async with client.output(job.job_id) as chunks:
                async for _ in chunks:
                    pass
        before = rss_mib(cli.process.pid)
        request = message(
            jobs_pb2.OutputRequest(job_id=job.job_id, follow=False).SerializeToString()
        )
        async with raw_connection(server) as one, raw_connection(server) as two:
            for conn in (one, two):
                conn.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
                conn.h2.increment_flow_control_window(2**31 - 1 - 65535)
                for _ in range(100):
                    stream_id = conn.h2.get_next_available_stream_id()
                    conn.h2.send_headers(stream_id, request_headers(OUTPUT))
                    conn.h2.send_data(stream_id, request, end_stream=True)
                await conn.flush()
            await jog_run_works(server)
            during = await steady_rss(cli.process.pid)
        print(f"server RSS: {before} MiB before, {during} MiB with 200 unread streams")
        assert during - before < 128
        await jog_run_works(server)
    finally:
        await stop_server(cli.process)


async def steady_rss(pid: int) -> int:
    """The process's RSS once it has stopped growing (the same for a second), in MiB."""
    last = rss_mib(pid)
    steady = 0
    with trio.fail_after(60):
        while steady < 4:
            await trio.sleep(0.25)
            now = rss_mib(pid)
            steady = steady + 1 if now <= last else 0
            last = max(last, now)
    return last


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) >> 10
    raise AssertionError(f"no VmRSS for {pid}")


OUTPUT = "/jogger.v1.Jobs/Output"


def tasks_back_to(count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return task_count() == count

    return check


async def open_quietly(server: Server, user: str) -> RawConnection | None:
    """A raw connection of ``user``'s, or None if the server closed it during the handshake."""
    try:
        return await open_raw(server, user)
    except trio.BrokenResourceError:
        return None


def request_headers(path: str) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", path),
        (":authority", "localhost"),
        ("te", "trailers"),
        ("content-type", "application/grpc+proto"),
    ]


async def hold_connection(
    server: Server, user: str, *, task_status: trio.TaskStatus[RawConnection]
) -> None:
    """A connection of ``user``'s, open until cancelled, reading what the server sends."""
    async with raw_connection(server, user) as conn:
        assert (await conn.call(LIST, EMPTY_LIST)).grpc_status == StatusCode.OK.value
        task_status.started(conn)
        await trio.sleep_forever()


async def test_calls_past_the_limit_are_refused_even_when_h2_counts_fewer() -> None:
    # The server's connection machinery over an in-memory stream, with handlers that never
    # finish. The client opens 128 calls and resets them: h2 counts them closed at once,
    # but their handlers still run. A 129th call is refused (REFUSED_STREAM), not started;
    # a peer that goes on is closed with GOAWAY ENHANCE_YOUR_CALM.
    client_end, server_end = trio.testing.memory_stream_pair()
    server = Connection(server_end, client_side=False)
    handlers: list[object] = []
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    refused: list[int] = []
    goaway: list[object] = []

    async def read_client() -> None:
        while data := await client_end.receive_some(1 << 16):
            for event in client.receive_data(data):
                if isinstance(event, h2.events.StreamReset):
                    refused.append(event.error_code)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    goaway.append(event.error_code)
                    return

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await server.start()
            nursery.start_soon(server.run, lambda event, stream: handlers.append(stream))
            nursery.start_soon(read_client)
            for _ in range(SERVER_MAX_STREAMS):
                stream_id = client.get_next_available_stream_id()
                client.send_headers(stream_id, request_headers(LIST))
                client.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            await client_end.send_all(client.data_to_send())
            await trio.testing.wait_all_tasks_blocked()
            assert len(handlers) == SERVER_MAX_STREAMS
            client.send_headers(client.get_next_available_stream_id(), request_headers(LIST))
            await client_end.send_all(client.data_to_send())
            await trio.testing.wait_all_tasks_blocked()
            assert len(handlers) == SERVER_MAX_STREAMS
            assert refused == [h2.errors.ErrorCodes.REFUSED_STREAM]
            while not goaway:
                client.send_headers(client.get_next_available_stream_id(), request_headers(LIST))
                await client_end.send_all(client.data_to_send())
                await trio.testing.wait_all_tasks_blocked()
            assert goaway == [h2.errors.ErrorCodes.ENHANCE_YOUR_CALM]
            assert len(refused) <= PEER_RESETS[0] + 1
            nursery.cancel_scope.cancel()  # the test is over: stop the server's reader


async def test_strangers_from_many_networks_cannot_lock_users_out(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery, loop_lag: LoopLag
) -> None:
    # A small table, so that a test can fill it: 64 slots, 8 per address, 16 per /24.
    limits = dataclasses.replace(
        LIMITS,
        handshake_timeout=10.0,
        max_handshakes=64,
        max_handshakes_per_host=8,
        max_handshakes_per_network=16,
    )
    config = dataclasses.replace(server_config(pki, tmp_path / "state"), transport=limits)
    bound = await nursery.start(serve, config)
    server = Server("127.0.0.1", bound[0][1], pki, config.state_dir)
    # No certificate, six networks of 127.0.0.0/8 with two addresses each: 96 silent
    # connections for 64 slots, each reopened a moment after the server closes it (the
    # review's attacker came back every 10 s).
    sources = [f"127.0.{net}.{host}" for net in range(1, 7) for host in (2, 3)]
    opened = 0

    async def hold_a_slot(source: str) -> None:
        nonlocal opened
        while True:
            try:
                sock = await silent_socket(server, source)
            except OSError:
                pass  # refused or reset on connect: the server is defending itself
            else:
                opened += 1
                with sock:
                    await closed_by_peer(sock)
            await trio.sleep(0.5)

    async with trio.open_nursery() as attack:
        for source in sources:
            for _ in range(limits.max_handshakes_per_host):
                attack.start_soon(hold_a_slot, source)
        await trio.testing.wait_all_tasks_blocked()  # no cushion: the lag probe ticks
        # A user from another network gets in, again and again, while the flood goes on.
        for _ in range(3):
            await jog_run_works(server)
        attack.cancel_scope.cancel()  # the attack is over
    assert opened > limits.max_handshakes  # the table was full: newcomers evicted the oldest
