"""The server's certificates: loaded at start, reloaded on SIGHUP, watched for a CRL's end.

A reload rereads the CA bundle (``--ca-cert``), the server's certificate and key (``--cert``,
``--key``) and the CRL file (``--crl``) from the paths the server started with, and checks
them as a start would (rpc/credentials.py). Only if all of them will do does it replace the
material, as a unit: connections accepted from then on are served with it, while
connections made before, their calls (a follower's stream) and every job carry on as
they were. A reload that fails keeps the old material entirely and logs one line that
names the file and says why.
"""

import datetime
import logging
from collections.abc import Callable

import trio

from ..rpc.credentials import ServerTls, TlsHolder, load_server_tls
from ..rpc.tls import TlsFileError
from .config import ServerConfig

log = logging.getLogger("jogger.server")

FLAGS = {"ca": "--ca-cert", "cert": "--cert", "key": "--key", "crl": "--crl"}
"""The flag that names each TLS file, for messages."""
CHECK_INTERVAL = 86400.0
"""Seconds between looks at the CRLs' nextUpdate while the server runs (a warning a day)."""

OnReload = Callable[[bool, str], None]
"""Told of each reload: whether it took, and the line the log got (for the audit log)."""


def describe(error: TlsFileError) -> str:
    """A TLS file error as one line, with the flag that names the file."""
    flag = FLAGS.get(error.role or "")
    return f"{flag} {error}" if flag else str(error)


def load(config: ServerConfig) -> ServerTls:
    """The TLS material of ``config``'s files, at start; raises TlsFileError (main prints it
    with ``describe``). Warns about a CRL near its end."""
    material = load_server_tls(config.ca_cert, config.cert, config.key, config.crl)
    _warn(material)
    return material


class CertificateReload:
    """The SIGHUP action (hangup.py) that reloads ``config``'s TLS files into ``holder``.
    Never raises: a failure keeps what ``holder`` has."""

    def __init__(
        self, config: ServerConfig, holder: TlsHolder, *, on_reload: OnReload | None = None
    ) -> None:
        self._config = config
        self._holder = holder
        self.on_reload = on_reload

    def __call__(self) -> None:
        try:
            material = load(self._config)
        except TlsFileError as exc:
            line = f"certificates not reloaded, the old ones stay in use: {describe(exc)}"
            log.error("%s", line)
            self._tell(False, line)
            return
        except Exception:
            # A bug, or files we did not foresee: it fails this reload, not the server.
            line = "certificates not reloaded, the old ones stay in use: an unexpected error"
            log.exception("%s", line)
            self._tell(False, line)
            return
        self._holder.current = material
        line = f"certificates reloaded for new connections: {material.describe()}"
        log.info("%s", line)
        self._tell(True, line)

    def _tell(self, ok: bool, line: str) -> None:
        if self.on_reload is not None:
            self.on_reload(ok, line)


async def watch_crl_expiry(holder: TlsHolder, interval: float = CHECK_INTERVAL) -> None:
    """Warn once every ``interval`` while a CRL in force nears its nextUpdate or has passed
    it (then OpenSSL refuses every client of its CA), until cancelled: a server may run for
    longer than the CRL it started with lasts."""
    while True:
        await trio.sleep(interval)
        _warn(holder.current)


def _warn(material: ServerTls) -> None:
    if material.revocations is not None:
        for warning in material.revocations.warnings(datetime.datetime.now(datetime.UTC)):
            log.warning("--crl: %s", warning)
