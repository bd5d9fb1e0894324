"""The job engine: runs, stops and streams jobs. Knows nothing of the network."""

from .errors import InvalidRequest as InvalidRequest
from .errors import JobError as JobError
from .errors import JobNotFound as JobNotFound
from .errors import LimitExceeded as LimitExceeded
from .errors import ManagerClosed as ManagerClosed
from .errors import OutputUnavailable as OutputUnavailable
from .errors import SpawnError as SpawnError
from .limits import JobLimits as JobLimits
from .manager import JobManager as JobManager
from .manager import Limits as Limits
from .status import JobState as JobState
from .status import JobStatus as JobStatus
