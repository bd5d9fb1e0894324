"""jogger-server's settings: flags first, then JOGGER_* variables, then defaults."""

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from .._units import parse_size
from .._version import VersionAction
from ..engine import InvalidRequest, Isolation, IsolationUnavailable, ManagerLimits, Retention
from ..engine.cgroups import CgroupMode
from ..engine.isolation import check_available
from ..engine.limits import JobLimits, parse_limits
from ..engine.manager import ExecutorName, OnShutdown
from ..engine.slurm.executor import SlurmOptions
from ..rpc.address import parse_address
from ..rpc.admission import TransportLimits
from .accounts import DEFAULT_JOB_USER, MODES, BadPolicy, RunAs, default_mode
from .isolation import IsolationPolicy
from .logs import LOG_FORMATS, LogFormat
from .scrape import MetricsSettings, metrics_settings
from .timeouts import TimeoutPolicy

DEFAULT_LISTEN = "127.0.0.1:7654"
DEFAULT_RETAIN_JOBS = 100_000
DEFAULT_RETAIN_DAYS = 30.0


@dataclass(frozen=True)
class ServerConfig:
    listen: list[tuple[str, int]]
    state_dir: Path
    ca_cert: Path
    cert: Path
    key: Path
    grace: float
    drain_timeout: float
    limits: ManagerLimits
    cgroups: CgroupMode = "auto"
    default_limits: JobLimits = field(default_factory=JobLimits)
    max_limits: JobLimits = field(default_factory=JobLimits)
    user_limits: JobLimits = field(default_factory=JobLimits)
    total_limits: JobLimits = field(default_factory=JobLimits)
    retention: Retention = field(default_factory=Retention)
    transport: TransportLimits = field(default_factory=TransportLimits)
    on_shutdown: OnShutdown = "stop"
    audit_log: Path | None = None
    log_format: LogFormat = "text"
    run_as: RunAs = field(default_factory=RunAs)
    """Who runs the jobs. The default here is the engine's own (the server's user); the
    command line's depends on whether the server is root (see load)."""
    isolation: IsolationPolicy = field(default_factory=IsolationPolicy)
    executor: ExecutorName = "local"
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    crl: Path | None = None
    """The CRL file (``--crl``): revoked client certificates fail the handshake."""
    metrics: MetricsSettings | None = None
    """--metrics-listen and --metrics-per-user; None: no metrics served."""
    timeouts: TimeoutPolicy = field(default_factory=TimeoutPolicy)
    """--default-timeout and --max-timeout."""
    queue_by_default: bool = False
    """--queue-by-default: every Start and Restart queues, asked or not."""


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/jogger")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "jogger"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jogger-server",
        description="Run jobs for jog clients, over gRPC with mutual TLS.",
        epilog=(
            "environment: JOGGER_CA_CERT_FILE, JOGGER_SERVER_CERT_FILE, JOGGER_SERVER_KEY_FILE, "
            "JOGGER_CRL_FILE (the TLS files), JOGGER_LISTEN, JOGGER_STATE_DIR. Flags win over the "
            "environment. SIGTERM or SIGINT shut down gracefully: jobs are stopped and streams "
            "finished (or, with --on-shutdown keep, left running for the next server)."
        ),
    )
    p.add_argument("--version", action=VersionAction)
    p.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help=f"address to serve on; repeat for more (default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where job records and output are kept "
        "(default /var/lib/jogger as root, else $XDG_STATE_HOME/jogger)",
    )
    p.add_argument(
        "--retain-jobs",
        type=int,
        default=DEFAULT_RETAIN_JOBS,
        metavar="N",
        help=f"keep at most N finished jobs, deleting the oldest first "
        f"(default {DEFAULT_RETAIN_JOBS}; 0 for no limit)",
    )
    p.add_argument(
        "--retain-days",
        type=float,
        default=DEFAULT_RETAIN_DAYS,
        metavar="D",
        help=f"delete finished jobs D days after they ended (default {DEFAULT_RETAIN_DAYS:g}; "
        "0 for no limit)",
    )
    p.add_argument(
        "--max-state-bytes",
        type=_size,
        default=0,
        metavar="SIZE",
        help="delete the oldest finished jobs while the state dir (output logs and database) "
        "is larger than SIZE, such as 10G (default: no limit)",
    )
    p.add_argument("--ca-cert", type=Path, help="CA certificate that signs client certs")
    p.add_argument("--cert", type=Path, help="the server's certificate")
    p.add_argument("--key", type=Path, help="the server's private key")
    p.add_argument(
        "--crl",
        type=Path,
        metavar="FILE",
        help="PEM CRLs, one per CA of --ca-cert (jogger certs revoke keeps one): revoked "
        "client certificates fail the TLS handshake. SIGHUP rereads it, and the other TLS "
        "files, for new connections (default: none)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds between SIGTERM and SIGKILL when stopping (default 10)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=5.0,
        help="seconds streams get to finish at shutdown (default 5)",
    )
    p.add_argument(
        "--on-shutdown",
        choices=["stop", "keep"],
        default="stop",
        help=(
            "what a graceful shutdown does to running jobs: stop them (default), or keep "
            "them running for the next server on this state dir, which adopts them (for "
            "upgrades). A crash always leaves them running."
        ),
    )
    p.add_argument(
        "--audit-log",
        type=Path,
        metavar="FILE",
        help="append one JSON line per security-relevant event to FILE (created 0600; "
        "reopened on SIGHUP, for logrotate)",
    )
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="the server's log on stderr: text lines (default) or one JSON object per line",
    )
    p.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default="local",
        help="what runs the jobs: local (this host, each in its own supervisor and cgroup; "
        "the default) or slurm (each a Slurm batch job, submitted as the job's account with "
        "sbatch; the state dir must be on a file system the nodes share)",
    )
    p.add_argument("--slurm-partition", help="the Slurm partition jobs go to (default: Slurm's)")
    p.add_argument("--slurm-qos", help="the Slurm QOS jobs run under (default: Slurm's)")
    p.add_argument(
        "--slurm-poll",
        type=float,
        default=SlurmOptions().poll_interval,
        help="seconds between asking Slurm about running jobs (default %(default)s)",
    )
    p.add_argument(
        "--cgroups",
        choices=["auto", "cgroup2", "cgroup1", "none"],
        default="auto",
        help="how jobs are contained (default auto: cgroup v2, else v1, else none)",
    )
    p.add_argument(
        "--memory-target",
        type=_size,
        help="memory the jobs share (default: all of the machine's); by default each job "
        "may use 20%% of it, and at most all of it",
    )
    p.add_argument(
        "--default-limits",
        type=_limits,
        default=JobLimits(),
        metavar="cpu=C,cpu-weight=W,memory=M,io-weight=W,pids=N",
        help="limits of jobs that do not ask for their own (default memory=20%% of the "
        "target, pids=4096)",
    )
    p.add_argument(
        "--max-limits",
        type=_limits,
        default=JobLimits(),
        metavar="cpu=C,cpu-weight=W,memory=M,io-weight=W,pids=N",
        help="the most a job may ask for (default cpu=all cores, memory=the target, pids=65536)",
    )
    p.add_argument(
        "--user-limits",
        type=_limits,
        default=JobLimits(),
        metavar="cpu=C,cpu-weight=W,memory=M,pids=N",
        help="what all the jobs of one user may use together, their share of the CPU "
        "included (default memory=50%% of the target, pids=a quarter of --total-limits's, "
        "cpu-weight=100: every user the same, however many jobs they run)",
    )
    p.add_argument(
        "--total-limits",
        type=_limits,
        default=JobLimits(),
        metavar="memory=M,pids=N",
        help="what all jobs together may use (default memory=the target, pids=half of the "
        "kernel's pid_max)",
    )
    p.add_argument(
        "--run-as",
        choices=MODES,
        help="which local account runs a caller's job: user (the account named like the "
        "certificate's Common Name, else --job-user), fixed (always --job-user) or server "
        "(the server's own user). Jobs as uid 0 under user or fixed are for admins only. "
        "Default: fixed as root, else server",
    )
    p.add_argument(
        "--job-user",
        default=DEFAULT_JOB_USER,
        metavar="NAME",
        help=f"the local account for --run-as fixed, and for callers without an account "
        f"under --run-as user (default {DEFAULT_JOB_USER})",
    )
    p.add_argument(
        "--isolate-default",
        default="",
        metavar="KINDS",
        help="the isolation of jobs that do not ask for their own: namespaces among pid, "
        "mount, net, ipc and uts, comma-separated, or all; and read-only-root "
        "(default: none). Needs root",
    )
    p.add_argument(
        "--require-isolation",
        default="",
        metavar="KINDS",
        help="isolation added to every job, whatever it asks for; a job that asks for the "
        "host's network when net is required is refused (default: none). Needs root",
    )
    p.add_argument(
        "--default-timeout",
        metavar="DURATION",
        help="the timeout of jobs that do not ask for one: 90s, 15m, 2h, 1h30m (default: "
        "none; --max-timeout's, if that is set)",
    )
    p.add_argument(
        "--max-timeout",
        metavar="DURATION",
        help="the longest timeout a job may ask for; longer is refused (default: none)",
    )
    p.add_argument(
        "--metrics-listen",
        action="append",
        metavar="HOST:PORT",
        help="serve Prometheus metrics over plain HTTP (GET /metrics) on this address; repeat "
        "for more (default: none). No TLS, no authentication: use loopback",
    )
    p.add_argument(
        "--metrics-per-user",
        action="store_true",
        help="give the metrics of jobs, calls and output a user label (a series per user)",
    )
    p.add_argument("--max-jobs", type=int, default=ManagerLimits().max_jobs)
    p.add_argument("--max-jobs-per-user", type=int, default=ManagerLimits().max_jobs_per_owner)
    p.add_argument("--max-output-bytes", type=int, default=ManagerLimits().max_output_bytes)
    p.add_argument(
        "--max-queued",
        type=int,
        default=ManagerLimits().max_queued,
        metavar="N",
        help="jobs that may wait in the queue (jog start --queue) for room under --max-jobs "
        f"and --max-jobs-per-user, all users together (default {ManagerLimits().max_queued}; "
        "0: no queue)",
    )
    p.add_argument(
        "--max-queued-per-user",
        type=int,
        default=ManagerLimits().max_queued_per_owner,
        metavar="N",
        help="jobs of one user that may wait in the queue "
        f"(default {ManagerLimits().max_queued_per_owner})",
    )
    p.add_argument(
        "--queue-by-default",
        action="store_true",
        help="a job the job limits refuse is queued whether or not it asks (jog --queue)",
    )
    transport = TransportLimits()
    for name, kind, metavar, what in _TRANSPORT_FLAGS:
        default = getattr(transport, name)
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=default,
            metavar=metavar,
            help=f"{what} (default {default:g})",
        )
    return p


_TRANSPORT_FLAGS: tuple[tuple[str, type[int] | type[float], str, str], ...] = (
    ("max_connections", int, "N", "connections open at once"),
    ("max_connections_per_user", int, "N", "connections one user may have open"),
    (
        "max_calls_per_user",
        int,
        "N",
        "calls one user may have in flight, each following stream counting as one",
    ),
    (
        "handshake_timeout",
        float,
        "SECONDS",
        "time a new connection gets for its TLS handshake and first HTTP/2 frame",
    ),
    ("max_handshakes_per_host", int, "N", "connections in their TLS handshake from one address"),
    (
        "max_handshakes_per_network",
        int,
        "N",
        "connections in their TLS handshake from one /24 (IPv4) or /64 (IPv6)",
    ),
)
"""The TransportLimits fields that are flags: (field, type, metavar, help)."""


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limits(text: str) -> JobLimits:
    try:
        return parse_limits(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _memory_total() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise ConfigError("cannot read MemTotal from /proc/meminfo")


def job_limits(
    target: int | None, defaults: JobLimits, maxima: JobLimits
) -> tuple[JobLimits, JobLimits]:
    """The RFD's policy: each job gets 20% of the memory target unless it asks for more,
    and at most the target. Flags override each part."""
    target = target or _memory_total()
    base_max = JobLimits(cpu=float(os.cpu_count() or 1), memory=target, pids=65536)
    maxima = maxima.over(base_max)
    default_memory = min(target // 5, maxima.memory or target)
    defaults = defaults.over(JobLimits(memory=default_memory, pids=min(4096, maxima.pids or 4096)))
    return defaults, maxima


def budgets(target: int | None, users: JobLimits, total: JobLimits) -> tuple[JobLimits, JobLimits]:
    """Each user's budget and all jobs' (cgroups/base.py), from the host unless set: all
    jobs get the memory target and half of the kernel's pids (the host keeps the rest);
    a user, half the memory and a quarter of those pids, and the same CPU weight as every
    other user. Flags override each part."""
    target = target or _memory_total()
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    total = total.over(JobLimits(memory=target, pids=max(1024, pid_max // 2)))
    total_pids = total.pids or pid_max
    users = users.over(
        JobLimits(
            memory=min(target // 2, total.memory or target),
            pids=min(total_pids, max(1024, total_pids // 4)),
            cpu_weight=100,
        )
    )
    return users, total


def _file(flag: Path | None, env: str, what: str, option: str) -> Path:
    value = flag or (Path(os.environ[env]) if os.environ.get(env) else None)
    if value is None:
        raise ConfigError(f"no {what}: pass {option} or set {env}")
    if not value.is_file():
        raise ConfigError(f"{what} {value} does not exist or is not a file")
    return value


def load(argv: list[str] | None) -> ServerConfig:
    args = parser().parse_args(argv)
    listen_texts = args.listen or [os.environ.get("JOGGER_LISTEN") or DEFAULT_LISTEN]
    try:
        listen = [parse_address(text) for text in listen_texts]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    state_dir = args.state_dir or (
        Path(os.environ["JOGGER_STATE_DIR"])
        if os.environ.get("JOGGER_STATE_DIR")
        else default_state_dir()
    )
    if args.executor == "slurm":
        # The cluster's nodes, not this host, bound a job: only what the flags say.
        cluster = JobLimits(cpu=args.default_limits.cpu, memory=args.default_limits.memory)
        defaults, maxima = cluster, args.max_limits
    else:
        defaults, maxima = job_limits(args.memory_target, args.default_limits, args.max_limits)
    if not 0.05 <= args.slurm_poll <= 60:
        raise ConfigError("--slurm-poll must be between 0.05 and 60 seconds")
    user_limits, total_limits = budgets(args.memory_target, args.user_limits, args.total_limits)
    if total_limits.cpu is not None or total_limits.cpu_weight is not None:
        raise ConfigError("--total-limits takes memory and pids only")
    if user_limits.io_weight is not None or total_limits.io_weight is not None:
        raise ConfigError("an I/O weight is per job only: use --default-limits")
    if args.retain_jobs < 0 or not args.retain_days >= 0:
        raise ConfigError("--retain-jobs and --retain-days must not be negative")
    try:
        transport = TransportLimits(
            max_handshakes=max(1, args.max_connections // 4),
            **{name: getattr(args, name) for name, *_ in _TRANSPORT_FLAGS},
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        run_as = RunAs.create(args.run_as or default_mode(), args.job_user)
    except BadPolicy as exc:
        raise ConfigError(str(exc)) from None
    try:
        metrics = metrics_settings(args.metrics_listen, args.metrics_per_user)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        timeouts = TimeoutPolicy.create(args.default_timeout, args.max_timeout)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    isolation = IsolationPolicy(
        default=_isolation("--isolate-default", args.isolate_default),
        required=_isolation("--require-isolation", args.require_isolation),
    )
    return ServerConfig(
        listen=listen,
        state_dir=state_dir,
        ca_cert=_file(args.ca_cert, "JOGGER_CA_CERT_FILE", "CA certificate", "--ca-cert"),
        cert=_file(args.cert, "JOGGER_SERVER_CERT_FILE", "server certificate", "--cert"),
        key=_file(args.key, "JOGGER_SERVER_KEY_FILE", "server key", "--key"),
        crl=_file(args.crl, "JOGGER_CRL_FILE", "CRL", "--crl")
        if args.crl or os.environ.get("JOGGER_CRL_FILE")
        else None,
        grace=args.grace,
        drain_timeout=args.drain_timeout,
        limits=ManagerLimits(
            max_jobs=args.max_jobs,
            max_jobs_per_owner=args.max_jobs_per_user,
            max_output_bytes=args.max_output_bytes,
            max_queued=args.max_queued,
            max_queued_per_owner=args.max_queued_per_user,
        ),
        cgroups=args.cgroups,
        default_limits=defaults,
        max_limits=maxima,
        user_limits=user_limits,
        total_limits=total_limits,
        retention=Retention(
            max_jobs=args.retain_jobs or None,
            max_days=args.retain_days or None,
            max_state_bytes=args.max_state_bytes or None,
        ),
        transport=transport,
        on_shutdown=args.on_shutdown,
        audit_log=args.audit_log.absolute() if args.audit_log else None,
        log_format=args.log_format,
        executor=args.executor,
        slurm=SlurmOptions(
            partition=args.slurm_partition, qos=args.slurm_qos, poll_interval=args.slurm_poll
        ),
        run_as=run_as,
        isolation=isolation,
        metrics=metrics,
        timeouts=timeouts,
        queue_by_default=args.queue_by_default,
    )


def _isolation(flag: str, text: str) -> Isolation:
    """The isolation ``flag`` names, checked against this host: a policy the server could
    not apply would refuse every job."""
    try:
        isolation = Isolation.parse(text)
        check_available(isolation)
    except (InvalidRequest, IsolationUnavailable) as exc:
        raise ConfigError(f"{flag} {text}: {exc}") from None
    return isolation
