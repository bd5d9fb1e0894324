"""A ListRequest's filters (fields 4 to 6) as the engine's JobFilter, which checks them."""

from ..engine import JobFilter, JobState
from ..rpc.errors import RpcError, StatusCode
from ..v1 import jobs_pb2

_STATES = {
    jobs_pb2.JOB_STATE_QUEUED: JobState.QUEUED,
    jobs_pb2.JOB_STATE_RUNNING: JobState.RUNNING,
    jobs_pb2.JOB_STATE_COMPLETED: JobState.COMPLETED,
    jobs_pb2.JOB_STATE_FAILED: JobState.FAILED,
    jobs_pb2.JOB_STATE_STOPPED: JobState.STOPPED,
    jobs_pb2.JOB_STATE_KILLED: JobState.KILLED,
}


def filter_from_proto(request: jobs_pb2.ListRequest) -> JobFilter:
    """The filter ``request`` asks for; INVALID_ARGUMENT for a state this server does not
    know (JOB_STATE_UNSPECIFIED included). The engine checks the labels and the pattern."""
    states = set()
    for wire in request.states:
        try:
            states.add(_STATES[wire])
        except KeyError:
            raise RpcError(
                StatusCode.INVALID_ARGUMENT, f"unknown job state {int(wire)} in a list's filter"
            ) from None
    return JobFilter(labels=dict(request.labels), states=frozenset(states), name=request.name)
