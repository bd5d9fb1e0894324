"""``--version`` for jog, jogger-server and jogger: the installed distribution's version.

The one place the version is written is pyproject.toml; this reads it back from the
installed metadata, and only when ``--version`` is given: importing importlib.metadata and
finding the distribution costs milliseconds that every start of jog would pay otherwise.
"""

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

DISTRIBUTION = "jogger"


def version() -> str:
    from importlib import metadata  # noqa: PLC0415 - only when asked (see above)

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "(unknown: the jogger distribution is not installed)"


class VersionAction(argparse.Action):
    """``--version``: prints ``PROG VERSION`` and exits 0, as argparse's own action does,
    but looks the version up only then."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str = argparse.SUPPRESS,
        default: Any = argparse.SUPPRESS,
        help: str = "print the version and exit",
    ) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> NoReturn:
        sys.stdout.write(f"{parser.prog} {version()}\n")
        parser.exit()
