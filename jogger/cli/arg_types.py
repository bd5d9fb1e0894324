"""jog's argument types: each turns a word into its value, or raises ArgumentTypeError with
what is wrong (argparse prints it as a usage error)."""

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from ..rpc.jobs_api import MAX_GRACE, timeout_problem
from . import isolate

T = TypeVar("T", int, float)

MAX_RECONNECT_TIMEOUT = 7 * 86400.0


def host_list(text: str) -> list[str]:
    entries = [entry.strip() for entry in text.split(",")]
    if not all(entries):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty entry: write A,B,C")
    twice = next((e for at, e in enumerate(entries) if e in entries[:at]), None)
    if twice is not None:
        raise argparse.ArgumentTypeError(f"{twice!r} is named twice")
    return entries


def limit(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def isolation(text: str) -> isolate.Asked:
    try:
        return isolate.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def _number(
    kind: Callable[[str], T], noun: str, low: T, high: T, out_of_range: Callable[[T], str]
) -> Callable[[str], T]:
    """An argparse type: ``kind(text)``, from ``low`` to ``high``."""

    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(out_of_range(value))
        return value

    return parse


seconds = _number(
    float,
    "a number of seconds",
    0.0,
    float(MAX_GRACE),
    lambda _: f"the grace period must be from 0 to {MAX_GRACE:g} seconds",
)
reconnect_timeout = _number(
    float,
    "a number of seconds",
    0.0,
    MAX_RECONNECT_TIMEOUT,
    lambda _: f"the reconnect timeout must be from 0 to {MAX_RECONNECT_TIMEOUT:g} seconds",
)
cores = _number(
    float,
    "a number of cores",
    0.01,
    100_000.0,
    lambda _: "the CPU limit must be at least 0.01 cores",
)
offset = _number(
    int,
    "a whole number of bytes",
    0,
    (1 << 64) - 1,
    lambda offset: (
        "the offset cannot be negative" if offset < 0 else "the offset must be below 2**64"
    ),
)


def weight(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a weight from 1 to 10000")
    return int(text)


def count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) < 1 << 32:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def duration(text: str) -> float:
    from .._units import parse_duration  # noqa: PLC0415 - small, but only when asked for

    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except OverflowError:  # past what a timedelta holds
        seconds = math.inf
    problem = timeout_problem(seconds)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return seconds


def size(text: str) -> int:
    from .._units import parse_size  # noqa: PLC0415 - small, but only when asked for

    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < value < 1 << 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return value
