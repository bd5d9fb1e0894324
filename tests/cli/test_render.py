"""How jog shows a status: the block of `jog status` and the records of `--json`."""

from jogger.cli import render
from jogger.v1 import jobs_pb2


def status(run_as: jobs_pb2.Account | None = None) -> jobs_pb2.JobStatus:
    message = jobs_pb2.JobStatus(
        job_id="5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e",
        owner="alice",
        argv=["true"],
        state=jobs_pb2.JOB_STATE_COMPLETED,
        exit_code=0,
        cgroup="none",
        run_as=run_as,
    )
    message.started_at.FromSeconds(1_700_000_000)
    return message


def test_the_account_a_job_ran_as_follows_its_owner() -> None:
    shown = render.block(status(run_as=jobs_pb2.Account(name="nobody", uid=65534)))
    assert shown.splitlines()[:4] == [
        "job:     5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e",
        "owner:   alice",
        "run as:  nobody (uid 65534)",
        "command: true",
    ]


def test_root_is_shown_as_uid_0_not_as_unknown() -> None:
    shown = render.block(status(run_as=jobs_pb2.Account(name="root", uid=0)))
    assert "run as:  root (uid 0)" in shown.splitlines()


def test_without_an_account_there_is_no_run_as_line() -> None:
    shown = render.block(status())
    assert [line.split(":")[0] for line in shown.splitlines()] == [
        "job",
        "owner",
        "command",
        "state",
        "started",
        "ended",
        "output",
        "cgroup",
        "limits",
        "usage",
    ]


def test_json_has_the_account_or_null() -> None:
    known = render.as_dict(status(run_as=jobs_pb2.Account(name="nobody", uid=65534)))
    assert known["run_as"] == {"name": "nobody", "uid": 65534}
    assert render.as_dict(status())["run_as"] is None
    root = render.as_dict(status(run_as=jobs_pb2.Account(name="root", uid=0)))
    assert root["run_as"] == {"name": "root", "uid": 0}
