"""``jog output``'s window arguments: --tail, --since and --timestamps (their running:
cli/commands/output.py, cli/stamps.py)."""

import argparse
import datetime
import re
import time
from typing import NamedTuple

MAX_TAIL = 1 << 32
"""As the server's bound (engine/window.py)."""
_ZONE = re.compile(r"(Z|[+-][0-9]{2}:?[0-9]{2})$", re.IGNORECASE)


class Window(NamedTuple):
    """The part of the output asked for, as OutputRequest says it."""

    tail: int | None = None
    since_ns: int | None = None
    timestamps: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> "Window":
        return cls(args.tail, args.since, args.timestamps)


WHOLE = Window()
"""The whole output, without timestamps."""


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tail",
        type=_tail,
        metavar="N",
        help="start at the last N lines of the output there is now (0: only what comes next)",
    )
    parser.add_argument(
        "--since",
        type=since_ns,
        metavar="DURATION|TIME",
        help="only output written since: a duration ago by this machine's clock (10m, 2h, "
        "1h30m) or an RFC 3339 time (2026-12-07T05:00:00Z); a time to come waits for it",
    )
    parser.add_argument(
        "--timestamps",
        action="store_true",
        help="prefix each line with the time its first byte was written, RFC 3339 in UTC "
        "with microseconds (2026-12-07T05:01:02.123456Z)",
    )


def _tail(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_TAIL:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of lines (a whole number from 0 to {MAX_TAIL})"
        )
    return int(text)


def since_ns(text: str) -> int:
    """``10m`` (that long before now, by this machine's clock) or an RFC 3339 time with its
    zone (``2026-12-07T05:00:00Z``, ``2026-12-07T06:00:00+01:00``): ns since the epoch."""
    from .._units import parse_duration  # noqa: PLC0415 - small, but only when asked for

    try:
        ago = parse_duration(text)
    except ValueError:
        pass
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is too long ago") from None
    else:
        return time.time_ns() - round(ago.total_seconds() * 1e9)
    if "T" not in text.upper() or _ZONE.search(text.strip()) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (like 10m, 2h or 1h30m) nor an RFC 3339 time "
            "with its zone (like 2026-12-07T05:00:00Z)"
        )
    try:
        when = datetime.datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid RFC 3339 time (like 2026-12-07T05:00:00Z)"
        ) from None
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    delta = when - epoch
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
