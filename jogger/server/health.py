"""grpc.health.v1.Health (grpc/grpc doc/health-checking.md): Check, List and Watch.

The server is SERVING from the start until it begins to shut down (``shut_down()``, on
SIGTERM), and NOT_SERVING from then on: while it stops its jobs and lets their followers
drain, probes and watchers already see it going. It does not ask the job manager (which has
no public flag for it). Once the server drains its calls, new calls (checks too) are refused
with UNAVAILABLE, and each Watch sends NOT_SERVING (if it has not yet) and ends with
UNAVAILABLE, rather than hold the shutdown up: a watch has no end of its own.

The services known by name are the server as a whole ("") and those given; any other is
NOT_FOUND to Check, and SERVICE_UNKNOWN to Watch, which keeps the stream open as the
protocol asks. Watchers need no bound of their own: each is a call, under the transport's
limits (128 calls per connection, ``--max-calls-per-user``).
"""

from collections.abc import AsyncIterator, Iterable

import trio

from ..rpc.errors import RpcError, StatusCode
from ..rpc.method import Call, Method, service_methods
from ..standard.grpc.health.v1 import health_pb2

HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
"""The service, as its proto declares it."""
MAX_LISTED = 100
"""The most services List may return, by the protocol."""


class HealthService:
    def __init__(self, services: Iterable[str]) -> None:
        self._services = ("", *services)
        self._serving = True
        self._changed = trio.Event()
        """Set, and replaced, when the status changes."""

    def shut_down(self) -> None:
        """The server has begun to shut down: every service is NOT_SERVING from now on, and
        every watcher is told."""
        if self._serving:
            self._serving = False
            self._changed.set()
            self._changed = trio.Event()

    def _status(
        self, service: str, *, draining: bool = False
    ) -> health_pb2.HealthCheckResponse.ServingStatus:
        if service not in self._services:
            return health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        if self._serving and not draining:
            return health_pb2.HealthCheckResponse.SERVING
        return health_pb2.HealthCheckResponse.NOT_SERVING

    async def check(
        self, call: Call, request: health_pb2.HealthCheckRequest
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self._services:
            raise RpcError(StatusCode.NOT_FOUND, f"unknown service {request.service[:100]!r}")
        return health_pb2.HealthCheckResponse(status=self._status(request.service))

    async def list(
        self, call: Call, request: health_pb2.HealthListRequest
    ) -> health_pb2.HealthListResponse:
        if len(self._services) > MAX_LISTED:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, f"more than {MAX_LISTED} services")
        response = health_pb2.HealthListResponse()
        for service in self._services:
            response.statuses[service].status = self._status(service)
        return response

    async def watch(
        self, call: Call, request: health_pb2.HealthCheckRequest
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """The status at once, then each change, until the client leaves or the server
        drains."""
        sent: health_pb2.HealthCheckResponse.ServingStatus | None = None
        while True:
            changed = self._changed  # before reading the status: no change falls between
            draining = call.draining.is_set()
            status = self._status(request.service, draining=draining)
            if status != sent:
                yield health_pb2.HealthCheckResponse(status=status)
                sent = status
            if draining:
                raise RpcError(StatusCode.UNAVAILABLE, "the server is shutting down")
            await _first_of(changed, call.draining)

    def methods(self) -> dict[str, Method]:
        handlers = {
            "Check": Method(health_pb2.HealthCheckRequest, unary=self.check),
            "List": Method(health_pb2.HealthListRequest, unary=self.list),
            "Watch": Method(health_pb2.HealthCheckRequest, stream=self.watch),
        }
        return service_methods(HEALTH, handlers)


async def _first_of(*events: trio.Event) -> None:
    """Return once one of ``events`` is set."""
    async with trio.open_nursery() as nursery:
        for event in events:
            nursery.start_soon(_wait_then_cancel, event, nursery.cancel_scope)


async def _wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()  # one has happened: stop waiting for the others
