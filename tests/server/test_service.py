"""Every RPC through the real server, real sockets and real mutual TLS (server in-process)."""

import errno
import os
import re
from pathlib import Path

import pytest
import trio

from jogger.rpc.errors import RpcError, StatusCode
from jogger.v1 import jobs_pb2
from tests.procs import PYTHON
from tests.servers import Server

UNKNOWN = "5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"


async def follow(server: Server, job_id: str, user: str = "alice", offset: int = 0) -> bytes:
    async with server.connect(user) as client, client.output(job_id, offset=offset) as chunks:
        return b"".join([chunk.data async for chunk in chunks])


async def test_start_status_output_stop_and_list(server: Server) -> None:
    async with server.connect() as client:
        started = await client.start(
            ["sh", "-c", "echo out; echo err >&2; sleep 30"], env={"X": "1"}
        )
        assert started.state == jobs_pb2.JOB_STATE_RUNNING
        assert started.owner == "alice"
        assert list(started.argv) == ["sh", "-c", "echo out; echo err >&2; sleep 30"]
        with trio.fail_after(10):
            async with client.output(started.job_id) as chunks:
                first = await anext(chunks)
                assert first.offset == 0
                stopped = await client.stop(started.job_id, grace=1.0)
                rest = [chunk async for chunk in chunks]
        assert stopped.state == jobs_pb2.JOB_STATE_STOPPED
        assert stopped.WhichOneof("end") == "signal"
        assert stopped.HasField("ended_at")
        data = first.data + b"".join(c.data for c in rest)
        assert data == b"out\nerr\n"
        assert rest[-1].HasField("final")
        assert rest[-1].final.state == jobs_pb2.JOB_STATE_STOPPED
        status = await client.status(started.job_id)
        assert status == stopped
        assert [s.job_id for s in (await client.list())[0]] == [started.job_id]
        assert await client.health() == 1


async def test_output_chunks_carry_offsets_and_can_start_anywhere(server: Server) -> None:
    code = "import os\nfor i in range(64): os.write(1, bytes([i]) * 100_000)"
    async with server.connect() as client:
        job = await client.start([PYTHON, "-c", code])
        with trio.fail_after(20):
            everything = await follow(server, job.job_id)
            async with client.output(job.job_id, offset=12_345, follow=False) as chunks:
                offsets, tail = [], b""
                async for chunk in chunks:
                    assert not chunk.HasField("final")  # not followed: no final status
                    offsets.append(chunk.offset)
                    tail += chunk.data
    expected = b"".join(bytes([i]) * 100_000 for i in range(64))
    assert everything == expected
    assert tail == expected[12_345:]
    assert offsets[0] == 12_345
    assert len(offsets) > 1


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        ([], StatusCode.INVALID_ARGUMENT, "argv must not be empty"),
        (["no-such-command-jogger"], StatusCode.INVALID_ARGUMENT, "command not found"),
        (["echo", "a\0b"], StatusCode.INVALID_ARGUMENT, "NUL"),
    ],
)
async def test_bad_start_requests_are_invalid_argument(
    server: Server, argv: list[str], code: StatusCode, message: str
) -> None:
    async with server.connect() as client:
        with pytest.raises(RpcError) as info:
            await client.start(argv)
        assert info.value.code == code
        assert message in info.value.message
        assert await client.list() == ([], False)


async def test_unknown_and_foreign_jobs_are_the_same_not_found(server: Server) -> None:
    async with server.connect("alice") as alice, server.connect("bob") as bob:
        job = await alice.start(["sleep", "30"])
        errors = []
        for job_id in (job.job_id, UNKNOWN):
            for call in (bob.status(job_id), bob.stop(job_id, grace=0)):
                with pytest.raises(RpcError) as info:
                    await call
                errors.append((info.value.code, info.value.message.replace(job_id, "ID")))
            with pytest.raises(RpcError) as info:
                async with bob.output(job_id) as chunks:
                    await anext(chunks)
            errors.append((info.value.code, info.value.message.replace(job_id, "ID")))
        assert set(errors) == {(StatusCode.NOT_FOUND, "job ID not found")}
        assert await bob.list() == ([], False)
        assert (await alice.status(job.job_id)).state == jobs_pb2.JOB_STATE_RUNNING
        with pytest.raises(RpcError) as info:
            await bob.status("not-a-uuid")
        assert info.value.code == StatusCode.INVALID_ARGUMENT


async def test_admin_lists_and_reads_every_users_jobs_but_cannot_stop_them(
    server: Server,
) -> None:
    async with server.connect("alice") as alice, server.connect("root") as admin:
        job = await alice.start(["sh", "-c", "echo secret; sleep 30"])
        with pytest.raises(RpcError) as info:
            await alice.list(all_users=True)
        assert info.value.code == StatusCode.PERMISSION_DENIED
        everyone, _ = await admin.list(all_users=True)
        assert [(s.job_id, s.owner) for s in everyone] == [(job.job_id, "alice")]
        assert await admin.list() == ([], False)  # the admin's own jobs: none
        assert (await admin.status(job.job_id)).owner == "alice"
        async with admin.output(job.job_id) as chunks:
            assert (await anext(chunks)).data == b"secret\n"
        with pytest.raises(RpcError) as info:
            await admin.stop(job.job_id)
        assert info.value.code == StatusCode.NOT_FOUND


async def test_concurrency_limit_is_resource_exhausted(server: Server) -> None:
    async with server.connect() as client:
        with trio.fail_after(20):
            for _ in range(64):  # the default per-user limit
                await client.start(["sleep", "30"])
            with pytest.raises(RpcError) as info:
                await client.start(["sleep", "30"])
    assert info.value.code == StatusCode.RESOURCE_EXHAUSTED
    assert "the limit is 64" in info.value.message


async def test_concurrent_followers_through_the_server_get_identical_bytes(
    server: Server,
) -> None:
    code = "import os, time\nfor i in range(50): os.write(1, os.urandom(20_000)); time.sleep(0.01)"
    async with server.connect() as client:
        job = await client.start([PYTHON, "-c", code])
    results: list[bytes] = []

    async def one() -> None:
        results.append(await follow(server, job.job_id))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
    assert len(results) == 20
    assert len(results[0]) == 50 * 20_000
    assert all(r == results[0] for r in results)


async def test_grpc_timeout_is_enforced(server: Server) -> None:
    async with server.connect() as client:
        job = await client.start(["sh", "-c", "trap '' TERM; echo ready; sleep 300"])
        async with client.output(job.job_id) as chunks:
            await anext(chunks)
        request = jobs_pb2.StopRequest(job_id=job.job_id)
        request.grace.FromSeconds(30)
        with trio.fail_after(10), pytest.raises(RpcError) as info:
            # Stop waits out the 30 s grace; the caller allowed 0.3 s.
            await client._channel.unary(  # the typed client sets no deadline
                "/jogger.v1.Jobs/Stop", request, jobs_pb2.JobStatus, deadline=0.3
            )
        assert info.value.code == StatusCode.DEADLINE_EXCEEDED
        killed = await client.stop(job.job_id, grace=0)  # the stop goes on; this shortens it
        assert killed.state == jobs_pb2.JOB_STATE_KILLED


async def test_the_protos_start_comment_names_what_the_server_sends(server: Server) -> None:
    # Stock gRPC clients learn the codes from the proto: it must agree with the server.
    proto = (Path(__file__).parents[2] / "proto/jogger/v1/jobs.proto").read_text()
    comment = proto[proto.index("service Jobs {") : proto.index("rpc Start(")]
    named = set(re.findall(r"\b[A-Z][A-Z_]{4,}\b", comment))
    # FAILED_PRECONDITION is for isolation this server cannot give (test_isolation.py), not
    # for a command that cannot run.
    assert "FAILED_PRECONDITION" in named
    async with server.connect() as client:
        for argv, cwd in (
            (["no-such-command-jogger"], ""),
            (["/etc/hostname"], ""),
            (["true"], "/nonexistent"),
            ([], ""),
        ):
            with pytest.raises(RpcError) as info:
                await client.start(argv, cwd=cwd)
            assert info.value.code == StatusCode.INVALID_ARGUMENT
            assert info.value.code.name in named


async def test_a_log_that_fails_mid_stream_ends_the_stream_unavailable(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Failure injection: no real file system fails a read on demand. The second read of the
    # job's log gets EIO; the client must be told UNAVAILABLE, with the reason.
    async with server.connect() as client:
        started = await client.start(["head", "-c", "5000000", "/dev/zero"])
        with trio.fail_after(20):
            assert len(await follow(server, started.job_id)) == 5_000_000  # it has ended
        real_pread = os.pread
        reads = []

        def failing_pread(fd: int, size: int, offset: int) -> bytes:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(f"{started.job_id}.log"):
                reads.append(offset)
                if len(reads) > 1:
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_pread(fd, size, offset)

        async def read_all() -> None:
            async with client.output(started.job_id) as chunks:
                async for _ in chunks:
                    pass

        monkeypatch.setattr(os, "pread", failing_pread)
        with pytest.raises(RpcError) as info:
            await read_all()
    assert info.value.code == StatusCode.UNAVAILABLE
    assert "cannot read the job's output" in info.value.message
    assert len(reads) == 2


async def write_to(server: Server, user: str, job_id: str, data: bytes) -> jobs_pb2.WriteResponse:
    async with server.connect(user) as client, client.writer(job_id) as writer:
        await writer.write(data)
        return await writer.close()


async def test_only_the_owner_writes_to_a_job_never_another_user_nor_an_admin(
    server: Server,
) -> None:
    with trio.fail_after(30):
        async with server.connect("alice") as alice:
            job = await alice.start(["cat"], input=jobs_pb2.INPUT_PIPE)
            assert job.input == jobs_pb2.INPUT_PIPE
            for user, code in (
                ("bob", StatusCode.NOT_FOUND),
                ("root", StatusCode.PERMISSION_DENIED),
            ):
                with pytest.raises(RpcError) as info:
                    await write_to(server, user, job.job_id, b"not yours\n")
                assert info.value.code == code, user
            # Nothing of theirs reached the job, and its input is still the owner's to write.
            answer = await write_to(server, "alice", job.job_id, b"mine\n")
            assert (answer.written, answer.closed) == (5, False)
            assert await follow(server, job.job_id) == b"mine\n"


async def test_write_refusals_carry_their_documented_codes(server: Server) -> None:
    with trio.fail_after(30):
        async with server.connect("alice") as alice:
            plain = await alice.start(["sleep", "30"])
            terminal = await alice.start(
                ["cat"], input=jobs_pb2.INPUT_TERMINAL, term="xterm", window=(30, 90)
            )
            cases = [
                (plain.job_id, StatusCode.FAILED_PRECONDITION),  # started without input
                (UNKNOWN, StatusCode.NOT_FOUND),
                ("not-a-uuid", StatusCode.INVALID_ARGUMENT),
            ]
            for job_id, code in cases:
                with pytest.raises(RpcError) as info:
                    await write_to(server, "alice", job_id, b"x")
                assert info.value.code == code, job_id
            async with alice.writer(terminal.job_id):
                with pytest.raises(RpcError) as info:
                    await write_to(server, "alice", terminal.job_id, b"x")
                assert info.value.code == StatusCode.ABORTED  # one writer at a time

            async def bad_resize() -> None:
                async with alice.writer(terminal.job_id) as writer:
                    await writer.resize(0, 80)
                    await writer.close()

            with pytest.raises(RpcError) as info:
                await bad_resize()
            assert info.value.code == StatusCode.INVALID_ARGUMENT
            with pytest.raises(RpcError) as info:
                await alice.start(["true"], input=jobs_pb2.INPUT_PIPE, window=(10, 10))
            assert info.value.code == StatusCode.INVALID_ARGUMENT


async def test_a_terminal_jobs_term_and_window_come_from_the_start(server: Server) -> None:
    with trio.fail_after(30):
        async with server.connect("alice") as alice:
            job = await alice.start(
                ["sh", "-c", 'echo "$TERM"; stty size'],
                input=jobs_pb2.INPUT_TERMINAL,
                term="xterm-256color",
                window=(33, 101),
            )
            assert await follow(server, job.job_id) == b"xterm-256color\r\n33 101\r\n"
            default = await alice.start(
                ["sh", "-c", 'echo "$TERM"; stty size'], input=jobs_pb2.INPUT_TERMINAL
            )
            assert await follow(server, default.job_id) == b"dumb\r\n24 80\r\n"
