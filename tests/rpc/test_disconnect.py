"""A client that goes away costs the server nothing: its call tasks end, its fds close."""

import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import trio
import trio.lowlevel
import trio.testing

from jogger.v1 import jobs_pb2
from tests.procs import open_fds, task_count
from tests.servers import Server

# Opens N connections, follows the job on each, says "ready", then waits to be killed.
FOLLOWERS = """
import sys, trio
from pathlib import Path
from jogger.rpc.client import open_client

async def follow(port, ca, cert, key, job_id, ready):
    async with open_client("localhost", port, ca=ca, cert=cert, key=key) as client:
        async with client.output(job_id) as chunks:
            await anext(chunks)
            ready()
            await trio.sleep_forever()

async def main(port, ca, cert, key, job_id, n):
    left = int(n)
    def ready():
        nonlocal left
        left -= 1
        if left == 0:
            print("ready", flush=True)
    async with trio.open_nursery() as nursery:
        for _ in range(int(n)):
            nursery.start_soon(follow, int(port), Path(ca), Path(cert), Path(key), job_id, ready)

trio.run(main, *sys.argv[1:])
"""


async def settle() -> tuple[int, set[int]]:
    # Let the server notice what happened (EOFs, resets) before looking.
    for _ in range(5):
        await trio.sleep(0.05)
        await trio.testing.wait_all_tasks_blocked(0.01)
    # Objects of earlier tests that only the cycle collector frees (a socket in an
    # exception's traceback, say) would otherwise close their fds whenever it runs: between
    # two of our counts, at random.
    gc.collect()
    return task_count(), open_fds()


async def test_reset_streams_end_their_handlers_one_after_another(server: Server) -> None:
    async with server.connect() as owner:
        job = await owner.start(["sh", "-c", "echo idle; sleep 300"])
        tasks, fds = await settle()
        async with server.connect() as client:
            # Measured with this connection open, so that only the calls can make a difference.
            connected_tasks, connected_fds = await settle()
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    scopes = []
                    for _ in range(100):
                        scope = trio.CancelScope()
                        scopes.append(scope)

                        async def follow(scope: trio.CancelScope = scope) -> None:
                            with scope:
                                async with client.output(job.job_id) as chunks:
                                    await anext(chunks)
                                    await trio.sleep_forever()

                        nursery.start_soon(follow)
                    await settle()
                    assert task_count() >= tasks + 200  # a client task and a server task each
                    for scope in scopes:
                        scope.cancel()  # this follower leaves; its RST_STREAM must end the handler
                        await trio.lowlevel.checkpoint()
            assert await settle() == (connected_tasks, connected_fds)
        after_tasks, after_fds = await settle()
    assert after_tasks == tasks
    assert after_fds == fds


async def test_vanished_clients_leave_no_task_or_fd_behind(server: Server) -> None:
    alice = server.pki.user("alice")
    async with server.connect() as owner:
        job = await owner.start(["sh", "-c", "echo idle; sleep 300"])
        tasks, fds = await settle()
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        # 100 connections in one process, killed at once; then 10 more processes, killed one
        # after another. None of them says goodbye: the server sees the TCP connection end.
        with trio.fail_after(60):
            for count in (100, *[10] * 10):
                args = [str(server.port), str(server.pki.ca), str(alice.cert), str(alice.key)]
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-c", FOLLOWERS, *args, job.job_id, str(count)],
                    stdout=subprocess.PIPE,
                    env=env,
                )
                assert process.stdout is not None
                assert (await process.stdout.receive_some(100)).strip() == b"ready"
                busy, _ = await settle()
                assert busy >= tasks + count
                process.send_signal(signal.SIGKILL)
                await process.wait()
                await process.stdout.aclose()
        after_tasks, after_fds = await settle()
    assert after_tasks == tasks
    assert after_fds == fds


async def test_killed_jog_output_followers_cost_the_server_nothing(server: Server) -> None:
    # The scenario, with the real CLI: 200 `jog output` processes follow an idle job
    # and are killed one after another, with no goodbye; the server's tasks and fds return
    # to where they were.
    followers = 200
    env = server.jog_env("alice")
    jog = Path(sys.executable).parent / "jog"
    async with server.connect() as owner:
        job = await owner.start(["sh", "-c", "echo idle; sleep 300"])
        tasks, fds = await settle()
        processes: list[trio.Process] = []
        try:
            with trio.fail_after(110):
                # In batches, so that 200 interpreters starting at once do not swamp 2 cores.
                for _ in range(followers // 20):
                    batch = [
                        await trio.lowlevel.open_process(
                            [jog, "output", job.job_id], stdout=subprocess.PIPE, env=env
                        )
                        for _ in range(20)
                    ]
                    processes += batch
                    for process in batch:
                        assert process.stdout is not None
                        assert await process.stdout.receive_some(100) == b"idle\n"
                busy, _ = await settle()
                assert busy >= tasks + followers  # at least one server task per follower
                for process in processes:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                if process.stdout is not None:
                    await process.stdout.aclose()
        after_tasks, after_fds = await settle()
    assert after_tasks == tasks
    assert after_fds == fds


async def reset_writer(server: Server, job_id: str) -> None:
    """Write to the job's input, then give up on the stream (RST_STREAM) while it is held."""
    async with server.connect() as client:
        with trio.CancelScope() as scope:
            async with client.writer(job_id) as writer:
                await writer.write(b"half a line")
                await settle()
                scope.cancel()  # the client gives up: its RST_STREAM must end the handler


async def test_reset_write_streams_leave_no_task_or_fd_and_end_a_pipes_input(
    server: Server,
) -> None:
    async with server.connect() as owner:
        with trio.fail_after(30):
            # A terminal stays: the server holds nothing of it once its writer has gone.
            terminal = await owner.start(["cat"], input=jobs_pb2.INPUT_TERMINAL)
            tasks, fds = await settle()
            await reset_writer(server, terminal.job_id)
            assert await settle() == (tasks, fds)
            async with owner.writer(terminal.job_id) as writer:  # for the next writer
                await writer.write(b"\r")
                assert (await writer.close()).written == 1
            await owner.stop(terminal.job_id)
            # A pipe's input ends with its stream: cat reads EOF and ends, and the server
            # holds less than before (the job's tasks and fds are gone too).
            piped = await owner.start(["cat"], input=jobs_pb2.INPUT_PIPE)
            tasks, fds = await settle()
            await reset_writer(server, piped.job_id)
            final = await owner.status(piped.job_id)
            while final.state == jobs_pb2.JOB_STATE_RUNNING:
                await trio.sleep(0.05)
                final = await owner.status(piped.job_id)
            assert final.state == jobs_pb2.JOB_STATE_COMPLETED
            after_tasks, after_fds = await settle()
            assert after_tasks < tasks
            assert after_fds < fds
