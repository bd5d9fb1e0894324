"""``--isolate[=KINDS]`` as jog reads it (pure, and light: no protobuf).

KINDS are the server's words (``jogger-server --isolate-default``): namespaces among pid,
mount, net, ipc and uts, comma-separated, or ``all``; ``none``, alone; ``read-only-root``.

The value takes an ``=``, as ``ls --color[=WHEN]``'s: a bare ``--isolate`` asks for every
namespace and never takes the next word, which is the job's command in ``jog run --isolate
ls`` (an error that says where ``--`` goes) and an option in ``--isolate -t``.
"""

from collections.abc import Sequence
from typing import NamedTuple

KINDS = ("pid", "mount", "net", "ipc", "uts")
"""The namespaces, in the order jog shows them."""
READ_ONLY_ROOT = "read-only-root"
_COMMANDS = ("start", "run")
"""The commands that take --isolate."""
_OPTION = "--isolate"
_SHORTEST = "--is"
"""The shortest abbreviation argparse takes for --isolate (``--i`` is also --io-weight's)."""


class Asked(NamedTuple):
    """What ``--isolate`` asks for."""

    namespaces: frozenset[str]
    read_only_root: bool


ALL = Asked(frozenset(KINDS), read_only_root=False)
NONE = Asked(frozenset(), read_only_root=False)


def parse(text: str) -> Asked:
    """The isolation ``text`` names; ValueError saying what is wrong. An empty text is an
    error: ``--isolate=$KINDS`` with KINDS unset must not quietly ask for none."""
    words = [word.strip() for word in text.split(",")]
    if words == [""]:
        raise ValueError(f"{_OPTION}= needs KINDS (none for no isolation)")
    if words == ["none"]:
        return NONE
    namespaces: set[str] = set()
    read_only_root = False
    for word in words:
        if word == "all":
            namespaces.update(KINDS)
        elif word == READ_ONLY_ROOT:
            read_only_root = True
        elif word in KINDS:
            namespaces.add(word)
        else:
            raise ValueError(
                f"unknown isolation {word[:40]!r}: pick from all, none, "
                + ", ".join(KINDS)
                + f" or {READ_ONLY_ROOT}"
            )
    return Asked(frozenset(namespaces), read_only_root)


def with_values(words: Sequence[str]) -> list[str]:
    """jog's words (those before ``--``) with each bare ``--isolate`` of ``jog start`` and
    ``jog run`` written ``--isolate=all``, so that argparse takes no word after it for its
    value. One word for one: an error can point at the words as they were typed."""
    if not words or words[0] not in _COMMANDS:
        return list(words)
    return [f"{_OPTION}=all" if bare(word) else word for word in words]


def bare(word: str) -> bool:
    """Whether ``word`` is ``--isolate`` (or an abbreviation of it) without a value."""
    return len(word) >= len(_SHORTEST) and _OPTION.startswith(word)


def names_kinds(word: str) -> bool:
    """Whether ``word`` is a KINDS value."""
    try:
        parse(word)
    except ValueError:
        return False
    return True


def text(namespaces: Sequence[str], read_only_root: bool) -> str:
    """``namespaces`` (names from KINDS) and the read-only root as KINDS say them, shortest:
    ``all``, ``pid,net``, ``pid,read-only-root`` (which implies mount); "" for none."""
    known = [kind for kind in KINDS if kind in namespaces]
    if len(known) == len(KINDS):
        shown = ["all"]
    else:
        shown = [kind for kind in known if not (read_only_root and kind == "mount")]
    shown += sorted(set(namespaces) - set(KINDS))  # from a newer server
    return ",".join(shown + ([READ_ONLY_ROOT] if read_only_root else []))
