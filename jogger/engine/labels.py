"""A job's name and labels, and the bounds a start's must keep.

A **name** is a line for people to know a job by: at most MAX_NAME_BYTES bytes of UTF-8,
every character printable (str.isprintable: no control characters, no line or paragraph
separators, no bidi controls); empty means no name. Names need not be unique.

**Labels** are key=value pairs for picking jobs out (``jog list --label``), at most
MAX_LABELS of them. Their keys are shaped as Kubernetes' are, so that tools and habits carry
over: an optional prefix, a DNS subdomain (lower case letters, digits, ``-`` and ``.``, at
most 253 bytes) and ``/``, then a name of 1 to 63 bytes of letters, digits, ``-``, ``_`` and
``.`` that begins and ends with a letter or digit (``team``, ``ci.example.com/run-id``).
A value is at most MAX_VALUE_BYTES bytes of UTF-8, every character printable; it may be
empty. A key is case-sensitive, and a job has each key at most once.
"""

import re
from collections.abc import Mapping

from .errors import InvalidRequest, shown

MAX_NAME_BYTES = 128
MAX_LABELS = 32
MAX_KEY_NAME_BYTES = 63
MAX_KEY_PREFIX_BYTES = 253
MAX_VALUE_BYTES = 256

_KEY_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_KEY_PREFIX = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")


def check_name(name: str) -> str:
    """``name``, checked: "" (no name), or printable text of at most MAX_NAME_BYTES bytes."""
    if not isinstance(name, str):
        raise InvalidRequest("a job's name must be a string")
    _check_text(name, "a job's name", MAX_NAME_BYTES)
    return name


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """``labels``, checked (see the module's docstring), as a new dict."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidRequest("labels must be a mapping of strings to strings")
    if len(labels) > MAX_LABELS:
        raise InvalidRequest(f"a job may have at most {MAX_LABELS} labels, not {len(labels)}")
    checked = {}
    for key, value in labels.items():
        check_label(key, value)
        checked[key] = value
    return checked


def check_label(key: str, value: str) -> None:
    """One label: its key's shape, and its value's size and characters."""
    if not isinstance(key, str) or not isinstance(value, str):
        raise InvalidRequest("labels must be a mapping of strings to strings")
    problem = key_problem(key)
    if problem is not None:
        raise InvalidRequest(f"bad label key {shown(key, 40)}: {problem}")
    _check_text(value, f"the value of label {key}", MAX_VALUE_BYTES)


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a label key; None if it is one."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "an empty prefix before the /"
        if len(prefix.encode()) > MAX_KEY_PREFIX_BYTES or not _KEY_PREFIX.fullmatch(prefix):
            return (
                f"its prefix must be a DNS subdomain (a-z, 0-9, - and .) of at most "
                f"{MAX_KEY_PREFIX_BYTES} bytes"
            )
    if not name:
        return "it is empty" if not slash else "an empty name after the /"
    if len(name.encode()) > MAX_KEY_NAME_BYTES or not _KEY_NAME.fullmatch(name):
        return (
            f"a key is 1 to {MAX_KEY_NAME_BYTES} letters, digits, -, _ and ., beginning "
            "and ending with a letter or digit, with an optional DNS prefix and /"
        )
    return None


def _check_text(text: str, what: str, limit: int) -> None:
    if not text.isprintable():
        raise InvalidRequest(
            f"{what} must be printable text (no control characters): {shown(text, 40)}"
        )
    # Printable text has no lone surrogates, so it encodes.
    size = len(text.encode())
    if size > limit:
        raise InvalidRequest(f"{what} takes {size} bytes; at most {limit} are allowed")
