"""What jogger-server measures, as Prometheus metrics (prometheus_client).

The engine and the transport import no metrics library: each tells an observer of its own
(engine/observer.py, rpc/observer.py) of its events, in plain calls, and answers for its
levels when asked (``JobManager.gauges``, ``RpcServer.load``). ``ServerMetrics`` is both
observers: it counts the events into prometheus_client's counters and histograms, and reads
the levels at each scrape (a collector), so that nothing is kept up to date in between.
jogger-server imports this module only with ``--metrics-listen``.

Each server has a registry of its own, not prometheus_client's global one: two servers in
one process (the tests) never mix. No label takes its values from a set without a bound: no
job ids, no peer addresses; the user only with ``--metrics-per-user`` (see the README).
"""

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from ..engine import JobManager
from ..engine.observer import EngineObserver
from ..rpc.auth import Identity
from ..rpc.observer import ADMISSION_LIMITS, Cause, RpcObserver
from ..rpc.server import RpcServer

CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600)
"""Seconds. A followed Output call lasts as long as its job: the top buckets are those."""
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
"""Seconds; a statement waits at most the store's BUSY_TIMEOUT (5 s) for a lock."""


class ServerMetrics(EngineObserver, RpcObserver):
    """One server's metrics: hand it to the JobManager and the RpcServer as their observer,
    then ``watch`` them; ``render`` is a scrape's answer."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, per_user: bool = False) -> None:
        self.registry = CollectorRegistry()
        self._per_user = per_user
        user = ["user"] if per_user else []
        registry = self.registry
        self._started = Counter(
            "jogger_jobs_started", "Jobs started by this server.", user, registry=registry
        )
        self._ended = Counter(
            "jogger_jobs_ended",
            "Jobs whose end this server recorded (those found ended at start-up included), "
            "by state and reason (empty: none).",
            ["state", "reason"],
            registry=registry,
        )
        self._streamed = Counter(
            "jogger_output_streamed_bytes",
            "Bytes of job output sent to clients (Output calls).",
            user,
            registry=registry,
        )
        self._calls = Counter(
            "jogger_rpc_calls",
            "Calls ended, by method (its gRPC path, or 'unknown') and status code; calls "
            "refused before they began included.",
            ["method", "code", *user],
            registry=registry,
        )
        self._call_seconds = Histogram(
            "jogger_rpc_call_duration_seconds",
            "How long calls took, from their request to their end, by method.",
            ["method"],
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self._handshakes = Counter(
            "jogger_rpc_handshakes_refused",
            "Connections whose handshake did not admit them, by cause: certificate, tls, "
            "timeout, evicted.",
            ["cause"],
            registry=registry,
        )
        self._refused = Counter(
            "jogger_rpc_admission_refused",
            "Connections and calls refused by a transport limit (its flag's name), or while "
            "draining.",
            ["limit"],
            registry=registry,
        )
        self._store_seconds = Histogram(
            "jogger_store_duration_seconds",
            "How long calls to the job store (SQLite) took, their wait for its thread "
            "included, by operation.",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        # Every cause and limit from the start: a rate() needs the zero before the first one.
        for cause in Cause:
            self._handshakes.labels(cause.value)
        for limit in ADMISSION_LIMITS:
            self._refused.labels(limit)
        self._levels = _Levels(per_user)
        registry.register(self._levels)
        ProcessCollector(registry=registry)

    def watch(self, jobs: JobManager, server: RpcServer) -> None:
        """Read the levels (jobs running, supervisors alive, bytes written, the cgroup
        backend; connections, handshakes, calls) from these at each scrape."""
        self._levels.jobs = jobs
        self._levels.server = server

    def render(self) -> bytes:
        """The metrics in Prometheus's text format (``content_type``)."""
        return generate_latest(self.registry)

    # --- the engine's events

    def job_started(self, owner: str) -> None:
        (self._started.labels(owner) if self._per_user else self._started).inc()

    def job_ended(self, state: str, reason: str) -> None:
        self._ended.labels(state, reason).inc()

    def store_call(self, operation: str, seconds: float) -> None:
        self._store_seconds.labels(operation).observe(seconds)

    def output_streamed(self, user: str, size: int) -> None:
        """``size`` bytes of output went to ``user`` (JobsService's ``streamed``)."""
        (self._streamed.labels(user) if self._per_user else self._streamed).inc(size)

    # --- the transport's events

    def call_ended(self, method: str, code: str, seconds: float, identity: Identity | None) -> None:
        self.call_refused(method, code, identity)
        self._call_seconds.labels(method).observe(seconds)

    def call_refused(self, method: str, code: str, identity: Identity | None) -> None:
        if self._per_user:
            self._calls.labels(method, code, identity.user if identity else "").inc()
        else:
            self._calls.labels(method, code).inc()

    def handshake_refused(self, cause: Cause) -> None:
        self._handshakes.labels(cause.value).inc()

    def admission_refused(self, limit: str) -> None:
        self._refused.labels(limit).inc()


class _Levels:
    """What is read at each scrape rather than counted (a prometheus_client collector)."""

    def __init__(self, per_user: bool) -> None:
        self.per_user = per_user
        self.jobs: JobManager | None = None
        self.server: RpcServer | None = None

    def collect(self) -> Iterable[Metric]:
        if self.jobs is not None:
            gauges = self.jobs.gauges()
            running = GaugeMetricFamily(
                "jogger_jobs_running",
                "Jobs that have not ended (adopted ones included).",
                labels=["user"] if self.per_user else None,
                value=None if self.per_user else sum(gauges.running.values()),
            )
            if self.per_user:
                for owner, count in sorted(gauges.running.items()):
                    running.add_metric([owner], count)
            yield running
            queued = GaugeMetricFamily(
                "jogger_jobs_queued",
                "Jobs waiting in the queue for room under the job limits (jog start --queue).",
                labels=["user"] if self.per_user else None,
                value=None if self.per_user else sum(gauges.queued.values()),
            )
            if self.per_user:
                for owner, count in sorted(gauges.queued.items()):
                    queued.add_metric([owner], count)
            yield queued
            yield GaugeMetricFamily(
                "jogger_supervisors_alive",
                "Jobs whose supervisor process is alive (jobs of the local executor).",
                value=gauges.supervisors,
            )
            yield CounterMetricFamily(
                "jogger_output_written_bytes",
                "Bytes jobs wrote into their output logs while this server ran.",
                value=gauges.output_bytes,
            )
            yield InfoMetricFamily(
                "jogger_cgroup_backend",
                "What contains new jobs: backend cgroup2, cgroup1, none, or slurm.",
                value={"backend": gauges.containment},
            )
        if self.server is not None:
            load = self.server.load()
            yield GaugeMetricFamily(
                "jogger_rpc_connections_open",
                "Open connections, those in their TLS handshake included.",
                value=load.connections,
            )
            yield GaugeMetricFamily(
                "jogger_rpc_handshakes_in_progress",
                "Connections in their TLS handshake.",
                value=load.handshakes,
            )
            yield GaugeMetricFamily(
                "jogger_rpc_calls_in_flight", "Calls in flight.", value=load.calls
            )
