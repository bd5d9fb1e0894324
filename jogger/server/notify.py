"""systemd's readiness protocol (sd_notify(3)), spoken by hand: no libsystemd.

Under ``Type=notify`` systemd passes an AF_UNIX datagram socket in ``$NOTIFY_SOCKET`` (a
path, or ``@name`` for the abstract namespace) and waits for ``READY=1`` before it calls
the service started. We send ``READY=1`` once the listeners accept connections,
``RELOADING=1`` and then ``READY=1`` again around each SIGHUP's reload, ``STOPPING=1`` when
a shutdown begins, and a ``STATUS=`` line (what ``systemctl status`` shows) with each.

The variable is taken out of the environment as the notifier is made: what the server
starts (supervisors, sbatch, any job that would be given the server's environment) must not
be able to speak for the service. ``NotifyAccess=main`` in the unit says the same on
systemd's side.

A datagram that cannot be sent is logged and dropped: the service manager is told less,
and nothing else changes.
"""

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("jogger.server")

VARIABLE = "NOTIFY_SOCKET"


class Notifier:
    """Tells the service manager the server's state; does nothing without one."""

    def __init__(self, address: str | None) -> None:
        """``address``: the socket's path, or ``\\0name`` in the abstract namespace."""
        self.address = address
        self._ready_status: str | None = None

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> "Notifier":
        """The notifier ``$NOTIFY_SOCKET`` names, which is removed from ``environ``."""
        value = environ.pop(VARIABLE, "")
        if not value:
            return cls(None)
        if value.startswith("@") and len(value) > 1:
            return cls("\0" + value[1:])
        if value.startswith("/"):
            return cls(value)
        # systemd 253 and later may also pass vsock:CID:PORT (for a VM's manager); ours is
        # not one.
        log.warning("%s=%s is not an AF_UNIX socket address: not notifying", VARIABLE, value)
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        """Started, or back from a reload; ``status`` stays the status line until the next."""
        self._ready_status = status
        self._send(("READY", "1"), ("STATUS", status))

    def reloading(self) -> None:
        """A reload begins; ``reloaded`` must follow. Before ``ready``, nothing: a server
        still starting is not ready after the reload either."""
        if self._ready_status is None:
            return
        # MONOTONIC_USEC lets Type=notify-reload (systemd 253) tie the message to its signal.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(("RELOADING", "1"), ("MONOTONIC_USEC", str(usec)), ("STATUS", "reloading"))

    def reloaded(self) -> None:
        if self._ready_status is not None:
            self.ready(self._ready_status)

    def stopping(self, status: str) -> None:
        self._send(("STOPPING", "1"), ("STATUS", status))

    def status(self, status: str) -> None:
        self._send(("STATUS", status))

    def _send(self, *fields: tuple[str, str]) -> None:
        if self.address is None:
            return
        # One line per field: a newline in a value would end it and start another field.
        message = "".join(f"{name}={' '.join(value.splitlines())}\n" for name, value in fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never wait on a service manager that does not read: drop instead.
                sock.setblocking(False)
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warning(
                "cannot notify the service manager (%s): %s",
                fields[0][0],
                exc.strerror or exc,
            )


NOT_NOTIFYING = Notifier(None)
"""For a server that no service manager watches (tests, and serve()'s default)."""
