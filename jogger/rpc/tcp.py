"""A blocking TCP connection to a host, as trio's ``open_tcp_stream`` makes one: each of its
addresses is tried in turn, the next 250 ms after the one before began while that one keeps
trying (RFC 8305's "happy eyeballs"), all under one deadline; the first to connect wins.
An address that drops packets (a broken IPv6 route) then costs 250 ms, not the deadline.

Name resolution blocks before the deadline starts (the blocking client has no thread to
give up on it; the system resolver has its own timeouts).
"""

import errno
import os
import selectors
import socket
import time
from collections.abc import Sequence
from typing import Any

STAGGER = 0.25
"""Seconds before the next address is tried while the last is still connecting (trio's)."""


def connect_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """A connected, blocking socket. Raises socket.gaierror when the name does not resolve,
    TimeoutError when no address answered within ``timeout`` seconds, and an ExceptionGroup
    of each address's OSError when every one refused."""
    return connect_first(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)


Address = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]
"""One of getaddrinfo()'s answers."""


def connect_first(addresses: Sequence[Address], timeout: float) -> socket.socket:
    """The first of ``addresses`` to connect, tried as ``connect_tcp`` says."""
    addresses = list(addresses)
    deadline = time.monotonic() + timeout
    errors: list[OSError] = []
    trying: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        try:
            next_at = 0.0
            while addresses or trying:
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError
                if addresses and (now >= next_at or not trying):
                    family, kind, proto, _, address = addresses.pop(0)
                    sock = socket.socket(family, kind, proto)
                    sock.setblocking(False)
                    code = sock.connect_ex(address)
                    if code not in (0, errno.EINPROGRESS):
                        sock.close()
                        errors.append(OSError(code, os.strerror(code)))
                        continue
                    trying.append(sock)
                    selector.register(sock, selectors.EVENT_WRITE)
                    next_at = now + STAGGER
                    continue
                wake = min(deadline, next_at) if addresses else deadline
                for key, _ in selector.select(max(wake - now, 0)):
                    sock = key.fileobj  # type: ignore[assignment]
                    selector.unregister(sock)
                    trying.remove(sock)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code == 0:
                        sock.setblocking(True)
                        return sock
                    sock.close()
                    errors.append(OSError(code, os.strerror(code)))
            raise ExceptionGroup("no address took the connection", errors)
        finally:
            for sock in trying:  # the others, still connecting: the winner is not among them
                sock.close()
