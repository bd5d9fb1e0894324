"""How jog shows a status: the block of `jog status`, the table of `jog list` and the records
of `--json`."""

from datetime import UTC, datetime

from jogger.cli import render
from jogger.cli.commands.start import started
from jogger.engine.status import JobState, JobStatus
from jogger.server.service import status_to_proto
from jogger.v1 import jobs_pb2
from tests.cli.test_isolation_options import ALL


def status(
    run_as: jobs_pb2.Account | None = None, isolation: jobs_pb2.Isolation | None = None
) -> jobs_pb2.JobStatus:
    message = jobs_pb2.JobStatus(
        job_id="5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e",
        owner="alice",
        argv=["true"],
        state=jobs_pb2.JOB_STATE_COMPLETED,
        exit_code=0,
        cgroup="none",
        run_as=run_as,
        isolation=isolation,
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
        "timeout",
        "isolate",
        "usage",
    ]


def test_json_has_the_account_or_null() -> None:
    known = render.as_dict(status(run_as=jobs_pb2.Account(name="nobody", uid=65534)))
    assert known["run_as"] == {"name": "nobody", "uid": 65534}
    assert render.as_dict(status())["run_as"] is None
    root = render.as_dict(status(run_as=jobs_pb2.Account(name="root", uid=0)))
    assert root["run_as"] == {"name": "root", "uid": 0}


ISOLATED = jobs_pb2.Isolation(namespaces=ALL, read_only_root=True, hostname="jog-5b4c1f5e")


def isolate_line(shown: str) -> str:
    [line] = [line for line in shown.splitlines() if line.startswith("isolate:")]
    return line


def test_the_isolation_in_force_is_a_line_of_the_status() -> None:
    assert isolate_line(render.block(status(isolation=ISOLATED))) == (
        "isolate: pid,mount,net,ipc,uts; hostname jog-5b4c1f5e; read-only root"
    )
    some = jobs_pb2.Isolation(namespaces=[jobs_pb2.NAMESPACE_PID, jobs_pb2.NAMESPACE_NET])
    assert isolate_line(render.block(status(isolation=some))) == "isolate: pid,net"
    assert isolate_line(render.block(status(isolation=jobs_pb2.Isolation()))) == "isolate: none"
    # A server before isolation sends none: its jobs had none.
    assert isolate_line(render.block(status())) == "isolate: none"


def test_a_hostname_is_shown_escaped() -> None:
    odd = jobs_pb2.Isolation(namespaces=[jobs_pb2.NAMESPACE_UTS], hostname="jog-\x1b[2J")
    assert (
        isolate_line(render.block(status(isolation=odd))) == "isolate: uts; hostname jog-\\x1b[2J"
    )


def test_json_has_the_isolation() -> None:
    assert render.as_dict(status(isolation=ISOLATED))["isolation"] == {
        "namespaces": ["pid", "mount", "net", "ipc", "uts"],
        "read_only_root": True,
        "hostname": "jog-5b4c1f5e",
    }
    none = {"namespaces": [], "read_only_root": False, "hostname": None}
    assert render.as_dict(status(isolation=jobs_pb2.Isolation()))["isolation"] == none
    assert render.as_dict(status())["isolation"] == none
    newer = jobs_pb2.Isolation(namespaces=[jobs_pb2.NAMESPACE_PID, 9])  # type: ignore[list-item]
    assert render.as_dict(status(isolation=newer))["isolation"] == {
        "namespaces": ["pid", "namespace-9"],
        "read_only_root": False,
        "hostname": None,
    }


def test_the_list_has_a_column_of_kinds() -> None:
    some = jobs_pb2.Isolation(namespaces=[jobs_pb2.NAMESPACE_MOUNT], read_only_root=True)
    shown = render.table(
        [status(isolation=ISOLATED), status(isolation=some), status()], owners=False
    ).splitlines()
    assert shown[0].split() == ["JOB", "ID", "STATE", "ENDING", "STARTED", "ISOLATE", "COMMAND"]
    assert [line.split()[-2] for line in shown[1:]] == [
        "all,read-only-root",
        "read-only-root",
        "-",
    ]
    with_owners = render.table([status(isolation=ISOLATED)], owners=True).splitlines()
    assert with_owners[0].split()[-3:] == ["OWNER", "ISOLATE", "COMMAND"]
    assert with_owners[1].split()[-3:] == ["alice", "all,read-only-root", "true"]


def test_the_timeout_shows_its_deadline_and_while_running_the_time_left() -> None:
    message = status()
    message.timeout.FromSeconds(900)
    message.deadline.FromSeconds(1_700_000_900)
    assert render.timeout_text(message) == "15m, deadline 2023-11-14T22:28:20.000Z"
    message.state = jobs_pb2.JOB_STATE_RUNNING
    now = datetime.fromtimestamp(1_700_000_001, UTC)
    assert render.timeout_text(message, now) == (
        "15m, deadline 2023-11-14T22:28:20.000Z (14m59s left)"
    )
    later = datetime.fromtimestamp(1_700_001_000, UTC)
    assert render.timeout_text(message, later).endswith(" (passed)")
    record = render.as_dict(message)
    assert (record["timeout_seconds"], record["deadline"]) == (900.0, "2023-11-14T22:28:20.000Z")


def test_a_job_without_a_timeout_shows_none() -> None:
    assert render.timeout_text(status()) == "none"
    assert (render.as_dict(status())["timeout_seconds"], render.as_dict(status())["deadline"]) == (
        None,
        None,
    )


def test_names_and_labels_from_a_hostile_server_are_shown_escaped() -> None:
    # A server that keeps no bounds (ours refuses control characters) cannot redraw the
    # terminal or forge lines through a name or a label.
    message = status()
    message.name = "evil\x1b]0;pwned\x07\nstate:   completed"
    message.labels["k"] = "v\nlabels:  forged=1"
    message.labels["\u202etxt"] = "x y"
    shown = render.block(message).splitlines()
    assert shown[1] == "name:    evil\\x1b]0;pwned\\x07\\nstate:   completed"
    assert shown[4] == "labels:  $'k=v\\nlabels:  forged=1' $'\\u202etxt=x y'"
    assert len(shown) == len(render.block(status()).splitlines()) + 2
    table = render.table([message], owners=False).splitlines()
    assert len(table) == 2
    # Cut to 32 characters, then escaped.
    assert "  evil\\x1b]0;pwned\\x07\\nstate:   compl...  completed  " in table[1]
    assert render.as_dict(message)["name"] == message.name
    assert render.as_dict(message)["labels"] == {
        "k": "v\nlabels:  forged=1",
        "\u202etxt": "x y",
    }


def test_a_table_without_names_has_no_name_column() -> None:
    header = render.table([status()], owners=False).splitlines()[0]
    assert "NAME" not in header


def test_a_queued_job_shows_its_timeout_and_no_deadline_until_it_leaves_the_queue() -> None:
    queued_at = datetime.fromtimestamp(1_700_000_000, UTC)
    for position in (2, 0):  # 0: at the head, being started
        queued = status_to_proto(
            JobStatus(
                id="5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e",
                owner="alice",
                argv=("true",),
                state=JobState.QUEUED,
                pid=0,
                started_at=queued_at,
                reason="capacity",
                timeout=900.0,
                queue_position=position,
            )
        )
        assert render.timeout_text(queued) == "15m"
        assert not queued.HasField("deadline")
        assert "\nqueued:  2023-11-14T22:13:20.000Z\n" in render.block(queued)
        assert started(queued).startswith(f"queued: {queued.job_id} (")
    # A Slurm job waiting for the cluster has started on our side: its deadline runs.
    waiting = status_to_proto(
        JobStatus(
            id="5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e",
            owner="alice",
            argv=("true",),
            state=JobState.QUEUED,
            pid=0,
            started_at=queued_at,
            reason="Priority",
            timeout=900.0,
        )
    )
    assert render.timeout_text(waiting).startswith("15m, deadline 2023-11-14T22:28:20.000Z")
    assert started(waiting) == f"started: {waiting.job_id}"
