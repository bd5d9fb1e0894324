"""What there is to complete, read from jog's own argparse parser, so that a completion
script never lists an option jog no longer has.

A command is a path of words (``()`` for jog itself, ``("context", "use")``), with its
options, its subcommands and its positional arguments. A positional whose metavar is
``ID`` takes job ids: the scripts ask the server for them (``jog list --ids``).

argparse has no public API to walk a parser: this reads ``_actions``, ``_SubParsersAction``
and its ``_name_parser_map`` and ``_choices_actions``, unchanged since Python 3.2;
tests/cli/test_completion_model.py says so loudly if they change.
"""

import argparse
from dataclasses import dataclass

JOB_ID = "ID"


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]
    """``("-D", "--host")``: short names first."""
    value: str
    """``none`` (a flag), ``word`` (the next word is its value) or ``joined`` (a value
    only after an ``=``, as ``--isolate[=KINDS]``)."""
    choices: tuple[str, ...]
    help: str
    repeats: bool
    """Whether it may be given more than once (``--env``)."""


@dataclass(frozen=True)
class Positional:
    name: str
    """Its metavar: ``ID`` for job ids."""
    choices: tuple[str, ...]
    repeats: bool


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    help: str
    options: tuple[Option, ...]
    subcommands: tuple[str, ...]
    positionals: tuple[Positional, ...]
    takes_argv: bool
    """Whether a job's argv follows ``--`` (start, run)."""

    @property
    def takes_ids(self) -> bool:
        return any(p.name == JOB_ID for p in self.positionals)


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of ``parser``, jog itself first, then depth first in its order."""
    found: list[Command] = []
    _walk(parser, (), "", found)
    return found


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...], help: str, found: list[Command]
) -> None:
    options: list[Option] = []
    positionals: list[Positional] = []
    children: list[tuple[str, argparse.ArgumentParser, str]] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action._name_parser_map.items():
                children.append((name, child, helps.get(name, "")))
        elif action.option_strings:
            options.append(_option(action))
        else:
            positionals.append(
                Positional(
                    name=str(action.metavar or action.dest),
                    choices=tuple(str(c) for c in action.choices or ()),
                    repeats=action.nargs in ("+", "*"),
                )
            )
    found.append(
        Command(
            path=path,
            help=help,
            options=tuple(options),
            subcommands=tuple(name for name, _, _ in children),
            positionals=tuple(positionals),
            takes_argv=path in (("start",), ("run",)),
        )
    )
    for name, child, child_help in children:
        _walk(child, (*path, name), child_help, found)


def _option(action: argparse.Action) -> Option:
    names = sorted(action.option_strings, key=lambda n: (n.startswith("--"), n))
    if action.nargs == 0:
        value = "none"
    elif action.nargs == "?":
        value = "joined"
    else:
        value = "word"
    return Option(
        names=tuple(names),
        value=value,
        choices=tuple(str(c) for c in action.choices or ()),
        help=_first_clause(action.help or ""),
        repeats=isinstance(action, argparse._AppendAction | argparse._CountAction),
    )


def _first_clause(help: str) -> str:
    """A short description: the help up to its first ``;`` or ``(``, one line."""
    for stop in ("; ", " ("):
        help = help.split(stop, 1)[0]
    return " ".join(help.split())
