"""``jogger-server``: the job engine behind gRPC over mutual TLS.

rpc server nursery (connections)        closed last
└── job manager nursery (jobs)          stopped second
    └── listeners + SIGHUP watcher      cancelled first, on SIGTERM/SIGINT
"""

import logging
import os
import signal
import sys
from functools import partial
from typing import TYPE_CHECKING

import trio

from .._exceptiongroups import single_errors
from ..engine import JobError, JobManager
from ..rpc.address import format_address
from ..rpc.credentials import TlsHolder
from ..rpc.server import ListenError, open_rpc_server
from ..rpc.tls import TlsFileError
from . import certificates
from .audit import AuditLog
from .auditfile import AuditFileError
from .certificates import CertificateReload
from .config import ConfigError, ServerConfig, load
from .hangup import Reload, watch_hangups
from .health import HEALTH, HealthService
from .logs import formatter
from .notify import NOT_NOTIFYING, Notifier
from .reflection import ReflectionService
from .scrape import MetricsListenError, MetricsSettings, serve_scrapes
from .service import JOBS, JobsService

if TYPE_CHECKING:
    from .metrics import ServerMetrics

log = logging.getLogger("jogger.server")


async def serve(
    config: ServerConfig,
    *,
    notify: Notifier = NOT_NOTIFYING,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGTERM or SIGINT (or cancellation), then shut down gracefully.

    Reports the bound addresses through ``task_status`` once accepting connections, and
    tells ``notify`` (the service manager) each change of state.
    """
    notify.status(f"starting: recovering the jobs of {config.state_dir}")
    tls = TlsHolder(certificates.load(config))
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
    audit = AuditLog(config.audit_log)  # opened first below, closed once every call has ended
    streamed = metrics.output_streamed if metrics else None
    jobs_service = JobsService(
        jobs,
        config.run_as,
        config.isolation,
        audit,
        streamed=streamed,
        timeouts=config.timeouts,
        queue_by_default=config.queue_by_default,
    )
    health = HealthService([JOBS.full_name])
    methods = {
        **jobs_service.methods(),
        **health.methods(),
        **ReflectionService([JOBS, HEALTH]).methods(),
    }
    with single_errors(), audit:
        async with (
            open_rpc_server(
                tls,
                methods,
                drain_timeout=config.drain_timeout,
                limits=config.transport,
                on_authentication_failure=audit.authentication_failure,
                observer=metrics,
            ) as server,
            jobs,
            trio.open_nursery() as nursery,
        ):
            # SIGTERM and SIGINT are caught from before any listener starts, and so before
            # READY=1 and the log's "listening on": a service manager (or a test) may send
            # SIGTERM at once, and its default action would end us without a shutdown. Once
            # the first has come (or the start failed) the block is left, and another is
            # handled as before: SIGTERM ends us at once, SIGINT raises KeyboardInterrupt.
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                certificates_reload = CertificateReload(
                    config, tls, on_reload=audit.certificate_reload
                )
                # The audit log first: a reload's own line then goes to the file a rotation made.
                reloads: list[Reload] = [*audit.reloads(), ("certificates", certificates_reload)]
                await nursery.start(watch_hangups, reloads, notify)
                nursery.start_soon(certificates.watch_crl_expiry, tls)
                if metrics is not None and config.metrics is not None:
                    metrics.watch(jobs, server)
                    await nursery.start(
                        serve_scrapes, config.metrics.listen, metrics.render, metrics.content_type
                    )
                bound = await nursery.start(server.listen, config.listen)
                addresses = " ".join(format_address(host, port) for host, port in bound)
                log.info(
                    "listening on %s state_dir=%s cgroups=%s run_as=%s %s %s queue_by_default=%s",
                    addresses,
                    config.state_dir,
                    jobs.describe_containment(),
                    config.run_as.describe(),
                    config.isolation.describe(),
                    config.timeouts.describe(),
                    "yes" if config.queue_by_default else "no",
                )
                if config.run_as.mode == "server" and os.geteuid() == 0:
                    log.warning("--run-as server as root: every caller's jobs run as root")
                task_status.started(bound)
                notify.ready(f"listening on {addresses}")
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    break
            kept = config.on_shutdown == "keep"
            notify.stopping(f"shutting down: {'keeping' if kept else 'stopping'} the jobs")
            health.shut_down()
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


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter("text"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # First: nothing the server starts may inherit the service manager's socket.
    notify = Notifier.from_environment()
    try:
        config = load(argv)
        handler.setFormatter(formatter(config.log_format))
        trio.run(partial(serve, config, notify=notify))
    except (ConfigError, JobError, ListenError, AuditFileError, MetricsListenError) as exc:
        print(f"jogger-server: error: {exc}", file=sys.stderr)
        return 1
    except TlsFileError as exc:
        print(f"jogger-server: error: {certificates.describe(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"jogger-server: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
