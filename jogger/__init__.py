"""Jogger: a remote job runner for Linux. ``jogger.JobManager`` is the embeddable engine."""

from .engine import InvalidRequest as InvalidRequest
from .engine import JobError as JobError
from .engine import JobLimits as JobLimits
from .engine import JobManager as JobManager
from .engine import JobNotFound as JobNotFound
from .engine import JobState as JobState
from .engine import JobStatus as JobStatus
from .engine import LimitExceeded as LimitExceeded
from .engine import Limits as Limits
from .engine import ManagerClosed as ManagerClosed
from .engine import OutputUnavailable as OutputUnavailable
from .engine import SpawnError as SpawnError
