"""``jog completion SHELL``: a completion script for bash, zsh or fish, made from jog's own
parser (model.py), one module per shell."""

import argparse

from ..._version import version
from . import bash, fish, zsh
from .model import commands

_SHELLS = {"bash": bash.script, "zsh": zsh.script, "fish": fish.script}


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The script for ``shell`` (bash, zsh or fish), completing ``parser``'s commands."""
    return _SHELLS[shell](commands(parser), version())
