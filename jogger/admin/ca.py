"""The CA that ``jogger certs`` made, as the commands that sign with it find it."""

import argparse
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm

from ..rpc import certs
from ..rpc.auth import USERNAME

RESERVED = frozenset({"ca", "ca-key", "server", "server-key", "crl"})
"""Names whose NAME.pem or NAME-key.pem would overwrite the CA's, the server's or the CRL's."""


class CommandError(Exception):
    """What a command could not do, as one line for its user; it changed nothing."""


def username(text: str) -> str:
    """A user's name, for argparse: a username our servers accept, whose files in the CA's
    directory are not those of the CA, the server or the CRL."""
    if not USERNAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a username (lower case, digits, _.-)")
    if text in RESERVED:
        raise argparse.ArgumentTypeError(
            f"{text!r} would overwrite {text}.pem, a file of the CA, the server or the CRL"
        )
    return text


def load_ca(directory: Path) -> certs.Issuer:
    """The CA in ``directory`` (ca.pem and ca-key.pem, as ``jogger certs --out`` leaves
    them), or CommandError."""
    cert, key = directory / "ca.pem", directory / "ca-key.pem"
    if not (cert.is_file() and key.is_file()):
        raise CommandError(
            f"no CA in {directory} (ca.pem and ca-key.pem): jogger certs --out {directory} "
            "makes one, or --out names the directory of yours"
        )
    try:
        return certs.load_issuer(cert, key)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CommandError(f"the CA in {directory} cannot be used: {exc}") from None


@contextmanager
def signing(directory: Path) -> Iterator[None]:
    """Hold the CA's key file locked: two commands that read, change and write the same
    CRL at once would otherwise lose one's entries."""
    with open(directory / "ca-key.pem", "rb") as key:
        fcntl.flock(key, fcntl.LOCK_EX)
        yield
