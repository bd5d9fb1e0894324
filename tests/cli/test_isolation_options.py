"""jog's --isolate[=KINDS], --network and --read-only-root: what jog start and jog run ask
the server for, and the usage errors, all before any connection is tried."""

import argparse
import re

import pytest

from jogger.cli import isolate
from jogger.cli.commands.start import isolation_message
from jogger.cli.main import UsageError, parse
from jogger.engine import InvalidRequest, Isolation
from jogger.v1 import jobs_pb2
from tests.cli.test_input_options import jog

ALL = [
    jobs_pb2.NAMESPACE_PID,
    jobs_pb2.NAMESPACE_MOUNT,
    jobs_pb2.NAMESPACE_NET,
    jobs_pb2.NAMESPACE_IPC,
    jobs_pb2.NAMESPACE_UTS,
]


def asked(*words: str) -> tuple[jobs_pb2.Isolation | None, str | None]:
    """The isolation message and the network of ``jog WORDS -- true``."""
    args = parse(list(words), ["true"])
    return isolation_message(args), args.network


def isolation(*namespaces: jobs_pb2.Namespace, read_only_root: bool = False) -> jobs_pb2.Isolation:
    return jobs_pb2.Isolation(namespaces=namespaces, read_only_root=read_only_root)


@pytest.mark.parametrize("command", ["start", "run"])
def test_without_the_options_the_server_decides(command: str) -> None:
    assert asked(command) == (None, None)


@pytest.mark.parametrize(
    "words",
    [
        ["run", "--isolate"],
        ["run", "--isolate", "-n"],
        ["start", "--isolate", "-t"],
        ["run", "--iso", "--cwd", "/"],
        ["start", "--isolate=all"],
        ["run", "--isolate=pid,mount,net,ipc,uts"],
    ],
)
def test_a_bare_isolate_asks_for_every_namespace_and_takes_no_value(words: list[str]) -> None:
    assert asked(*words) == (isolation(*ALL), None)


def test_isolate_with_kinds_asks_for_those() -> None:
    assert asked("run", "--isolate=pid,net") == (
        isolation(jobs_pb2.NAMESPACE_PID, jobs_pb2.NAMESPACE_NET),
        None,
    )
    assert asked("start", "--isolate=uts, pid") == (
        isolation(jobs_pb2.NAMESPACE_PID, jobs_pb2.NAMESPACE_UTS),
        None,
    )


def test_isolate_none_asks_for_none_explicitly() -> None:
    message, _ = asked("run", "--isolate=none")
    assert message == jobs_pb2.Isolation()
    request = jobs_pb2.StartRequest(isolation=message)
    assert request.HasField("isolation")  # present: not the server's default


def test_the_read_only_root_alone_or_with_kinds() -> None:
    # Alone, it goes over the server's default isolation (its own field), not instead of it.
    assert asked("run", "--read-only-root") == (None, None)
    assert parse(["run", "--read-only-root"], ["true"]).read_only_root
    assert not parse(["run"], ["true"]).read_only_root
    assert asked("run", "--isolate=read-only-root") == (isolation(read_only_root=True), None)
    assert asked("start", "--isolate=pid", "--read-only-root") == (
        isolation(jobs_pb2.NAMESPACE_PID),
        None,
    )
    assert asked("run", "--isolate=all,read-only-root") == (
        isolation(*ALL, read_only_root=True),
        None,
    )


def test_network_alone_leaves_the_isolation_to_the_server() -> None:
    assert asked("run", "--network", "none") == (None, "none")
    assert asked("start", "--network=host") == (None, "host")
    assert asked("run", "--isolate", "--network", "host") == (isolation(*ALL), "host")


def test_the_last_isolate_wins() -> None:
    assert asked("run", "--isolate=pid", "--isolate") == (isolation(*ALL), None)


@pytest.mark.parametrize(
    ("words", "told"),
    [
        (["run", "--isolate=bogus"], "argument --isolate: unknown isolation 'bogus': pick from"),
        (["run", "--isolate=none,pid"], "unknown isolation 'none'"),
        (["start", "--isolate="], "--isolate= needs KINDS (none for no isolation)"),
        (["run", "--network", "lan"], "argument --network: invalid choice: 'lan'"),
        (
            ["start", "--isolate=none", "--read-only-root"],
            "--read-only-root needs a mount namespace, and --isolate=none asks for none",
        ),
    ],
)
def test_bad_isolation_options_are_usage_errors(words: list[str], told: str) -> None:
    with pytest.raises(UsageError, match=re.escape(told)):
        parse(words, ["true"])


@pytest.mark.parametrize(
    ("args", "told"),
    [
        (
            ["run", "--isolate=bogus", "--", "ls"],
            "jog: error: argument --isolate: unknown isolation 'bogus': pick from all, none, "
            "pid, mount, net, ipc, uts or read-only-root (see: jog run --help)",
        ),
        (
            ["run", "--isolate", "ls", "-l"],
            "jog: error: the job's command goes after --: jog run --isolate -- ls -l",
        ),
        (
            ["start", "--isolate", "pid,net", "--", "ls"],
            "jog: error: --isolate takes KINDS after an = (--isolate=pid,net); alone it asks "
            "for every namespace",
        ),
        (
            ["status", "--isolate", "ID"],
            "jog: error: unrecognized arguments: --isolate (see: jog status --help)",
        ),
    ],
)
def test_the_real_jog_says_what_is_wrong_in_one_line_before_connecting(
    args: list[str], told: str
) -> None:
    result = jog(*args)
    assert (result.returncode, result.stderr) == (2, told + "\n")


def test_help_names_the_isolation_options() -> None:
    for command in ("start", "run"):
        shown = jog(command, "--help").stdout
        assert "--isolate [KINDS]" in shown
        assert "--network {none,host}" in shown
        assert "--read-only-root" in shown


@pytest.mark.parametrize(
    "text",
    [
        "all",
        "none",
        "pid",
        "pid,net",
        " uts , ipc ",
        "mount,pid,mount",
        "read-only-root",
        "all,read-only-root",
        "net,read-only-root",
        "bogus",
        "pid,bogus",
        "none,pid",
        "pid,none",
        "All",
        "x" * 100,
    ],
)
def test_jog_reads_kinds_as_the_server_does(text: str) -> None:
    # jog does not import the engine: its parser must agree with Isolation.parse, which
    # reads the server's --isolate-default and --require-isolation.
    server: Isolation | str
    try:
        server = Isolation.parse(text)
    except InvalidRequest as refused:
        server = str(refused)
    mine: isolate.Asked | str
    try:
        mine = isolate.parse(text)
    except ValueError as error:
        mine = str(error)
    if isinstance(server, str) or isinstance(mine, str):
        assert mine == server
    else:
        with_mount = mine.namespaces | ({"mount"} if mine.read_only_root else set())
        assert (with_mount, mine.read_only_root) == (frozenset(server.kinds), server.read_only_root)


def test_kinds_are_shown_as_kinds_shortest() -> None:
    assert isolate.text(isolate.KINDS, False) == "all"
    assert isolate.text(isolate.KINDS, True) == "all,read-only-root"
    assert isolate.text(["net", "pid"], False) == "pid,net"
    assert isolate.text(["mount"], True) == "read-only-root"  # which implies mount
    assert isolate.text(["mount", "uts"], False) == "mount,uts"
    assert isolate.text([], False) == ""
    assert isolate.text(["pid", "namespace-9"], False) == "pid,namespace-9"


def test_the_options_are_for_start_and_run_only() -> None:
    assert isolate.with_values(["status", "--isolate"]) == ["status", "--isolate"]
    assert isolate.with_values(["run", "--is", "--i"]) == ["run", "--isolate=all", "--i"]
    args = parse(["status", "ID"], [])
    assert not hasattr(args, "isolate")
    assert isinstance(args, argparse.Namespace)
