"""jog builds only the options of the command it runs (main.parser(command)): the same
options as the whole parser's, and every other command still named, with its help."""

import argparse

import pytest

from jogger.cli.main import COMMANDS, parser


def commands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def options(p: argparse.ArgumentParser) -> list[tuple[tuple[str, ...], str, object]]:
    """Each action's option strings, destination and default, nested commands included."""
    found: list[tuple[tuple[str, ...], str, object]] = []
    for action in p._actions:
        found.append((tuple(action.option_strings), action.dest, action.default))
        if isinstance(action, argparse._SubParsersAction):
            for name, nested in action.choices.items():
                found += [((name, *o), d, v) for o, d, v in options(nested)]
    return found


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_alone_has_the_options_it_has_among_all(command: str) -> None:
    whole = commands(parser())
    alone = commands(parser(command))
    assert list(alone) == list(whole)  # every command is named, in the same order
    assert options(alone[command]) == options(whole[command])
    assert alone[command].format_help() == whole[command].format_help()
    for other in set(alone) - {command}:
        assert options(alone[other]) == [(("-h", "--help"), "help", argparse.SUPPRESS)]


def test_the_top_level_help_is_the_same_either_way() -> None:
    assert parser("status").format_help() == parser().format_help()
