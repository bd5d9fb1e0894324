"""The completion scripts are made from jog's own parser: every command and option it has is
in them, and nothing it hides."""

import argparse

from jogger.cli.completion import script
from jogger.cli.completion.model import commands
from jogger.cli.main import parser


def _option_strings(p: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action._name_parser_map.values():
                found |= _option_strings(child)
        elif action.help != argparse.SUPPRESS:
            found |= set(action.option_strings)
    return found


def test_the_model_holds_every_command_and_option_of_the_parser() -> None:
    model = commands(parser())
    paths = [c.path for c in model]
    assert paths[0] == ()
    assert {("wait",), ("completion",), ("context", "use"), ("list",)} <= set(paths)
    in_model = {name for c in model for o in c.options for name in o.names}
    assert in_model == _option_strings(parser())
    assert "--traceback" not in in_model


def test_positionals_named_id_take_job_ids_and_wait_takes_many() -> None:
    by_path = {c.path: c for c in commands(parser())}
    assert by_path[("stop",)].takes_ids
    assert not by_path[("list",)].takes_ids
    [ids] = by_path[("wait",)].positionals
    assert ids.repeats
    assert by_path[("run",)].takes_argv


def test_every_script_names_every_option() -> None:
    options = _option_strings(parser())
    for shell in ("bash", "zsh", "fish"):
        text = script(shell, parser())
        for option in options:
            bare = option.lstrip("-")
            assert option in text or f"-l {bare}" in text or f"-s {bare}" in text, (shell, option)
