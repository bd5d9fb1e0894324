"""Names and labels through the real server and the real jog: shown by status, --json and
list; bad ones refused before any job exists; and list's filters (--label, --state,
--name) applied by the server, so that paging through 1,000 jobs gives each matching job
exactly once, in order."""

import json
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from jogger import JobState, JobStatus
from jogger.engine.request import StartRequest, encode
from jogger.engine.rows import ProcessIdentity
from jogger.engine.store import JobStore
from jogger.rpc.client import JobsClient, open_client
from jogger.rpc.errors import RpcError, StatusCode
from jogger.v1 import jobs_pb2
from tests.e2e.conftest import Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki

NOBODY = ProcessIdentity(0, 0, "")


def error_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


async def test_name_and_labels_show_in_status_json_and_list(cli: Cli) -> None:
    job = job_id_of(
        await cli.jog(
            "start",
            "--name",
            "nightly build",
            "--label",
            "team=ml",
            "--label",
            "ci.example.com/run=42",
            "--label",
            "note=it's here",
            "--label",
            "empty=",
            "--",
            "sleep",
            "300",
        )
    )
    plain = job_id_of(await cli.jog("start", "--", "true"))
    shown = (await cli.jog("status", job)).stdout.decode().splitlines()
    assert shown[:2] == [f"job:     {job}", "name:    nightly build"]
    # In key order, each as a shell would read it back as a --label.
    assert "labels:  ci.example.com/run=42 empty= 'note=it'\"'\"'s here' team=ml" in shown
    as_json = json.loads((await cli.jog("status", "--json", job)).stdout)
    assert as_json["name"] == "nightly build"
    assert as_json["labels"] == {
        "ci.example.com/run": "42",
        "empty": "",
        "note": "it's here",
        "team": "ml",
    }
    unnamed = json.loads((await cli.jog("status", "--json", plain)).stdout)
    assert (unnamed["name"], unnamed["labels"]) == (None, {})
    plain_block = (await cli.jog("status", plain)).stdout.decode()
    assert "name:" not in plain_block
    assert "labels:" not in plain_block
    table = (await cli.jog("list")).stdout.decode().splitlines()
    assert table[0].split()[:4] == ["JOB", "ID", "NAME", "STATE"]
    row = next(line for line in table if line.startswith(job))
    assert row.split()[1:4] == ["nightly", "build", "running"]
    assert next(line for line in table if line.startswith(plain)).split()[1] == "-"
    listed = json.loads((await cli.jog("list", "--json")).stdout)
    assert [(j["name"], j["labels"]) for j in listed] == [
        (None, {}),
        ("nightly build", as_json["labels"]),
    ]
    # Kept on record: the same once the job has ended.
    assert (await cli.jog("stop", "--grace", "0", job)).returncode == 0
    ended = json.loads((await cli.jog("status", "--json", job)).stdout)
    assert ended["state"] in ("stopped", "killed")
    assert (ended["name"], ended["labels"]) == ("nightly build", as_json["labels"])


async def test_a_restarted_server_keeps_names_and_labels(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await launch(pki, tmp_path / "state", nursery)
    try:
        running = job_id_of(
            await server.jog("start", "--name", "keeps", "--label", "a=1", "--", "sleep", "300")
        )
        done = job_id_of(await server.jog("start", "--label", "b=2", "--", "true"))
    finally:
        await stop_server(server.process)
    again = await launch(pki, tmp_path / "state", nursery)
    try:
        for job, name, labels in ((running, "keeps", {"a": "1"}), (done, None, {"b": "2"})):
            status = json.loads((await again.jog("status", "--json", job)).stdout)
            assert (status["name"], status["labels"]) == (name, labels)
        found = await again.jog("list", "--ids", "--label", "b=2")
        assert found.stdout.decode().split() == [done]
    finally:
        await stop_server(again.process)


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--label", "bad key=1"], 1, "jog: error: bad label key 'bad key': a key is 1 to 63"),
        (["--label=-x=1"], 1, "jog: error: bad label key '-x': a key is 1 to 63"),
        (["--label", "Ex.com/k=1"], 1, "jog: error: bad label key 'Ex.com/k': its prefix"),
        (["--label", "k" * 64 + "=1"], 1, "jog: error: bad label key 'kkkk"),
        (["--label", "k=" + "v" * 257], 1, "jog: error: the value of label k takes 257 bytes"),
        (["--label", "k=a\tb"], 1, "jog: error: the value of label k must be printable"),
        (["--name", "n" * 129], 1, "jog: error: a job's name takes 129 bytes; at most 128"),
        (["--name", "two\nlines"], 1, "jog: error: a job's name must be printable"),
        (
            [arg for i in range(33) for arg in ("--label", f"k{i}=v")],
            1,
            "jog: error: a job may have at most 32 labels, not 33",
        ),
        # Malformed on jog's side: a usage error, and no call at all.
        (["--label", "novalue"], 2, "jog: error: argument --label: 'novalue' is not KEY=VALUE"),
        (["--label", "=v"], 2, "jog: error: argument --label: '=v' is not KEY=VALUE"),
        (
            ["--label", "k=1", "--label", "k=2"],
            2,
            "jog: error: argument --label: the label 'k' is given twice",
        ),
    ],
)
async def test_bad_names_and_labels_are_refused_and_start_no_job(
    cli: Cli, options: list[str], code: int, message: str
) -> None:
    for command in ("start", "run"):
        result = await cli.jog(command, *options, "--", "true")
        assert result.returncode == code, result.stderr
        (line,) = error_lines(result)  # one line, no traceback
        assert line.startswith(message)
        assert len(line) < 300  # the bad value is cut short
    assert (await cli.jog("list", "--ids")).stdout == b""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--label", "bad key=1"], "jog: error: bad label key 'bad key'"),
        (["--name", "ends\\"], "jog: error: a name pattern must not end in a lone \\"),
        (["--state", "sleeping"], "jog: error: argument --state: 'sleeping' is not a state"),
        (["--state", "running,"], "jog: error: argument --state: '' is not a state"),
        (["--label", "k"], "jog: error: argument --label: 'k' is not KEY=VALUE"),
    ],
)
async def test_bad_list_filters_are_refused(cli: Cli, options: list[str], message: str) -> None:
    result = await cli.jog("list", *options)
    assert result.returncode in (1, 2)
    (line,) = error_lines(result)
    assert line.startswith(message)


@dataclass(frozen=True)
class Made:
    """A job put on record for the paging test, with what the filters look at."""

    id: str
    owner: str
    state: JobState
    name: str
    labels: dict[str, str]


FINAL = [JobState.COMPLETED, JobState.FAILED, JobState.STOPPED, JobState.KILLED]


def made(i: int) -> Made:
    """Job ``i`` of the history: two owners, and labels, states and names that each pick a
    different share of it (a quarter, a third, one in 97, none)."""
    labels = {"batch": str(i % 4), "shard": f"s{i % 3}"}
    if i % 97 == 0:
        labels["rare"] = "yes"
    return Made(
        id=f"00000000-0000-4000-8000-{i:012d}",
        owner="alice" if i % 5 else "bob",
        state=FINAL[(i // 2) % 4],
        name=f"job-{i}" if i % 2 else ("" if i % 4 else f"x[{i}]*"),
        labels=labels,
    )


async def record_history(state_dir: Path, n: int) -> list[Made]:
    """``n`` ended jobs on record, oldest first, written through the engine's store (the
    start path is covered elsewhere; this keeps the test fast on a loaded machine)."""
    await trio.Path(state_dir).mkdir(mode=0o700)
    await trio.Path(state_dir / "logs").mkdir(mode=0o700)
    history = [made(i) for i in range(n)]
    store = JobStore(state_dir / "jobs.db")
    await store.open()
    try:
        began = datetime.now(UTC) - timedelta(hours=1)
        for i, job in enumerate(history):
            start = JobStatus(
                id=job.id,
                owner=job.owner,
                argv=("true",),
                state=JobState.RUNNING,
                pid=1,
                started_at=began + timedelta(seconds=i),
                name=job.name,
                labels=job.labels,
            )
            await store.record_start(start, NOBODY, NOBODY, encode(StartRequest()))
        async with trio.open_nursery() as nursery:
            for i, job in enumerate(history):
                end = JobStatus(
                    id=job.id,
                    owner=job.owner,
                    argv=("true",),
                    state=job.state,
                    pid=1,
                    started_at=began + timedelta(seconds=i),
                    ended_at=began + timedelta(seconds=i + 0.5),
                    exit_code=0 if job.state is JobState.COMPLETED else None,
                    signal=None if job.state is JobState.COMPLETED else 15,
                )
                nursery.start_soon(store.record_end, end)
    finally:
        await store.close()
    return history


@asynccontextmanager
async def client_of(cli: Cli, user: str) -> AsyncIterator[JobsClient]:
    pair = cli.pki.user(user)
    async with open_client(
        "localhost", cli.port, ca=cli.pki.ca, cert=pair.cert, key=pair.key
    ) as client:
        yield client


async def pages(client: JobsClient, size: int, token: str = "", **filters: Any) -> list[str]:
    """Every page from ``token`` on, each checked to hold ``size`` jobs but the last."""
    found: list[str] = []
    while True:
        page = await client.list_page(page_size=size, page_token=token, **filters)
        token = page.next_page_token
        assert len(page.jobs) == size or not token, (len(page.jobs), token)
        found += [job.job_id for job in page.jobs]
        if not token:
            return found


Wanted = Callable[[Made], bool]
WIRE = {
    JobState.COMPLETED: jobs_pb2.JOB_STATE_COMPLETED,
    JobState.FAILED: jobs_pb2.JOB_STATE_FAILED,
    JobState.STOPPED: jobs_pb2.JOB_STATE_STOPPED,
    JobState.KILLED: jobs_pb2.JOB_STATE_KILLED,
    JobState.RUNNING: jobs_pb2.JOB_STATE_RUNNING,
}


async def test_filters_page_exactly_over_1000_jobs(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    history = await record_history(tmp_path / "state", 1000)
    cli = await launch(pki, tmp_path / "state", nursery)
    try:
        live = job_id_of(
            await cli.jog("start", "--name", "job-live", "--label", "batch=1", "--", "sleep", "300")
        )
        history.append(Made(live, "alice", JobState.RUNNING, "job-live", {"batch": "1"}))
        newest_first = history[::-1]

        def expected(owner: str | None, wanted: Wanted) -> list[str]:
            return [j.id for j in newest_first if owner in (None, j.owner) and wanted(j)]

        cases: list[tuple[dict[str, Any], Wanted]] = [
            ({}, lambda j: True),
            ({"labels": {"batch": "1"}}, lambda j: j.labels.get("batch") == "1"),
            (
                {"labels": {"batch": "2", "shard": "s0"}},
                lambda j: j.labels.get("batch") == "2" and j.labels.get("shard") == "s0",
            ),
            ({"labels": {"rare": "yes"}}, lambda j: "rare" in j.labels),
            ({"labels": {"batch": "9"}}, lambda j: False),
            ({"labels": {"nokey": "1"}}, lambda j: False),
            ({"states": [WIRE[JobState.FAILED]]}, lambda j: j.state is JobState.FAILED),
            (
                {"states": [WIRE[JobState.KILLED], WIRE[JobState.RUNNING]]},
                lambda j: j.state in (JobState.KILLED, JobState.RUNNING),
            ),
            ({"name": "job-1?"}, lambda j: j.name in {f"job-1{d}" for d in range(10)}),
            ({"name": "*"}, lambda j: j.name != ""),
            # Literal wildcards: the names x[N]* of every fourth job.
            ({"name": "x[*\\*"}, lambda j: j.name.startswith("x[")),
            (
                {
                    "labels": {"shard": "s1"},
                    "states": [WIRE[JobState.STOPPED], WIRE[JobState.COMPLETED]],
                    "name": "job-*7",
                },
                lambda j: (
                    j.labels.get("shard") == "s1"
                    and j.state in (JobState.STOPPED, JobState.COMPLETED)
                    and j.name.startswith("job-")
                    and j.name.endswith("7")
                ),
            ),
        ]
        async with client_of(cli, "alice") as alice, client_of(cli, "root") as root:
            for filters, wanted in cases:
                want = expected("alice", wanted)
                for size in (37, 1000):
                    assert await pages(alice, size, **filters) == want, (filters, size)
                everyone = expected(None, wanted)
                assert await pages(root, 50, all_users=True, **filters) == everyone, filters
            # A token is a place in the history: with other filters it goes on from there.
            first = await alice.list_page(page_size=3, labels={"rare": "yes"})
            token = first.next_page_token
            place = int(token)
            assert [j.job_id for j in first.jobs] == expected(
                "alice", lambda j: "rare" in j.labels
            )[:3]
            # The store's seqs count from 1, in the order the history was written.
            failed_after = [
                j.id
                for seq, j in reversed(list(enumerate(history, 1)))
                if seq < place and j.owner == "alice" and j.state is JobState.FAILED
            ]
            assert await pages(alice, 25, token, states=[WIRE[JobState.FAILED]]) == failed_after
        # jog itself: --ids and --json take the same filters, and --limit the newest.
        ids = await cli.jog(
            "list", "--ids", "--limit", "0", "--label", "batch=1", "--state", "failed,running"
        )
        assert ids.stdout.decode().split() == expected(
            "alice",
            lambda j: (
                j.labels.get("batch") == "1" and j.state in (JobState.FAILED, JobState.RUNNING)
            ),
        )
        named = await cli.jog(
            "list", "--json", "--limit", "7", "--name", "job-*", "--state", "completed"
        )
        assert [j["job_id"] for j in json.loads(named.stdout)] == expected(
            "alice", lambda j: j.name.startswith("job-") and j.state is JobState.COMPLETED
        )[:7]
        assert "showing the newest 7 jobs" in named.stderr.decode()
        bob = await cli.jog("list", "--ids", "--limit", "0", "--label", "rare=yes", user="bob")
        assert bob.stdout.decode().split() == expected("bob", lambda j: "rare" in j.labels)
        # A state filter is about the state now: the live job leaves "running" when stopped.
        assert (await cli.jog("list", "--ids", "--state", "running")).stdout.decode().split() == [
            live
        ]
        assert (await cli.jog("stop", "--grace", "0", live)).returncode == 0
        assert (await cli.jog("list", "--ids", "--state", "running")).stdout == b""
        ended = await cli.jog(
            "list", "--ids", "--limit", "1", "--state", "stopped,killed", "--label", "batch=1"
        )
        assert ended.stdout.decode().split() == [live]
    finally:
        await stop_server(cli.process)


async def test_huge_label_maps_and_patterns_are_refused_at_once(cli: Cli) -> None:
    many = {f"k{i}": "v" for i in range(50_000)}
    async with client_of(cli, "alice") as alice:
        with trio.fail_after(10):
            with pytest.raises(RpcError) as start:
                await alice.start(["true"], labels=many)
            with pytest.raises(RpcError) as listing:
                await alice.list_page(labels=many)
            with pytest.raises(RpcError) as pattern:
                await alice.list_page(name="*" * 300_000)
            with pytest.raises(RpcError) as state:
                await alice.list_page(states=[jobs_pb2.JOB_STATE_UNSPECIFIED])
        assert start.value.code == StatusCode.INVALID_ARGUMENT
        assert start.value.message == "a job may have at most 32 labels, not 50000"
        assert listing.value.code == StatusCode.INVALID_ARGUMENT
        assert pattern.value.code == StatusCode.INVALID_ARGUMENT
        assert len(pattern.value.message) < 200
        assert (state.value.code, state.value.message) == (
            StatusCode.INVALID_ARGUMENT,
            "unknown job state 0 in a list's filter",
        )
        assert (await alice.list_page()).jobs == []
