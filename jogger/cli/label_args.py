"""The options that name and label a job (``jog start``, ``jog run``) and that filter
``jog list``. jog checks only their form (``KEY=VALUE``, each key once, known states): the
server checks the rest, and says what is wrong."""

import argparse
from collections.abc import Sequence
from typing import Any

STATES = ("queued", "running", "completed", "failed", "stopped", "killed")
"""As jog shows them, and as --state takes them."""


class _States(tuple[str, ...]):
    """STATES as argparse's choices (so that help and completion list them) that let a
    comma list of them through: ``--state failed,killed``."""

    def __contains__(self, value: object) -> bool:
        if isinstance(value, list):
            return all(item in STATES for item in value)
        return value in STATES


class _Labels(argparse._AppendAction):
    """``--label KEY=VALUE``, repeatable, into a dict: a key given twice is a usage error
    (a job has each key once, so a list could never match both). An append action, which
    the completion model knows may be repeated."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, tuple)
        key, value = values
        labels = dict(getattr(namespace, self.dest) or {})
        if key in labels:
            raise argparse.ArgumentError(self, f"the label {key!r} is given twice")
        labels[key] = value
        setattr(namespace, self.dest, labels)


def add_job_options(job: argparse.ArgumentParser) -> None:
    """start's and run's --name and --label."""
    job.add_argument(
        "--name",
        default="",
        metavar="NAME",
        help="what to call the job, shown by status and list (at most 128 bytes, printable)",
    )
    job.add_argument(
        "--label",
        dest="labels",
        action=_Labels,
        type=_label,
        default={},
        metavar="KEY=VALUE",
        help="label the job, for jog list --label to find (repeatable; at most 32)",
    )


def add_list_filters(jobs: argparse.ArgumentParser) -> None:
    """list's --label, --state and --name: the server filters, before paging."""
    jobs.add_argument(
        "--label",
        dest="labels",
        action=_Labels,
        type=_label,
        default={},
        metavar="KEY=VALUE",
        help="only jobs with this label (repeatable: with every one of them)",
    )
    jobs.add_argument(
        "--state",
        dest="states",
        action="extend",
        type=_states,
        choices=_States(STATES),
        default=[],
        metavar="STATE",
        help=f"only jobs in this state (repeatable, or a comma list: in any of them): "
        f"{', '.join(STATES)}",
    )
    jobs.add_argument(
        "--name",
        default="",
        metavar="PATTERN",
        help="only jobs whose whole name matches PATTERN: * any characters, ? any one, "
        "\\ makes the next one plain; case-sensitive (quote it from the shell)",
    )


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _states(text: str) -> list[str]:
    states = [word.strip() for word in text.split(",")]
    unknown = next((s for s in states if s not in STATES), None)
    if unknown is not None:
        raise argparse.ArgumentTypeError(
            f"{unknown!r} is not a state: {', '.join(STATES)} (a comma list of them)"
        )
    return states
