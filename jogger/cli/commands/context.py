"""``jog context list`` and ``jog context use NAME``: the contexts of jog's config file
(cli/config.py), and the current one. No server is asked."""

import argparse
import os
import sys

from ..._text import escape
from .. import config as config_file
from ..config import CURRENT, Config
from ..exits import Exit


def run_here(args: argparse.Namespace) -> int:
    config = config_file.load(config_file.config_path())
    if args.action == "use":
        return _use(config, args.name)
    return _list(config, args.context)


def _list(config: Config, context_flag: str | None) -> int:
    if not config.contexts:
        print(f"jog: no contexts: {escape(str(config.path))} has none", file=sys.stderr)
        return Exit.OK
    in_use, source = _in_use(config, context_flag)
    if in_use is not None and in_use not in config.contexts:
        print(f"jog: {source} names no context: {escape(in_use)}", file=sys.stderr)
    rows = [["CURRENT", "NAME", "HOST"]]
    for name, context in config.contexts.items():
        rows.append(["*" if name == in_use else "", escape(name), escape(context.host or "-")])
    widths = [max(len(row[at]) for row in rows) for at in range(2)]
    for row in rows:
        print(f"{row[0]:{widths[0]}}  {row[1]:{widths[1]}}  {row[2]}")
    return Exit.OK


def _in_use(config: Config, context_flag: str | None) -> tuple[str | None, str]:
    """The name of the context in use, and what named it (settings.py's order)."""
    for name, source in (
        (context_flag, "--context"),
        (os.environ.get("JOGGER_CONTEXT"), "JOGGER_CONTEXT"),
        (config.current, f"{CURRENT} in {config.path}"),
    ):
        if name:
            return name, source
    return None, ""


def _use(config: Config, name: str) -> int:
    config_file.use(config, name)
    print(f"current context: {escape(name)}")
    chosen = os.environ.get("JOGGER_CONTEXT")
    if chosen and chosen != name:
        print(
            f"jog: JOGGER_CONTEXT={escape(chosen)} is set, and wins over {CURRENT} where it is",
            file=sys.stderr,
        )
    return Exit.OK
