"""The engine's errors. Each class has one meaning; the RPC layer maps each to one status."""


def shown(text: str, limit: int = 80) -> str:
    """``text`` as an error message quotes it: its repr, cut to about ``limit`` characters.
    Messages travel in headers and log lines; a request's value must not make them long."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class JobError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidRequest(JobError):
    """The request itself is malformed: bad argv, env, cwd, owner, offset, grace or job id."""


class SpawnError(JobError):
    """The operating system refused to start the command (not found, not executable, bad cwd)."""


class JobNotFound(JobError):
    """No job with this id belongs to this owner.

    A job that exists but belongs to someone else raises exactly this error, with exactly the
    same message, so that callers cannot probe for other owners' job ids.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class LimitExceeded(JobError):
    """Starting the job would exceed a concurrency limit; retrying later may succeed."""


class NotRestartable(JobError):
    """The job cannot be started again: it has not ended, or its record holds no start
    request (written before servers kept them)."""


class ManagerClosed(JobError):
    """The manager is not running: it was never entered, or it is shutting down."""


class OutputUnavailable(JobError):
    """The job's output log could not be read (for example: out of file descriptors)."""


class TimesUnavailable(JobError):
    """The job's output has no time index (a job an older server started), so a window by
    time, or timestamps, cannot be given."""


class StoreError(JobError):
    """The job history could not be read or written (a full disk, an I/O error, a newer schema)."""


class InputUnavailable(JobError):
    """The job takes no input now: it was started without, its pipe's input has ended, or
    it has ended."""


class InputBusy(JobError):
    """Another writer holds the job's input: one writer at a time."""


class SupervisorUnreachable(JobError):
    """The job's supervisor did not answer (gone, or stuck); the job itself may run on."""


class IsolationUnavailable(JobError):
    """The job asked for isolation this server cannot give (not root, or a kernel without
    that namespace): it is refused, never run without."""
