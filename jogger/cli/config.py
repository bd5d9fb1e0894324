"""jog's config file: named contexts (a server, and the certificates for it) and the current
one, in ``$XDG_CONFIG_HOME/jogger/config.toml`` (``~/.config/jogger/config.toml``)::

    current-context = "prod"

    [contexts.prod]
    host = "jobs.example.com:7654"
    ca = "prod/ca.pem"              # relative paths: to this file's directory
    cert = "~/certs/alice.pem"      # ~ is your home
    key = "~/certs/alice-key.pem"

Read with the standard library's tomllib, strictly: a setting jog does not know is an error,
not a typo left to fail later as a TLS error. Written only by ``jog context use``, which
changes the one ``current-context`` line, keeps the rest of the file as it was, and replaces
the file in one rename.
"""

import contextlib
import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from .._text import escape
from .exits import CliError, Exit

FIELDS = ("host", "ca", "cert", "key")
"""What a context may name: the server's address, and the three files of ``JOGGER_*``."""

CURRENT = "current-context"


class ConfigError(CliError):
    """The config file cannot be read, or says something jog does not understand."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.USAGE)


class Context(NamedTuple):
    name: str
    host: str | None
    """As written: ``host:port`` (checked where it is used)."""
    ca: Path | None
    cert: Path | None
    key: Path | None
    """The files, absolute: ``~`` expanded, a relative path taken from the file's directory."""

    def get(self, field: str) -> str | Path | None:
        value: str | Path | None = getattr(self, field)
        return value


class Config(NamedTuple):
    path: Path
    contexts: Mapping[str, Context]
    current: str | None
    """The ``current-context`` key, as written (it may name no context: see settings.py)."""


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the config file is: ``$XDG_CONFIG_HOME/jogger/config.toml``; by the XDG spec an
    unset, empty or relative XDG_CONFIG_HOME means ``~/.config``."""
    base = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "jogger" / "config.toml"


def load(path: Path) -> Config:
    """The config at ``path``; empty if there is no such file. Warns on stderr, once per
    call, when others may read a file that names private keys.

    Raises ConfigError.
    """
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = file.read()
    except FileNotFoundError:
        return Config(path, {}, None)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    config = parse(data, path)
    if mode & (stat.S_IRGRP | stat.S_IROTH) and any(c.key for c in config.contexts.values()):
        # Not an error: the file only names the key, which has permissions of its own. But a
        # file that says where everyone's keys are is worth keeping to oneself.
        print(
            f"jog: warning: {escape(str(path))} names private keys and others may read it "
            f"(chmod 600 {escape(str(path))})",
            file=sys.stderr,
        )
    return config


def parse(data: bytes, path: Path) -> Config:
    """The config in ``data``, read from ``path`` (relative files are taken from its
    directory). Raises ConfigError."""
    import tomllib  # noqa: PLC0415 - only when there is a file to read

    try:
        document = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(document) - {CURRENT, "contexts"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {escape(min(unknown))!r} "
            f"(jog reads {CURRENT} and [contexts.NAME] tables)"
        )
    current = document.get(CURRENT)
    if current is not None and not isinstance(current, str):
        raise ConfigError(f"{path}: {CURRENT} must be a string, the name of a context")
    tables = document.get("contexts", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: contexts must be tables: [contexts.NAME]")
    contexts = {name: _context(name, table, path) for name, table in tables.items()}
    return Config(path, contexts, current)


def _context(name: str, table: object, path: Path) -> Context:
    where = f"{path}: context {escape(name)!r}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table: [contexts.{escape(name)}]")
    unknown = set(table) - set(FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting {escape(min(unknown))!r} (a context has {', '.join(FIELDS)})"
        )
    values: dict[str, str] = {}
    for field, value in table.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {field} must be a non-empty string")
        values[field] = value
    return Context(
        name=name,
        host=values.get("host"),
        ca=_file(values.get("ca"), path),
        cert=_file(values.get("cert"), path),
        key=_file(values.get("key"), path),
    )


def _file(value: str | None, config: Path) -> Path | None:
    if value is None:
        return None
    # os.path.join keeps an absolute path (after ~) as it is.
    return Path(os.path.join(config.parent, os.path.expanduser(value)))


_TABLE = re.compile(rb"[ \t]*\[")
_CURRENT_LINE = re.compile(
    rb"""[ \t]*(current-context|"current-context"|'current-context')[ \t]*="""
)


def with_current(data: bytes, name: str) -> bytes:
    """``data`` (a config file) with its ``current-context`` set to ``name``: the line that
    sets it, before the first table, replaced; or a new first line. Nothing else moves."""
    line = f"{CURRENT} = {toml_string(name)}\n".encode()
    lines = data.splitlines(keepends=True)
    for at, text in enumerate(lines):
        if _TABLE.match(text):
            break
        if _CURRENT_LINE.match(text):
            return b"".join([*lines[:at], line, *lines[at + 1 :]])
    return line + data


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (quotes, backslashes and control characters escaped)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def use(config: Config, name: str) -> None:
    """Make ``name`` the current context in ``config``'s file: rewritten with ``with_current``,
    checked by reading it back, and put in place with one rename, with the old file's mode.

    Raises ConfigError: no such context, or a file jog cannot rewrite (it is left as it was).
    """
    if name not in config.contexts:
        raise no_such_context(config, name)
    path = config.path
    try:
        with open(path, "rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    before = parse(data, path)
    changed = with_current(data, name)
    try:
        after: Config | None = parse(changed, path)
    except ConfigError:
        after = None
    if after is None or after.current != name or after.contexts != before.contexts:
        raise ConfigError(
            f"{path}: cannot set {CURRENT} in it without changing more (is it a multi-line "
            f"string?); set {CURRENT} = {toml_string(name)} by hand"
        )
    _replace(path, changed, mode)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` anew: a temporary file beside it, synced, renamed over it."""
    import tempfile  # noqa: PLC0415 - jog context use only; every command reads this module

    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write beside it: {exc.strerror or exc}") from None
    try:
        with open(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ConfigError(f"{path}: cannot write it: {exc.strerror or exc}") from None
        raise
    # The rename itself, on disk.
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def no_such_context(config: Config, name: str) -> ConfigError:
    if not config.contexts:
        return ConfigError(f"no context {escape(name)!r}: {config.path} has no contexts")
    return ConfigError(
        f"no context {escape(name)!r} in {config.path} (jog context list shows them)"
    )
