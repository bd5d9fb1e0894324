"""``jog``: start, stop, query and stream jobs on a jogger server.

Parsing is kept apart from running, and the heavy imports (trio, TLS, protobuf) happen only
once a command is known to need them: start-up time is what users feel.
"""

import argparse
import functools
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

from .._text import escape
from .._version import VersionAction
from . import arg_types, completion_args, isolate, label_args, stdout, wait_args, window_args
from .detach import DETACH_KEYS
from .exits import CliError, Exit

T = TypeVar("T", int, float)

ONE_SHOT = frozenset({"status", "start", "stop", "list", "restart"})
"""Commands that make a unary call or two on one server: they run on the blocking client,
without trio's import (cli/oneshot.py)."""

DEFAULT_RECONNECT_TIMEOUT = 60.0

ENVIRONMENT = """\
connection settings (environment):
  JOGGER_HOST            server address, host:port (default localhost:7654; --host wins)
  JOGGER_CA_CERT_FILE    CA certificate that signed the server's certificate
  JOGGER_USER_CERT_FILE  your user certificate (its Common Name is your user name)
  JOGGER_USER_KEY_FILE   your private key
  JOGGER_CONTEXT         the context to use (--context wins): each setting it names
                         counts where the variable above is not set

contexts: [contexts.NAME] tables of host, ca, cert and key, and current-context, in
  $XDG_CONFIG_HOME/jogger/config.toml (~/.config/jogger/config.toml); see jog context

exit codes:
  0    success (for `jog run`: the job's own exit code; 128+N if signal N ended it)
  1    the server refused: unknown job, bad argument, limit reached
  2    usage error, or missing settings
  3    cannot reach the server, or TLS failed (a certificate was rejected), or the
       connection dropped and did not come back within --reconnect-timeout
  124  jog wait --timeout: a job had not ended in time
  130  interrupted by Ctrl-C
  with --hosts: the highest of the hosts' codes (a host that failed counts as above)
  jog wait: the highest of the jobs' codes (as jog run gives them; 1 for a job that
       ended without an exit code or a signal); with --any, that of the job that ended

examples:
  jog start -- make -j4 test       jog output JOB_ID > out.bin
  jog run -- uname -a              jog stop --grace 2 JOB_ID
  jog run -t -- top                jog start -t -- bash; jog attach JOB_ID
  jog --context prod list          jog run --hosts web1,web2,10.0.0.7:7654 -- uptime
  jog wait --timeout 1h ID1 ID2    jog completion bash > /etc/bash_completion.d/jog
"""


QUEUE_HELP = (
    "if the server's job limit is reached, wait in its queue (fair between users, first "
    "come first served for each) rather than fail; the job is queued, with its position"
)


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.USAGE)


@functools.cache
def _terminal_width() -> int:
    """What argparse's help formatter would ask ``shutil.get_terminal_size()`` for, less its
    margin of 2: argparse makes a formatter for every option it adds, and shutil's import
    (bz2, lzma, ...) alone costs every jog start 2.5 ms."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class _Formatter(argparse.HelpFormatter):
    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _terminal_width())


class _RawFormatter(argparse.RawDescriptionHelpFormatter, _Formatter):
    """The top level's: its epilog keeps its lines."""


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line that says where the usage is, not argparse's two; help
    that cannot be written is an error (argparse drops the OSError), see cli/stdout.py.
    Its formatters measure the terminal once (``_terminal_width``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")

    def print_help(self, file: "SupportsWrite[str] | None" = None) -> None:
        (file or sys.stdout).write(self.format_help())


def _job_options() -> argparse.ArgumentParser:
    """What start and run share: the job's working directory, environment, limits, timeout,
    isolation, name and labels."""
    job = _Parser(add_help=False)
    job.add_argument("--cwd", metavar="DIR", help="absolute working directory on the server")
    job.add_argument(
        "--env",
        metavar="NAME=VALUE",
        action="append",
        type=arg_types.env,
        default=[],
        help="add to the job's environment (repeatable)",
    )
    job.add_argument(
        "--cpu", type=arg_types.cores, metavar="CORES", help="CPU limit in cores (0.5)"
    )
    job.add_argument(
        "--cpu-weight", type=arg_types.weight, metavar="W", help="CPU weight, 1-10000 (default 100)"
    )
    job.add_argument(
        "--memory", type=arg_types.size, metavar="SIZE", help="memory limit (256M, 2G)"
    )
    job.add_argument(
        "--io-weight", type=arg_types.weight, metavar="W", help="I/O weight, 1-10000 (default 100)"
    )
    job.add_argument(
        "--pids", type=arg_types.count, metavar="N", help="at most N processes/threads"
    )
    job.add_argument(
        "--timeout",
        type=arg_types.duration,
        metavar="DURATION",
        help="stop the job once it has run this long (90s, 15m, 2h, 1h30m): SIGTERM, the "
        "server's grace, SIGKILL; it ends failed, reason timeout (default: the server's)",
    )
    job.add_argument(
        "--isolate",
        nargs="?",
        const=isolate.ALL,
        type=arg_types.isolation,
        metavar="KINDS",
        help="namespaces of the job's own: alone, all of them; --isolate=KINDS, those named "
        f"({','.join(isolate.KINDS)}), all, none or {isolate.READ_ONLY_ROOT} "
        "(default: the server's)",
    )
    job.add_argument(
        "--network",
        choices=("none", "host"),
        help="none: no network (a net namespace holding only lo); host: the host's "
        "(default: as the isolation says)",
    )
    job.add_argument(
        "--read-only-root",
        action="store_true",
        help="every mount read-only but /dev, /proc, the working directory and the job's "
        "private /tmp (a mount namespace), over the isolation the job gets",
    )
    label_args.add_job_options(job)
    job.add_argument("--queue", action="store_true", help=QUEUE_HELP)
    return job


Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class _Parents:
    """The option sets commands share, each built when a command first asks for it."""

    @functools.cached_property
    def host(self) -> argparse.ArgumentParser:
        host = _Parser(add_help=False)
        host.add_argument("-D", "--host", metavar="HOST:PORT", help="server address")
        # Also after the command; default SUPPRESS, so that it does not undo `jog --context X`.
        host.add_argument(
            "--context",
            default=argparse.SUPPRESS,
            metavar="NAME",
            help="connect as this context says (as jog --context NAME)",
        )
        host.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
        return host

    @functools.cached_property
    def hosts(self) -> argparse.ArgumentParser:
        hosts = _Parser(add_help=False)
        hosts.add_argument(
            "--hosts",
            type=arg_types.host_list,
            metavar="A,B,...",
            help="on each of these hosts at once: a context's name, or host:port (with the "
            "certificates jog would use without --hosts)",
        )
        return hosts

    @functools.cached_property
    def job(self) -> argparse.ArgumentParser:
        return _job_options()

    @functools.cached_property
    def reconnect(self) -> argparse.ArgumentParser:
        reconnect = _Parser(add_help=False)
        reconnect.add_argument(
            "--reconnect-timeout",
            type=arg_types.reconnect_timeout,
            default=DEFAULT_RECONNECT_TIMEOUT,
            metavar="SECONDS",
            help="when the connection drops while following, reconnect for up to this long "
            f"(default {DEFAULT_RECONNECT_TIMEOUT:g}; 0: do not)",
        )
        return reconnect


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """jog's parser. With ``command``, only that command's own options are built; the other
    commands are named, with their help, and take none: what one run of jog needs, at some
    milliseconds less for every start (argparse makes a help formatter per option)."""
    p: argparse.ArgumentParser = _Parser(
        prog="jog",
        description="Run jobs on a remote jogger server. A job is an argv, given after --.",
        epilog=ENVIRONMENT,
        formatter_class=_RawFormatter,
    )
    p.add_argument(
        "--context",
        metavar="NAME",
        help="connect as this context of the config file says (the JOGGER_* variables win)",
    )
    p.add_argument("--version", action=VersionAction)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = _Parents()
    for name, build in COMMANDS.items():
        if command in (None, name):
            build(sub, parents)
        else:
            sub.add_parser(name, help=HELP[name])
    return p


HELP = {
    "start": "start a job: jog start -- cmd [args]",
    "run": "start a job, stream its output, exit with its exit code",
    "attach": f"type into a running job started with -t or -i, and follow it ({DETACH_KEYS} "
    "detaches from a terminal)",
    "restart": "start an ended job again (same command, cwd, env, limits, timeout, name, "
    "labels); prints the new id",
    "stop": "stop a job (SIGTERM, then SIGKILL); a queued one leaves the queue",
    "status": "show a job's status",
    "output": "stream a job's output from the start (Ctrl-C detaches)",
    "list": "list your jobs, newest first",
    "wait": wait_args.HELP,
    "context": "list the contexts of the config file, or choose the current one",
    "completion": completion_args.HELP,
}


def _add_start(sub: Sub, parents: _Parents) -> None:
    start = sub.add_parser("start", parents=[parents.host, parents.job], help=HELP["start"])
    start_input = start.add_mutually_exclusive_group()
    start_input.add_argument(
        "-i",
        "--stdin",
        action="store_true",
        help="the job's stdin is a pipe, for jog attach to write (default /dev/null)",
    )
    start_input.add_argument(
        "-t", "--tty", action="store_true", help="the job gets a terminal; jog attach to use it"
    )


def _add_run(sub: Sub, parents: _Parents) -> None:
    run = sub.add_parser(
        "run",
        parents=[parents.host, parents.hosts, parents.job, parents.reconnect],
        help=HELP["run"],
    )
    run_input = run.add_mutually_exclusive_group()
    run_input.add_argument(
        "-n",
        "--no-stdin",
        action="store_true",
        help="the job's stdin is /dev/null (default: jog's stdin is forwarded, as ssh does)",
    )
    run_input.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help=f"the job gets a terminal, and jog's is raw: every key goes to the job; "
        f"{DETACH_KEYS} detaches",
    )


def _add_attach(sub: Sub, parents: _Parents) -> None:
    attach = sub.add_parser(
        "attach", parents=[parents.host, parents.reconnect], help=HELP["attach"]
    )
    attach.add_argument("job_id", metavar="ID")


def _add_restart(sub: Sub, parents: _Parents) -> None:
    restart = sub.add_parser("restart", parents=[parents.host], help=HELP["restart"])
    restart.add_argument("job_id", metavar="ID")
    restart.add_argument("--queue", action="store_true", help=QUEUE_HELP)


def _add_stop(sub: Sub, parents: _Parents) -> None:
    stop = sub.add_parser("stop", parents=[parents.host], help=HELP["stop"])
    stop.add_argument("job_id", metavar="ID")
    stop.add_argument(
        "--grace",
        type=arg_types.seconds,
        metavar="SECONDS",
        help="wait this long after SIGTERM before SIGKILL (server default 10)",
    )


def _add_status(sub: Sub, parents: _Parents) -> None:
    status = sub.add_parser("status", parents=[parents.host], help=HELP["status"])
    status.add_argument("job_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print JSON")


def _add_output(sub: Sub, parents: _Parents) -> None:
    output = sub.add_parser(
        "output", parents=[parents.host, parents.reconnect], help=HELP["output"]
    )
    output.add_argument("job_id", metavar="ID")
    output.add_argument(
        "--no-follow",
        dest="follow",
        action="store_false",
        help="print the output there is now and exit",
    )
    output.add_argument(
        "--offset",
        type=arg_types.offset,
        default=0,
        metavar="BYTES",
        help="start at this byte of the output",
    )
    window_args.add(output)


def _add_list(sub: Sub, parents: _Parents) -> None:
    jobs = sub.add_parser("list", parents=[parents.host, parents.hosts], help=HELP["list"])
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.add_argument("--all", action="store_true", help="every user's jobs (admins only)")
    jobs.add_argument(
        "--limit",
        type=arg_types.limit,
        default=100,
        metavar="N",
        help="show the newest N jobs (default 100; 0 for every job on record)",
    )
    jobs.add_argument(
        "--ids", action="store_true", help="print the jobs' ids alone, one a line (for scripts)"
    )
    label_args.add_list_filters(jobs)


def _add_wait(sub: Sub, parents: _Parents) -> None:
    wait_args.add(sub, parents=[parents.host, parents.reconnect])


def _add_completion(sub: Sub, parents: _Parents) -> None:
    """Needs no server."""
    completion_args.add(sub)


def _add_context(sub: Sub, parents: _Parents) -> None:
    """Needs no server."""
    context = sub.add_parser(
        "context",
        help=HELP["context"],
        description="Contexts are [contexts.NAME] tables (host, ca, cert, key) in "
        "$XDG_CONFIG_HOME/jogger/config.toml; the current one is its current-context.",
    )
    actions = context.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the contexts; * marks the one in use")
    use = actions.add_parser("use", help="make NAME the current context (current-context)")
    use.add_argument("name", metavar="NAME")


COMMANDS: dict[str, Callable[[Sub, _Parents], None]] = {
    "start": _add_start,
    "run": _add_run,
    "attach": _add_attach,
    "restart": _add_restart,
    "stop": _add_stop,
    "status": _add_status,
    "output": _add_output,
    "list": _add_list,
    "wait": _add_wait,
    "context": _add_context,
    "completion": _add_completion,
}
"""Each command's parser, in the order jog --help lists them."""


def entry() -> NoReturn:
    """The ``jog`` program: ``main()``, then out without the interpreter's teardown.

    Tearing down some 300 modules' objects takes milliseconds that a one-shot command feels,
    to free what the kernel frees anyway. What Python would still do at exit that matters is
    done first: our output is flushed (``main()`` reports a failing write), and so are
    Python's own streams.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a reader gone: nothing left to tell
            code = code or Exit.ERROR
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in (words[: words.index("--")] if "--" in words else words)
    try:
        code = _main(words)
        stdout.flush()
    except SystemExit as exc:  # argparse after --help
        code = exc.code if isinstance(exc.code, int) else Exit.USAGE
        try:
            stdout.flush()
        except CliError as error:
            code = _report(error)
    except CliError as exc:
        code = _report(exc)
    except KeyboardInterrupt:
        code = Exit.INTERRUPTED
    except Exception as exc:
        if traceback:
            raise
        print(
            f"jog: error: unexpected {type(exc).__name__}: {escape(str(exc))} "
            "(--traceback shows where)",
            file=sys.stderr,
        )
        code = Exit.ERROR
    return int(code)


def _report(exc: CliError) -> int:
    if str(exc):
        # The message may quote the server, or a file name: one line, no terminal controls.
        print(f"jog: error: {escape(str(exc))}", file=sys.stderr)
    return int(exc.code)


def _main(words: list[str]) -> int:
    job_argv: list[str] = []
    if "--" in words:
        split = words.index("--")
        words, job_argv = words[:split], words[split + 1 :]
    return _run(parse(words, job_argv))


def parse(words: list[str], job_argv: list[str]) -> argparse.Namespace:
    """jog's arguments from its ``words`` before ``--``; ``job_argv`` is what follows."""
    # Only the command's own options are built, when the command comes first (as it mostly
    # does); else, as after `jog --context X`, all of them.
    p = parser(words[0] if words and words[0] in COMMANDS else None)
    parsed = isolate.with_values(words)
    try:
        args, extra = p.parse_known_args(parsed)
    except OSError as exc:  # writing --help
        raise stdout.write_error(exc) from None
    if extra:
        raise UsageError(_unrecognized(p, args.command, parsed, extra, typed=words))
    if args.command in ("start", "run"):
        if not job_argv:
            raise UsageError(
                f"{args.command} needs a command after --: jog {args.command} -- cmd [args]"
            )
        args.job = job_argv
        if args.command == "run" and args.hosts and args.tty:
            raise UsageError("-t takes one host: a terminal cannot be shared by several")
        if args.command == "run" and args.tty and not os.isatty(0):
            raise UsageError("-t needs a terminal on stdin (use -n, or pipe without -t)")
        if args.read_only_root and args.isolate == isolate.NONE:
            raise UsageError(
                "--read-only-root needs a mount namespace, and --isolate=none asks for none"
            )
    elif job_argv:
        raise UsageError(f"{args.command} takes no command after --")
    if args.command == "list" and args.ids and (args.json or args.hosts):
        raise UsageError(
            "--ids goes alone: without --json, and with one host (an id names a job on one)"
        )
    if getattr(args, "hosts", None) and args.host:
        raise UsageError("--host and --hosts do not go together: name every host in --hosts")
    return args


def _unrecognized(
    p: argparse.ArgumentParser, command: str, words: list[str], extra: list[str], typed: list[str]
) -> str:
    """The error for words jog did not expect; the likeliest one is a job without ``--``.
    ``words`` are those parsed, ``typed`` the same words as the user typed them."""
    if command in ("start", "run") and not extra[0].startswith("-"):
        # Where the job begins: the first word that is the first unexpected one, with
        # everything before it jog's own options.
        for at in range(words.index(command) + 1, len(words)):
            if words[at] != extra[0]:
                continue
            try:
                _, rest = p.parse_known_args(words[:at])
            except UsageError:
                continue
            if not rest:
                if isolate.bare(typed[at - 1]) and isolate.names_kinds(typed[at]):
                    return (
                        f"--isolate takes KINDS after an = (--isolate={typed[at]}); "
                        "alone it asks for every namespace"
                    )
                fixed = shlex.join(["jog", *typed[:at], "--", *typed[at:]])
                return f"the job's command goes after --: {fixed}"
    return f"unrecognized arguments: {shlex.join(extra)} (see: jog {command} --help)"


def _run(args: argparse.Namespace) -> int:
    if args.command == "context":
        from .commands.context import run_here  # noqa: PLC0415 - no server: no trio, no TLS

        return run_here(args)
    if args.command == "completion":
        from .completion import script  # noqa: PLC0415 - no server: no trio, no TLS

        stdout.write(script(args.shell, parser()).encode())
        return Exit.OK
    if args.command in ONE_SHOT and not getattr(args, "hosts", None):
        from .oneshot import run_one_shot  # noqa: PLC0415 - TLS and protobuf, only now

        return run_one_shot(args)
    from .connect import run_command  # noqa: PLC0415 - the heavy imports, only now

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
