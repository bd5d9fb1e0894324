"""The job engine: runs, stops and streams jobs. Knows nothing of the network."""

from .account import Account as Account
from .errors import InputBusy as InputBusy
from .errors import InputUnavailable as InputUnavailable
from .errors import InvalidRequest as InvalidRequest
from .errors import IsolationUnavailable as IsolationUnavailable
from .errors import JobError as JobError
from .errors import JobNotFound as JobNotFound
from .errors import LimitExceeded as LimitExceeded
from .errors import ManagerClosed as ManagerClosed
from .errors import NotRestartable as NotRestartable
from .errors import OutputUnavailable as OutputUnavailable
from .errors import SpawnError as SpawnError
from .errors import StoreError as StoreError
from .errors import SupervisorUnreachable as SupervisorUnreachable
from .isolation import Isolation as Isolation
from .isolation import Namespace as Namespace
from .limits import JobLimits as JobLimits
from .limits import ManagerLimits as ManagerLimits
from .manager import JobManager as JobManager
from .manager import open_job_manager as open_job_manager
from .retention import Retention as Retention
from .status import Input as Input
from .status import JobState as JobState
from .status import JobStatus as JobStatus
from .status import WindowSize as WindowSize
from .store import Page as Page
