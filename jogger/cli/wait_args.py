"""``jog wait``'s arguments (its running: cli/commands/wait.py)."""

import argparse

MAX_TIMEOUT = 366 * 86400.0


HELP = (
    "wait until the jobs have ended, print their final status, exit with the highest of "
    "their exit codes"
)


def add(
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
    *,
    parents: list[argparse.ArgumentParser],
) -> None:
    wait = sub.add_parser(
        "wait",
        parents=parents,
        help=HELP,
        description="Wait until every job named has ended, print each one's final status as "
        "it ends (as jog status does), and exit with the highest of their exit codes: each "
        "job's own, 128+N for signal N, 1 for a job that ended without either. 124 if one "
        "had not ended by --timeout.",
    )
    wait.add_argument("job_ids", metavar="ID", nargs="+", help="the jobs to wait for")
    wait.add_argument(
        "--any", action="store_true", help="only until the first of them ends: its code"
    )
    wait.add_argument(
        "--timeout",
        type=_timeout,
        metavar="DURATION",
        help="give up after this long (90s, 15m, 2h; 0s: look once) and exit 124",
    )
    wait.add_argument("--json", action="store_true", help="print JSON")


def _timeout(text: str) -> float:
    from .._units import parse_duration  # noqa: PLC0415 - small, but only when asked for

    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"the timeout must be at most {MAX_TIMEOUT / 86400:g}d")
    return seconds
