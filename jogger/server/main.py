"""``jogger-server``: the job engine behind gRPC over mutual TLS.

rpc server nursery (connections)        closed last
└── job manager nursery (jobs)          stopped second
    └── listeners + SIGHUP watcher      cancelled first, on SIGTERM/SIGINT
"""

import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import trio

from .._exceptiongroups import single_errors
from .._text import escape
from ..engine import JobError, JobManager
from ..rpc.address import format_address
from ..rpc.server import ListenError, open_rpc_server
from ..rpc.tls import TlsFileError, load_issuers, server_context
from .config import ConfigError, ServerConfig, load
from .hangup import Reload, watch_hangups
from .scrape import MetricsListenError, MetricsSettings, serve_scrapes
from .service import HealthService, JobsService

if TYPE_CHECKING:
    from .metrics import ServerMetrics

log = logging.getLogger("jogger.server")


async def serve(
    config: ServerConfig,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGTERM or SIGINT (or cancellation), then shut down gracefully.

    Reports the bound addresses through ``task_status`` once accepting connections.
    """
    context = server_context(config.ca_cert, config.cert, config.key)
    issuers = load_issuers(config.ca_cert)
    metrics = open_metrics(config.metrics)
    # Entered below, inside the rpc server's block: its calls outlive the jobs, so that
    # followers get a stopped job's last bytes. The servicers need it before that.
    jobs = JobManager(
        config.state_dir,
        limits=config.limits,
        grace=config.grace,
        drain_timeout=config.drain_timeout,
        cgroups=config.cgroups,
        default_limits=config.default_limits,
        max_limits=config.max_limits,
        user_limits=config.user_limits,
        total_limits=config.total_limits,
        retention=config.retention,
        on_shutdown=config.on_shutdown,
        executor=config.executor,
        slurm=config.slurm,
        observer=metrics,
    )
    streamed = metrics.output_streamed if metrics else None
    jobs_service = JobsService(jobs, config.run_as, config.isolation, streamed=streamed)
    methods = {**jobs_service.methods(), **HealthService().methods()}
    with single_errors():
        async with (
            open_rpc_server(
                context,
                methods,
                client_issuers=issuers,
                drain_timeout=config.drain_timeout,
                limits=config.transport,
                observer=metrics,
            ) as server,
            jobs,
            trio.open_nursery() as nursery,
        ):
            reloads: list[Reload] = []
            await nursery.start(watch_hangups, reloads)
            if metrics is not None and config.metrics is not None:
                metrics.watch(jobs, server)
                await nursery.start(
                    serve_scrapes, config.metrics.listen, metrics.render, metrics.content_type
                )
            bound = await nursery.start(server.listen, config.listen)
            addresses = " ".join(format_address(host, port) for host, port in bound)
            log.info(
                "listening on %s state_dir=%s cgroups=%s run_as=%s %s",
                addresses,
                config.state_dir,
                jobs.describe_containment(),
                config.run_as.describe(),
                config.isolation.describe(),
            )
            if config.run_as.mode == "server" and os.geteuid() == 0:
                log.warning("--run-as server as root: every caller's jobs run as root")
            task_status.started(bound)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    break
            # Stop accepting; leaving the blocks then stops every job, lets the streams
            # finish with the jobs' last bytes, and finally closes the connections.
            nursery.cancel_scope.cancel()
    log.info("shut down")


def open_metrics(settings: MetricsSettings | None) -> "ServerMetrics | None":
    """The server's metrics, with --metrics-listen; None without."""
    if settings is None:
        return None
    # Imported here: prometheus_client costs a server without metrics some 70 ms at start-up.
    from .metrics import ServerMetrics  # noqa: PLC0415

    return ServerMetrics(per_user=settings.per_user)


class OneLineFormatter(logging.Formatter):
    """Log lines that stay one line each: what a peer or a job put into a message (a
    :path, an argv) has its control characters escaped, so it cannot forge a line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        OneLineFormatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        config = load(argv)
        trio.run(serve, config)
    except (ConfigError, JobError, ListenError, MetricsListenError) as exc:
        print(f"jogger-server: error: {exc}", file=sys.stderr)
        return 1
    except TlsFileError as exc:
        flag = {"ca": "--ca-cert", "cert": "--cert", "key": "--key"}.get(exc.role or "", "")
        print(f"jogger-server: error: {flag + ' ' if flag else ''}{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"jogger-server: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
