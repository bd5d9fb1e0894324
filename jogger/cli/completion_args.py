"""``jog completion``'s arguments (its script: cli/completion/)."""

import argparse

SHELLS = ("bash", "zsh", "fish")


HELP = "print a completion script for this shell"


def add(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    completion = sub.add_parser(
        "completion",
        help=HELP,
        description="Print a script that completes jog's commands, their options, and the ids "
        "of your newest jobs (asked of the server, for at most 2 s, or "
        "$JOGGER_COMPLETION_TIMEOUT). Install: jog completion "
        "bash > /etc/bash_completion.d/jog; jog completion zsh > DIR/_jog, DIR in your $fpath; "
        "jog completion fish > ~/.config/fish/completions/jog.fish.",
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help=", ".join(SHELLS))
