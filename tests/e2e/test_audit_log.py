"""The real jogger-server's --audit-log and --log-format: rotation by a real SIGHUP, the
file's checks, a full disk, and JSON on stderr."""

import errno
import json
import os
import signal
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.conftest import BIN, Cli, launch, mounted_tmpfs, server_env, stop_server
from tests.pki import Pki


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def started(cli: Cli) -> str:
    """Start a job with the real jog; its id."""
    done = await cli.jog("start", "--", "true")
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().removeprefix("started: ").strip()


async def logged(cli: Cli, text: str, count: int = 1) -> None:
    """Wait until the server's log has ``count`` lines holding ``text``."""
    with trio.fail_after(20):
        while True:
            if sum(text in line for line in cli.log) >= count:
                return
            await trio.sleep(0.02)


def started_jobs(path: Path) -> list[str]:
    """The ids of the jobs whose starts the audit log at ``path`` holds (a SIGHUP's
    certificate-reload lines are among them)."""
    return [e["job_id"] for e in events(path) if e["event"] == "start"]


def fill(path: Path) -> None:
    """Write to ``path`` until its file system is full."""
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


@pytest.fixture
async def audited(pki: Pki, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Cli]:
    cli = await launch(pki, tmp_path / "state", nursery, "--audit-log", tmp_path / "audit.log")
    try:
        yield cli
    finally:
        await stop_server(cli.process)


async def test_sighup_after_a_rename_makes_the_server_write_to_a_new_file(
    audited: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "audit.log"
    first = await started(audited)
    path.rename(tmp_path / "audit.log.1")  # as logrotate does, before its postrotate
    second = await started(audited)  # still into the renamed file, until the SIGHUP
    audited.process.send_signal(signal.SIGHUP)
    await logged(audited, "SIGHUP: reloading audit log")
    third = await started(audited)
    assert started_jobs(tmp_path / "audit.log.1") == [first, second]
    # The reload's own line goes to the new file: the audit log is reopened first.
    assert [e["event"] for e in events(path)] == ["certificate-reload", "start"]
    assert started_jobs(path) == [third]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert audited.process.returncode is None  # SIGHUP did not end it


async def test_a_reopen_that_fails_keeps_writing_to_the_old_file(
    audited: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "audit.log"
    path.rename(tmp_path / "audit.log.1")
    path.mkdir()
    audited.process.send_signal(signal.SIGHUP)
    await logged(audited, "cannot reopen the audit log, still writing to the old file")
    job = await started(audited)
    assert started_jobs(tmp_path / "audit.log.1") == [job]
    path.rmdir()
    audited.process.send_signal(signal.SIGHUP)
    await logged(audited, "SIGHUP: reloading audit log", count=2)
    job = await started(audited)
    assert started_jobs(path) == [job]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_full_disk_fails_open_logs_the_line_and_writes_the_gap_later(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with mounted_tmpfs(tmp_path / "small", "256k") as small:
        path = small / "audit.log"
        cli = await launch(pki, tmp_path / "state", nursery, "--audit-log", path)
        try:
            # Full before the first line: tmpfs has no page for it, so nothing of it lands.
            filler = small / "filler"
            fill(filler)
            lost = await started(cli)  # answered all the same
            await logged(cli, "cannot write (No space left on device)")
            line = next(line for line in cli.log if "cannot write" in line)
            assert f'"job_id":"{lost}"' in line  # the line, in the server's log instead
            assert path.read_bytes() == b""
            filler.unlink()
            job = await started(cli)
            gap, start = events(path)
            assert (gap["event"], gap["lost"], gap["result"]) == ("audit-gap", 1, "failed")
            assert list(gap)[:3] == ["time", "event", "result"]
            assert (gap["user"], gap["peer"], gap["job_id"]) == (None, None, None)
            assert "No space left on device" in gap["reason"]
            assert (start["event"], start["job_id"]) == ("start", job)
        finally:
            await stop_server(cli.process)


async def test_log_format_json_makes_every_line_of_the_servers_log_a_json_object(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    cli = await launch(pki, tmp_path / "state", nursery, "--log-format", "json")
    try:
        await started(cli)
        assert (await cli.jog("status", "not-a-job")).returncode == 1  # a refusal: its line
    finally:
        await stop_server(cli.process)
    records = [json.loads(line) for line in cli.log if line]
    assert records
    for record in records:
        assert list(record)[:4] == ["time", "level", "logger", "message"]
        assert record["time"].endswith("Z")
    messages = [record["message"] for record in records]
    assert any(message.startswith("listening on 127.0.0.1:") for message in messages)
    assert any("method=/jogger.v1.Jobs/Start" in message for message in messages)
    assert messages[-1] == "shut down"


async def refused_to_start(pki: Pki, tmp_path: Path, audit_log: Path) -> str:
    """Run jogger-server with ``--audit-log audit_log``, which must refuse it; the last
    line of its stderr."""
    with trio.fail_after(30):
        done = await trio.run_process(
            [
                *(BIN / "jogger-server", "--listen", "127.0.0.1:0"),
                *("--state-dir", tmp_path / "state", "--audit-log", audit_log),
            ],
            env=server_env(pki),
            stdin=subprocess.DEVNULL,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def nothing(path: Path) -> None:
    pass


def directory(path: Path) -> None:
    path.mkdir(parents=True)


def symlink(path: Path) -> None:
    path.parent.mkdir()
    path.symlink_to(path.parent / "elsewhere")


def hard_link(path: Path) -> None:
    path.parent.mkdir()
    path.write_bytes(b"")
    (path.parent / "other").hardlink_to(path)


def fifo(path: Path) -> None:
    path.parent.mkdir()
    os.mkfifo(path)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (nothing, "its directory does not exist"),
        (directory, "it is a directory"),
        (symlink, "it is a symbolic link"),
        (hard_link, "it has 2 hard links; it must have one"),
        (fifo, "it is not a regular file"),
    ],
)
async def test_an_unusable_audit_log_path_is_one_clear_error_and_no_server(
    pki: Pki, tmp_path: Path, make: Callable[[Path], None], why: str
) -> None:
    path = tmp_path / "logs" / "audit.log"
    make(path)
    line = await refused_to_start(pki, tmp_path, path)
    assert line == f"jogger-server: error: --audit-log {path}: {why}"
    assert not (tmp_path / "state").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
async def test_an_audit_log_owned_by_another_user_is_refused(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"")
    os.chown(path, 65534, 65534)
    line = await refused_to_start(pki, tmp_path, path)
    assert line == (
        f"jogger-server: error: --audit-log {path}: it is owned by uid 65534, "
        "not by the server (uid 0)"
    )
