"""Jogger: a remote job runner for Linux. ``jogger.open_job_manager`` runs the embeddable
engine, a ``jogger.JobManager``.

The engine's names are imported on first use, so that `jog`, which needs none of them,
does not pay for the engine's imports at every start.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Account as Account
    from .engine import Input as Input
    from .engine import InputBusy as InputBusy
    from .engine import InputUnavailable as InputUnavailable
    from .engine import InvalidRequest as InvalidRequest
    from .engine import Isolation as Isolation
    from .engine import IsolationUnavailable as IsolationUnavailable
    from .engine import JobError as JobError
    from .engine import JobFilter as JobFilter
    from .engine import JobLimits as JobLimits
    from .engine import JobManager as JobManager
    from .engine import JobNotFound as JobNotFound
    from .engine import JobState as JobState
    from .engine import JobStatus as JobStatus
    from .engine import LimitExceeded as LimitExceeded
    from .engine import ManagerClosed as ManagerClosed
    from .engine import ManagerLimits as ManagerLimits
    from .engine import Namespace as Namespace
    from .engine import NotRestartable as NotRestartable
    from .engine import OutputUnavailable as OutputUnavailable
    from .engine import OutputWindow as OutputWindow
    from .engine import Page as Page
    from .engine import Piece as Piece
    from .engine import Retention as Retention
    from .engine import SpawnError as SpawnError
    from .engine import StoreError as StoreError
    from .engine import TimesUnavailable as TimesUnavailable
    from .engine import WindowSize as WindowSize
    from .engine import open_job_manager as open_job_manager

__all__ = [
    "Account",
    "Input",
    "InputBusy",
    "InputUnavailable",
    "InvalidRequest",
    "Isolation",
    "IsolationUnavailable",
    "JobError",
    "JobFilter",
    "JobLimits",
    "JobManager",
    "JobNotFound",
    "JobState",
    "JobStatus",
    "LimitExceeded",
    "ManagerClosed",
    "ManagerLimits",
    "Namespace",
    "NotRestartable",
    "OutputUnavailable",
    "OutputWindow",
    "Page",
    "Piece",
    "Retention",
    "SpawnError",
    "StoreError",
    "TimesUnavailable",
    "WindowSize",
    "open_job_manager",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("jogger.engine"), name)
    raise AttributeError(f"module 'jogger' has no attribute {name!r}")
