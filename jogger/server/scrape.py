"""The metrics endpoint (``--metrics-listen``): plain HTTP/1.x, in the server's own nursery.

One request a connection, closed after its answer. ``GET /metrics`` (or HEAD) gets the
metrics; another path 404, another method 405, anything that is not an HTTP/1.x request
400, a request head over MAX_HEAD bytes 431. It must not be a way to stall or exhaust the
server, so everything a scraper can hold is bounded:

- at most MAX_SCRAPES connections are served at once; more are closed on accept;
- a connection has READ_TIMEOUT seconds for its whole request head, however it drips in (a
  slowloris gets no more time by sending a byte now and then), and WRITE_TIMEOUT seconds
  to take the answer;
- the metrics are rendered at most once per RENDER_INTERVAL: scrapes closer together get
  the same rendering, so that the rate of scrapes does not set the CPU they cost.

There is no TLS and no authentication: serve it on loopback, or on an address that only
Prometheus can reach (the README says why). A non-loopback address gets a warning.
"""

import ipaddress
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

import trio

from ..rpc.address import format_address, parse_address
from ..rpc.server import open_listeners, serve_listener
from ..rpc.throttle import LogThrottle

log = logging.getLogger("jogger.server")
throttled = LogThrottle(log)

PATH = "/metrics"
MAX_SCRAPES = 8
"""Connections served at once."""
MAX_HEAD = 8192
"""Bytes of request line and headers; Prometheus sends a few hundred."""
READ_TIMEOUT = 5.0
"""Seconds a connection has to send its whole request head."""
WRITE_TIMEOUT = 10.0
"""Seconds a connection has to take the answer."""
RENDER_INTERVAL = 1.0
"""Seconds a rendering of the metrics serves scrapes for. Prometheus scrapes every 15 s or
so; a rendering walks every job in memory (a few ms for thousands)."""
_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (\S{1,4096}) HTTP/1\.[01]")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``--metrics-listen`` and ``--metrics-per-user``."""

    listen: tuple[tuple[str, int], ...]
    per_user: bool = False
    """Whether metrics of jobs, calls and output carry a ``user`` label (see the README)."""


class MetricsListenError(Exception):
    """A --metrics-listen address cannot be had; ``str()`` names it and says why."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        reason = (error.strerror or str(error)).lower()
        super().__init__(f"--metrics-listen {format_address(host, port)}: cannot listen: {reason}")


def metrics_settings(listen: Sequence[str] | None, per_user: bool) -> MetricsSettings | None:
    """The settings the flags give: None without --metrics-listen. ValueError with a message
    for users for an address that is not HOST:PORT, or --metrics-per-user alone."""
    if not listen:
        if per_user:
            raise ValueError("--metrics-per-user needs --metrics-listen")
        return None
    addresses = []
    for text in listen:
        try:
            host, port = parse_address(text, default_port=-1)
        except ValueError as exc:
            raise ValueError(f"--metrics-listen: {exc}") from None
        if port < 0:
            raise ValueError(f"--metrics-listen {text!r}: give a port, as HOST:PORT")
        addresses.append((host, port))
    return MetricsSettings(tuple(addresses), per_user)


async def serve_scrapes(
    addresses: Sequence[tuple[str, int]],
    render: Callable[[], bytes],
    content_type: str,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer scrapes on every address with what ``render`` makes, until cancelled.

    Reports the bound (host, port) pairs once listening. Raises MetricsListenError if an
    address cannot be had.
    """
    listeners = await open_listeners(addresses, MetricsListenError)
    bound = [listener.socket.getsockname()[:2] for listener in listeners]
    shown = " ".join(format_address(host, port) for host, port in bound)
    log.info("metrics on %s (plain HTTP, GET %s)", shown, PATH)
    for host, _ in addresses:
        if not _is_loopback(host):
            log.warning(
                "--metrics-listen %s is not a loopback address: anyone who can reach it reads "
                "the metrics (plain HTTP, no authentication)",
                host,
            )
    async with trio.open_nursery() as nursery:
        endpoint = _Endpoint(nursery, render, content_type)
        for listener in listeners:
            nursery.start_soon(serve_listener, listener, endpoint.admit)
        task_status.started(bound)


class _Endpoint:
    def __init__(
        self, nursery: trio.Nursery, render: Callable[[], bytes], content_type: str
    ) -> None:
        self._nursery = nursery
        self._render = render
        self._content_type = content_type
        self._active = 0
        self._body = b""
        self._rendered_at = -math.inf

    async def admit(self, stream: trio.SocketStream) -> None:
        if self._active >= MAX_SCRAPES:
            throttled.log(
                "metrics-busy",
                logging.WARNING,
                "metrics: %d scrapes in progress, the limit: a new connection is closed",
                self._active,
            )
            await trio.aclose_forcefully(stream)
            return
        self._active += 1
        self._nursery.start_soon(self._answer, stream)

    async def _answer(self, stream: trio.SocketStream) -> None:
        try:
            head = await _read_head(stream)
            if head is None:
                return  # gone, or too slow: nobody to answer
            answer = self._respond(head)
            with trio.move_on_after(WRITE_TIMEOUT):
                await stream.send_all(answer)
        except trio.BrokenResourceError:
            pass  # the scraper hung up (or reset) first
        finally:
            self._active -= 1
            await trio.aclose_forcefully(stream)

    def _respond(self, head: bytes) -> bytes:
        if len(head) > MAX_HEAD:
            return _response(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        line = _REQUEST_LINE.fullmatch(head.split(b"\n", 1)[0].rstrip(b"\r"))
        if line is None:
            return _response(HTTPStatus.BAD_REQUEST)
        method, target = line.group(1), line.group(2)
        if method not in (b"GET", b"HEAD"):
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, extra="Allow: GET, HEAD\r\n")
        if target.split(b"?", 1)[0] != PATH.encode():
            return _response(HTTPStatus.NOT_FOUND)
        try:
            body = self._rendering()
        except Exception as exc:  # noqa: BLE001 - a bug in a collector fails the scrape only
            throttled.log("metrics-render", logging.ERROR, "rendering the metrics failed: %r", exc)
            return _response(HTTPStatus.INTERNAL_SERVER_ERROR)
        return _response(HTTPStatus.OK, body, self._content_type, head_only=method == b"HEAD")

    def _rendering(self) -> bytes:
        now = trio.current_time()
        if now - self._rendered_at >= RENDER_INTERVAL:
            self._body = self._render()
            self._rendered_at = now
        return self._body


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request line and headers; more than MAX_HEAD bytes once that many came without
    their end; None if the peer left or READ_TIMEOUT passed first."""
    head = bytearray()
    with trio.move_on_after(READ_TIMEOUT):
        while len(head) <= MAX_HEAD:
            data = await stream.receive_some(MAX_HEAD + 1 - len(head))
            if not data:
                return None
            head += data
            end = _END_OF_HEAD.search(head)
            if end is not None:
                return bytes(head[: end.start()])
        return bytes(head)
    return None


def _response(
    status: HTTPStatus,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
    extra: str = "",
) -> bytes:
    if not body and status is not HTTPStatus.OK:
        body = f"{status.value} {status.phrase}\n".encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode() + (b"" if head_only else body)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything
