"""Where jog connects and with which certificates: flags, then JOGGER_* variables."""

import os
from dataclasses import dataclass
from pathlib import Path

from ..rpc.address import parse_address
from .exits import CliError, Exit

DEFAULT_HOST = "localhost:7654"


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path


def _file(variable: str, what: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        raise CliError(
            f"{variable} is not set: export it as the path of {what} (with the development "
            'certificates, run eval "$(make -s gen-certs)" in the jogger checkout)',
            Exit.USAGE,
        )
    path = Path(value)
    if not path.is_file():
        raise CliError(f"{variable}={value}: no such file", Exit.USAGE)
    return path


def load(host_flag: str | None) -> Settings:
    text = host_flag or os.environ.get("JOGGER_HOST") or DEFAULT_HOST
    try:
        host, port = parse_address(text)
    except ValueError as exc:
        source = "--host" if host_flag else "JOGGER_HOST"
        raise CliError(f"{source}: {exc}", Exit.USAGE) from None
    return Settings(
        host=host,
        port=port,
        ca=_file("JOGGER_CA_CERT_FILE", "the CA certificate"),
        cert=_file("JOGGER_USER_CERT_FILE", "your user certificate"),
        key=_file("JOGGER_USER_KEY_FILE", "your user key"),
    )
