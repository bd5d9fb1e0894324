"""The local executor: each job spawned on this host by a supervisor of its own
(supervisor.py, supervise.c), in a cgroup of the manager's backend (cgroups/)."""

from pathlib import Path

import trio

from .cgroups import Backend, JobGroup
from .executor import Execution, Spec
from .isolation import check_available
from .limits import JobLimits
from .status import JobStatus
from .supervisor import launch
from .times import times_path

TIME_INDEX = True
"""Whether supervisors keep their logs' time index (times.py). Only bench/timestamps.py
turns it off, to measure what the index costs. A module global, not a LocalExecutor or
ManagerLimits parameter, on purpose: a job without an index loses --since and --timestamps
for good, so no configuration should offer it; the bench sets it around one run, on a
manager of its own, and sets it back."""
SPAWNERS = 4
"""Worker threads that may spawn supervisors at once (each is held only until its
supervisor's exec): enough to keep two cores busy, bounded however many starts come."""


class LocalExecutor:
    name = "local"

    def __init__(
        self,
        backend: Backend,
        *,
        program: Path,
        run_dir: Path,
        max_output_bytes: int,
        stop_timeout: float,
    ) -> None:
        self._backend = backend
        self._program = program
        self._run_dir = run_dir
        self._max_output_bytes = max_output_bytes
        self._stop_timeout = stop_timeout
        self._spawners = trio.CapacityLimiter(SPAWNERS)

    @property
    def containment(self) -> str:
        return self._backend.containment

    def check(self, spec: Spec) -> None:
        check_available(spec.isolation)

    def limits(self, requested: JobLimits, defaults: JobLimits) -> JobLimits:
        return requested.over(defaults)

    def group(self, spec: Spec) -> JobGroup:
        return self._backend.create(spec.owner, spec.job_id, spec.limits)

    def group_of(self, record: JobStatus) -> JobGroup:
        return self._backend.adopt(record.owner, record.id, record.limits)

    async def run(self) -> None:
        # Nothing beside the jobs: each supervisor watches its own.
        await trio.lowlevel.checkpoint()

    async def start(self, spec: Spec, group: JobGroup, log_path: Path, log_fd: int) -> Execution:
        # The supervisor makes the index at its first record (supervise.c, O_EXCL):
        # nothing of it is on the start's path.
        index = times_path(log_path)
        try:
            return await self._launch(spec, group, log_fd, index if TIME_INDEX else None)
        except BaseException:
            index.unlink(missing_ok=True)
            raise

    async def _launch(
        self, spec: Spec, group: JobGroup, log_fd: int, index: Path | None
    ) -> Execution:
        return await launch(
            self._program,
            spec.job_id,
            spec.argv,
            cwd=spec.cwd,
            env=spec.env,
            log_fd=log_fd,
            times_path=index,
            limit=self._max_output_bytes,
            run_dir=self._run_dir,
            stop_timeout=self._stop_timeout,
            placement=group.placement(),
            cgroup_fd=group.birthplace(),
            account=spec.account,
            input=spec.input,
            window=spec.window,
            isolation=spec.isolation,
            timeout=spec.timeout,
            spawners=self._spawners,
        )
