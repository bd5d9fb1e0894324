"""What the engine tells whoever watches it (the server's metrics), and what it can be asked.

The engine imports no metrics library: it is embeddable, and neither its start path nor its
import may pay for one. Events go to an ``EngineObserver``, whose methods here do nothing: a
server subclasses it and overrides what it counts (server/metrics.py). Each call is made in
the manager's trio thread, once per event, and must return at once and never raise. What is
a level rather than an event (jobs running, supervisors alive, bytes written so far) is read
when it is wanted, with ``JobManager.gauges()``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field


class EngineObserver:
    """Events of a JobManager; subclass and override the ones to count."""

    def job_started(self, owner: str) -> None:
        """A job of ``owner``'s started here, and is on record."""

    def job_ended(self, state: str, reason: str) -> None:
        """A job ended (its JobState's value, and its reason, "" for none), or was found
        ended at start-up (recovery.py): an end this manager records."""

    def store_call(self, operation: str, seconds: float) -> None:
        """A call to the job store (``operation``: its method, such as "record_start") took
        ``seconds``, its wait for the worker thread included."""

    def store_timing(self, operation: str, queued: float, running: float) -> None:
        """The same call, in two parts: ``queued``, seconds it waited for its lane's worker
        thread; ``running``, seconds from when the thread took it up until its result was
        back (its group's commit included)."""


NOBODY = EngineObserver()
"""Nobody watching: every event goes nowhere."""


@dataclass(frozen=True, slots=True)
class EngineGauges:
    """The engine's levels, at one moment."""

    running: Mapping[str, int]
    """Jobs not yet ended (adopted ones included), per owner."""
    supervisors: int
    """Jobs whose supervisor process is alive (local jobs; Slurm's have none of ours)."""
    output_bytes: int
    """Bytes jobs have written into their logs while this manager ran (not those of adopted
    jobs from before): a counter."""
    containment: str
    """What contains new jobs: "cgroup2", "cgroup1", "none", or "slurm"."""
    queued: Mapping[str, int] = field(default_factory=dict)
    """Jobs waiting in the manager's queue, per owner (queue.py)."""
