"""jogger-server, timed: where the soak's calls spend their time (``bench/soak.py --trace``).

    python bench/soak_trace.py [jogger-server's arguments]

Runs the real jogger-server of the interpreter's venv (so of /work/wt-base too, run with its
python), after wrapping, in this process only, the steps of a Start and a Status with a
clock: the service's handler, the manager's start, the job's launch (cgroup, log, supervisor
spawn), the store calls (how long each waited in the store's queue, how long the worker
thread took over it, and the batch sizes), and the account lookup. A system task samples
the event loop every 10 ms: how late a 10 ms sleep wakes (the loop's lag), how many tasks
are runnable, and how many trio worker threads are busy or waited for. Nothing else
changes: same code, same threads, same order.

At exit the figures go as JSON to $JOGGER_SOAK_TRACE: {name: [seconds, ...]}. With
$JOGGER_SOAK_PROFILE, the event-loop thread also runs under cProfile (slower: use it for
the profile, not for latencies), its stats dumped there.

A bench tool: nothing here is used by jogger itself.
"""

import atexit
import cProfile
import functools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from jogger.engine import job as job_module
from jogger.engine import lane as lane_module
from jogger.engine import local as local_module
from jogger.engine import store as store_module
from jogger.engine.cgroups import v1, v2
from jogger.engine.manager import JobManager
from jogger.rpc import server as rpc_server
from jogger.server import main as server_main
from jogger.server import service as service_module

SPANS: dict[str, list[float]] = {}
SAMPLE_EVERY = 0.01
MARKS: dict[object, dict[str, float]] = {}
"""Per task (a call's): when each phase of its call ended (see trace_calls)."""
TIMED_CALLS = {"/jogger.v1.Jobs/Start": "Start", "/jogger.v1.Jobs/Status": "Status"}


def note(name: str, value: float) -> None:
    # list.append is atomic under the GIL: worker threads note their spans too.
    SPANS.setdefault(name, []).append(value)


def wrap_async(owner: Any, attr: str, name: str) -> None:
    raw = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
    if raw is None:
        print(f"soak_trace: no {owner.__name__}.{attr} here; not timed", file=sys.stderr)
        return
    is_classmethod = isinstance(raw, classmethod)
    fn: Callable[..., Awaitable[Any]] = raw.__func__ if is_classmethod else raw

    @functools.wraps(fn)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            t1 = time.perf_counter()
            note(name, t1 - t0)
            mark(name, t1)

    setattr(owner, attr, classmethod(timed) if is_classmethod else timed)


def mark(name: str, at: float) -> None:
    marks = MARKS.get(trio.lowlevel.current_task())
    if marks is not None:
        marks[name] = at


def trace_calls() -> None:
    """A Start's or a Status's time in the server, phase by phase: reading its request,
    the handler, sending the answer, and ending the stream (trailers, flush)."""
    server_class = rpc_server.RpcServer
    call, handle = server_class._call, server_class._handle
    read_request = getattr(rpc_server, "read_request")  # noqa: B009 - not exported

    async def read(*args: Any, **kwargs: Any) -> Any:
        try:
            return await read_request(*args, **kwargs)
        finally:
            mark("read", time.perf_counter())

    async def timed_handle(
        self: Any, connection: Any, stream: Any, method: Any, c: Any, *rest: Any
    ) -> None:
        name = TIMED_CALLS.get(c.method)
        task = trio.lowlevel.current_task()
        marks = MARKS.setdefault(task, {})
        marks["handle"] = t0 = time.perf_counter()
        try:
            await handle(self, connection, stream, method, c, *rest)
        finally:
            t1 = marks["handled"] = time.perf_counter()
            if name is not None:
                read_at = marks.get("read", t0)
                handler_at = marks.get(f"{name} handler (service.{name.lower()})", read_at)
                note(f"{name}: rpc: read the request", read_at - t0)
                note(f"{name}: rpc: handler", handler_at - read_at)
                note(f"{name}: rpc: send the answer", t1 - handler_at)

    async def timed_call(self: Any, connection: Any, stream: Any, event: Any, *rest: Any) -> None:
        task = trio.lowlevel.current_task()
        MARKS[task] = {}
        t0 = time.perf_counter()
        try:
            await call(self, connection, stream, event, *rest)
        finally:
            t1 = time.perf_counter()
            marks = MARKS.pop(task, {})
            name = TIMED_CALLS.get(f"/{event.service_name}/{event.method_name}")
            if name is not None and "handled" in marks:
                note(f"{name}: rpc: before the handling", marks["handle"] - t0)
                note(f"{name}: rpc: end the stream (trailers, flush)", t1 - marks["handled"])
                note(f"{name}: rpc: whole call in the server", t1 - t0)

    # setattr: the wrappers take what the originals take, as Any.
    setattr(rpc_server, "read_request", read)  # noqa: B010
    setattr(server_class, "_call", timed_call)  # noqa: B010
    setattr(server_class, "_handle", timed_handle)  # noqa: B010


def wrap_sync(owner: Any, attr: str, name: str) -> None:
    fn = getattr(owner, attr, None)
    if fn is None:
        print(f"soak_trace: no {attr} here; not timed", file=sys.stderr)
        return

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            note(name, time.perf_counter() - t0)

    setattr(owner, attr, timed)


def trace_store() -> None:
    """Each store call: its wait in the queue, its run in the worker thread; batch sizes."""
    call_class = lane_module.Call
    original_run = call_class.run
    original_batch = lane_module.Lane._run_batch

    def run(self: Any) -> None:
        t0 = time.perf_counter()
        try:
            original_run(self)
        finally:
            t1 = time.perf_counter()
            op = lane_module._operation(self.fn)
            note(f"store queue wait: {op}", t0 - self.queued_at)
            note(f"store run: {op}", t1 - t0)

    def run_batch(lane: Any, batch: list[Any]) -> None:
        note("store batch size (calls)", len(batch))
        original_batch(lane, batch)

    call_class.run = run  # type: ignore[method-assign]
    lane_module.Lane._run_batch = run_batch  # type: ignore[method-assign, assignment]
    wrap_async(store_module.JobStore, "_call", "store call (queue + thread hop + run)")


async def sample_loop() -> None:
    """The event loop's lag and backlog, and the worker threads', every 10 ms."""
    limiter = trio.to_thread.current_default_thread_limiter()
    while True:
        t0 = time.perf_counter()
        await trio.sleep(SAMPLE_EVERY)
        note("loop lag (10 ms sleep overshoot)", time.perf_counter() - t0 - SAMPLE_EVERY)
        note("loop runnable tasks", trio.lowlevel.current_statistics().tasks_runnable)
        threads = limiter.statistics()
        note("worker threads busy", threads.borrowed_tokens)
        note("tasks waiting for a worker thread", threads.tasks_waiting)


def install() -> None:
    service = service_module.JobsService
    wrap_async(service, "start", "Start handler (service.start)")
    wrap_async(service, "status", "Status handler (service.status)")
    wrap_async(service, "list", "List handler (service.list)")
    wrap_async(service, "_account", "Start: account lookup")
    wrap_async(service, "_reader", "Status: owner lookup (_reader)")
    wrap_async(JobManager, "start", "Start: JobManager.start")
    wrap_async(JobManager, "status", "Status: JobManager.status")
    wrap_async(job_module.Job, "launch", "Start: Job.launch (cgroup, log, spawn)")
    wrap_async(local_module, "launch", "Start: supervisor launch (spawn to exec)")
    wrap_async(store_module.JobStore, "record_start", "Start: store.record_start")
    wrap_async(store_module.JobStore, "get", "store.get")
    wrap_async(store_module.JobStore, "record_end", "store.record_end")
    wrap_async(store_module.JobStore, "page", "store.page")
    wrap_sync(v1.V1Backend, "create", "Start: cgroup create")
    wrap_sync(v2.V2Backend, "create", "Start: cgroup create")
    trace_store()
    trace_calls()
    serve = server_main.serve

    async def traced_serve(*args: Any, **kwargs: Any) -> None:
        trio.lowlevel.spawn_system_task(sample_loop)
        await serve(*args, **kwargs)

    server_main.serve = traced_serve


def dump(path: str) -> None:
    with open(path, "w") as f:
        json.dump(SPANS, f)


def main() -> int:
    install()
    out = os.environ.get("JOGGER_SOAK_TRACE")
    if out:
        atexit.register(dump, out)
    profile_to = os.environ.get("JOGGER_SOAK_PROFILE")
    if not profile_to:
        return server_main.main(sys.argv[1:])
    profile = cProfile.Profile()
    profile.enable()
    try:
        return server_main.main(sys.argv[1:])
    finally:
        profile.disable()
        profile.dump_stats(profile_to)


if __name__ == "__main__":
    sys.exit(main())
