"""Where jog connects and with which certificates.

Each setting comes, on its own, from the first of these that gives it:

1. a flag: ``--host``, or an entry of ``--hosts`` (below);
2. its JOGGER_* variable (JOGGER_HOST, JOGGER_CA_CERT_FILE, ...);
3. the context in use (cli/config.py): ``--context``, else JOGGER_CONTEXT, else the config
   file's ``current-context``;
4. the default: ``localhost:7654`` for the host; the files have none.

An entry of ``--hosts`` is a flag: the name of a context brings that context's address and
files (what it does not name comes from 2 and 3), and any other entry is an address, with
the certificates the settings give without it.
"""

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from ..rpc.address import format_address, parse_address
from . import config as config_file
from .config import CURRENT, Config, ConfigError, Context
from .exits import CliError, Exit

DEFAULT_HOST = "localhost:7654"

VARIABLES = {
    "host": "JOGGER_HOST",
    "ca": "JOGGER_CA_CERT_FILE",
    "cert": "JOGGER_USER_CERT_FILE",
    "key": "JOGGER_USER_KEY_FILE",
}
_WHAT = {"ca": "the CA certificate", "cert": "your user certificate", "key": "your user key"}


class Source(NamedTuple):
    """Where a setting came from, as errors name it: a flag, a variable, or a context's
    field (``context='prod'``, ``field='ca'``)."""

    name: str
    context: str | None = None

    def quote(self, value: object) -> str:
        """The setting as the user wrote it: ``JOGGER_CA_CERT_FILE=/x``, ``ca = /x in
        context 'prod'``."""
        if self.context is not None:
            return f"{self.name} = {value} in context {self.context!r}"
        return f"{self.name}={value}"

    def __str__(self) -> str:
        if self.context is not None:
            return f"the {self.name} of context {self.context!r}"
        return self.name


_FROM_VARIABLES: Mapping[str, Source] = MappingProxyType(
    {name: Source(variable) for name, variable in VARIABLES.items()}
)
"""Settings' sources by default: every one from its variable."""


class Settings(NamedTuple):
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    sources: Mapping[str, Source] = _FROM_VARIABLES
    """Where each of the five came from (``host`` for the port too), for the errors."""


class Target(NamedTuple):
    """One entry of ``--hosts``: its name as typed (each output line's prefix), and where it
    connects."""

    name: str
    settings: Settings

    @property
    def where(self) -> str:
        """The host as errors name it: the entry, and the address a context's name stands
        for."""
        if self.settings.sources["host"].name == "--hosts":
            return self.name
        return f"{self.name} ({format_address(self.settings.host, self.settings.port)})"


Layer = Callable[[str], tuple[Source, str | Path] | None]
"""One place settings come from: the value of a setting, and its source; None if it has
none."""


def _flag(name: str, value: str | None) -> Layer:
    def get(setting: str) -> tuple[Source, str | Path] | None:
        return (Source(name), value) if setting == "host" and value else None

    return get


def _variables(environ: Mapping[str, str]) -> Layer:
    def get(setting: str) -> tuple[Source, str | Path] | None:
        value = environ.get(VARIABLES[setting])
        return (Source(VARIABLES[setting]), value) if value else None

    return get


def _context(context: Context | None) -> Layer:
    def get(setting: str) -> tuple[Source, str | Path] | None:
        if context is None:
            return None
        value = context.get(setting)
        return (Source(setting, context.name), value) if value is not None else None

    return get


def load(
    host_flag: str | None,
    context_flag: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Settings:
    """The settings for one server. Raises CliError (Exit.USAGE)."""
    config = config_file.load(config_file.config_path(environ))
    in_use = context_in_use(config, context_flag, environ)
    layers = [_flag("--host", host_flag), _variables(environ), _context(in_use)]
    return _resolve(layers, [in_use])


def load_targets(
    entries: list[str],
    context_flag: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> list[Target]:
    """The settings for each entry of ``--hosts``, all checked before any is used.
    Raises CliError (Exit.USAGE)."""
    config = config_file.load(config_file.config_path(environ))
    in_use = context_in_use(config, context_flag, environ)
    rest = [_variables(environ), _context(in_use)]
    targets = []
    for entry in entries:
        named = config.contexts.get(entry)
        if named is None:
            settings = _resolve([_flag("--hosts", entry), *rest], [in_use])
        elif named.host is None:
            raise CliError(
                f"--hosts: context {entry!r} names no host (in {config.path})", Exit.USAGE
            )
        else:
            settings = _resolve([_context(named), *rest], [named, in_use])
        targets.append(Target(entry, settings))
    return targets


def context_in_use(
    config: Config, context_flag: str | None, environ: Mapping[str, str]
) -> Context | None:
    """The context ``--context``, JOGGER_CONTEXT or ``current-context`` names, in that order;
    None if none does. Raises ConfigError for a name that is not a context."""
    for name, source in (
        (context_flag, "--context"),
        (environ.get("JOGGER_CONTEXT"), "JOGGER_CONTEXT"),
        (config.current, CURRENT),
    ):
        if name:
            found = config.contexts.get(name)
            if found is None:
                raise ConfigError(f"{source}: {config_file.no_such_context(config, name)}")
            return found
    return None


def _resolve(layers: list[Layer], contexts: list[Context | None]) -> Settings:
    """Each setting from the first layer that has it. ``contexts``: those consulted, for the
    error when no layer names a file."""
    sources: dict[str, Source] = {}
    values: dict[str, str | Path] = {}
    for setting in VARIABLES:
        found = next((hit for layer in layers if (hit := layer(setting)) is not None), None)
        if found is not None:
            sources[setting], values[setting] = found
    host_text = str(values.get("host", DEFAULT_HOST))
    sources.setdefault("host", Source(VARIABLES["host"]))
    try:
        host, port = parse_address(host_text)
    except ValueError as exc:
        raise CliError(f"{sources['host']}: {exc}", Exit.USAGE) from None
    files = {}
    for setting in ("ca", "cert", "key"):
        if setting not in values:
            raise _missing(setting, [c for c in contexts if c is not None])
        path = Path(values[setting])
        if not path.is_file():
            raise CliError(f"{sources[setting].quote(path)}: no such file", Exit.USAGE)
        files[setting] = path
    return Settings(host, port, files["ca"], files["cert"], files["key"], sources)


def _missing(setting: str, contexts: list[Context]) -> CliError:
    variable = VARIABLES[setting]
    if contexts:
        names = " or ".join(repr(c.name) for c in dict.fromkeys(contexts))
        return CliError(
            f"{variable} is not set, and context {names} names no {setting}: set either to "
            f"the path of {_WHAT[setting]}",
            Exit.USAGE,
        )
    return CliError(
        f"{variable} is not set: export it as the path of {_WHAT[setting]} (with the "
        'development certificates, run eval "$(make -s gen-certs)" in the jogger checkout)',
        Exit.USAGE,
    )
