import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Input(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_NONE: _ClassVar[Input]
    INPUT_PIPE: _ClassVar[Input]
    INPUT_TERMINAL: _ClassVar[Input]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_COMPLETED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_STOPPED: _ClassVar[JobState]
    JOB_STATE_KILLED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]

class Namespace(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NAMESPACE_UNSPECIFIED: _ClassVar[Namespace]
    NAMESPACE_PID: _ClassVar[Namespace]
    NAMESPACE_MOUNT: _ClassVar[Namespace]
    NAMESPACE_NET: _ClassVar[Namespace]
    NAMESPACE_IPC: _ClassVar[Namespace]
    NAMESPACE_UTS: _ClassVar[Namespace]

class Network(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_UNSPECIFIED: _ClassVar[Network]
    NETWORK_NONE: _ClassVar[Network]
    NETWORK_HOST: _ClassVar[Network]
INPUT_NONE: Input
INPUT_PIPE: Input
INPUT_TERMINAL: Input
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_COMPLETED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_STOPPED: JobState
JOB_STATE_KILLED: JobState
JOB_STATE_QUEUED: JobState
NAMESPACE_UNSPECIFIED: Namespace
NAMESPACE_PID: Namespace
NAMESPACE_MOUNT: Namespace
NAMESPACE_NET: Namespace
NAMESPACE_IPC: Namespace
NAMESPACE_UTS: Namespace
NETWORK_UNSPECIFIED: Network
NETWORK_NONE: Network
NETWORK_HOST: Network

class WindowSize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class Isolation(_message.Message):
    __slots__ = ("namespaces", "read_only_root", "hostname")
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_ROOT_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedScalarFieldContainer[Namespace]
    read_only_root: bool
    hostname: str
    def __init__(self, namespaces: _Optional[_Iterable[_Union[Namespace, str]]] = ..., read_only_root: _Optional[bool] = ..., hostname: _Optional[str] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("argv", "cwd", "env", "limits", "input", "term", "window", "isolation", "network", "read_only_root", "timeout", "name", "labels", "queue")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_ROOT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    env: _containers.ScalarMap[str, str]
    limits: Limits
    input: Input
    term: str
    window: WindowSize
    isolation: Isolation
    network: Network
    read_only_root: bool
    timeout: _duration_pb2.Duration
    name: str
    labels: _containers.ScalarMap[str, str]
    queue: bool
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., input: _Optional[_Union[Input, str]] = ..., term: _Optional[str] = ..., window: _Optional[_Union[WindowSize, _Mapping]] = ..., isolation: _Optional[_Union[Isolation, _Mapping]] = ..., network: _Optional[_Union[Network, str]] = ..., read_only_root: _Optional[bool] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., queue: _Optional[bool] = ...) -> None: ...

class RestartRequest(_message.Message):
    __slots__ = ("job_id", "queue")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    queue: bool
    def __init__(self, job_id: _Optional[str] = ..., queue: _Optional[bool] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("cpu", "cpu_weight", "memory", "io_weight", "pids")
    CPU_FIELD_NUMBER: _ClassVar[int]
    CPU_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    IO_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    cpu_weight: int
    memory: int
    io_weight: int
    pids: int
    def __init__(self, cpu: _Optional[float] = ..., cpu_weight: _Optional[int] = ..., memory: _Optional[int] = ..., io_weight: _Optional[int] = ..., pids: _Optional[int] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("job_id", "grace")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    grace: _duration_pb2.Duration
    def __init__(self, job_id: _Optional[str] = ..., grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class OutputRequest(_message.Message):
    __slots__ = ("job_id", "offset", "follow", "tail", "since", "timestamps")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    offset: int
    follow: bool
    tail: int
    since: _timestamp_pb2.Timestamp
    timestamps: bool
    def __init__(self, job_id: _Optional[str] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timestamps: _Optional[bool] = ...) -> None: ...

class OutputChunk(_message.Message):
    __slots__ = ("offset", "data", "final", "time")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    final: JobStatus
    time: _timestamp_pb2.Timestamp
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., final: _Optional[_Union[JobStatus, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("all_users", "page_size", "page_token", "labels", "states", "name")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALL_USERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    all_users: bool
    page_size: int
    page_token: str
    labels: _containers.ScalarMap[str, str]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    name: str
    def __init__(self, all_users: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ..., name: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "owner", "argv", "state", "reason", "exit_code", "signal", "started_at", "ended_at", "output_bytes", "output_truncated", "output_error", "pid", "cgroup", "limits", "cpu_time", "memory_peak", "run_as", "input", "isolation", "external_id", "timeout", "deadline", "name", "labels", "queue_position")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ERROR_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PEAK_FIELD_NUMBER: _ClassVar[int]
    RUN_AS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    owner: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    state: JobState
    reason: str
    exit_code: int
    signal: int
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    output_bytes: int
    output_truncated: bool
    output_error: str
    pid: int
    cgroup: str
    limits: Limits
    cpu_time: _duration_pb2.Duration
    memory_peak: int
    run_as: Account
    input: Input
    isolation: Isolation
    external_id: str
    timeout: _duration_pb2.Duration
    deadline: _timestamp_pb2.Timestamp
    name: str
    labels: _containers.ScalarMap[str, str]
    queue_position: int
    def __init__(self, job_id: _Optional[str] = ..., owner: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output_bytes: _Optional[int] = ..., output_truncated: _Optional[bool] = ..., output_error: _Optional[str] = ..., pid: _Optional[int] = ..., cgroup: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., cpu_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., memory_peak: _Optional[int] = ..., run_as: _Optional[_Union[Account, _Mapping]] = ..., input: _Optional[_Union[Input, str]] = ..., isolation: _Optional[_Union[Isolation, _Mapping]] = ..., external_id: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., queue_position: _Optional[int] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("job_id", "data", "resize")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    data: bytes
    resize: WindowSize
    def __init__(self, job_id: _Optional[str] = ..., data: _Optional[bytes] = ..., resize: _Optional[_Union[WindowSize, _Mapping]] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("written", "closed")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    written: int
    closed: bool
    def __init__(self, written: _Optional[int] = ..., closed: _Optional[bool] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("name", "uid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: int
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[int] = ...) -> None: ...
