"""A lane: calls that run on one worker thread at a time, in turn, batched (the job store's).

Calls run first come first served; calls that queue up while a batch runs are run together
as the next batch, in one pass of the worker thread (a pass of a busy event loop costs
milliseconds; a SQLite statement, a fraction of one). A call handed to the thread is not
abandoned on cancellation, so a write that has begun always finishes and is never
half-applied; a call still queued is withdrawn.

A lane whose ``commit`` is given groups its writes (group commit): the calls of a batch
marked ``grouped`` share one transaction, each in a savepoint of its own (so that one that
fails is rolled back alone), and one COMMIT, one fsync, makes them all durable. No caller
hears its result before that COMMIT has returned; if it fails, every call of the group
fails with it.

Each lane has at most one worker thread at a time: a store with a writer lane and a reader
lane uses two threads, however many callers wait.
"""

import sqlite3
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

from .errors import StoreError
from .observer import EngineObserver

T = TypeVar("T")


class Call(Generic[T]):
    """One call on a lane: its function, whether it may share a commit, and its outcome."""

    def __init__(self, fn: Callable[[], T], *, grouped: bool) -> None:
        self.fn = fn
        self.grouped = grouped
        self.done = trio.Event()
        self.queued_at = time.perf_counter()
        self.began = 0.0
        """When the worker thread took it up (perf_counter); 0 until then."""
        self._value: T | None = None
        self._error: BaseException | None = StoreError("the job store's worker failed")

    def run(self) -> None:
        self.began = time.perf_counter()
        try:
            self._value = self.fn()
            self._error = None
        except Exception as exc:  # noqa: BLE001 - handed back to the caller, in its task
            self._error = exc

    @property
    def failed(self) -> bool:
        return self._error is not None

    def fail(self, error: BaseException) -> None:
        self._error = error

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Lane:
    """Runs calls on one worker thread at a time. ``db``: the connection its grouped calls
    share a transaction on (None: it groups nothing)."""

    def __init__(
        self,
        observer: EngineObserver,
        db: Callable[[], sqlite3.Connection | None] = lambda: None,
    ) -> None:
        self._observer = observer
        self._db = db
        self._queue: list[Call[object]] = []
        self._running = False
        self.commits = 0
        """Group commits made (each one fsync of the WAL): counted in the worker thread."""

    async def call(self, fn: Callable[[], T], *, grouped: bool = False) -> T:
        """Run ``fn`` in the worker thread, in turn, and return (or raise) what it did.

        The first caller that finds no batch running runs the queue, batch after batch,
        until it is empty; the others wait for their result. Cancellation: a call still in
        the queue is withdrawn; one handed to the thread completes (bounded by the
        database's busy timeout and the disk), and its caller sees the cancellation
        afterwards.
        """
        call = Call(fn, grouped=grouped)
        self._queue.append(call)  # type: ignore[arg-type]
        if not self._running:
            self._running = True
            try:
                # Shielded: the calls of the batch belong to other tasks too, and a batch is
                # bounded (busy timeout, the disk); our own cancellation comes after it.
                with trio.CancelScope(shield=True):
                    while self._queue:
                        batch, self._queue = self._queue, []
                        try:
                            await trio.to_thread.run_sync(self._run_batch, batch)
                        finally:
                            for done in batch:
                                done.done.set()
            finally:
                self._running = False
            await trio.lowlevel.checkpoint()
        else:
            try:
                await call.done.wait()
            except trio.Cancelled:
                if call in self._queue:
                    self._queue.remove(call)  # type: ignore[arg-type]
                    raise
                # Handed to the thread: it completes; then the cancellation goes on.
                with trio.CancelScope(shield=True):
                    await call.done.wait()
                raise
        now = time.perf_counter()
        operation = _operation(fn)
        self._observer.store_call(operation, now - call.queued_at)
        began = call.began or now
        self._observer.store_timing(operation, began - call.queued_at, now - began)
        return call.result()

    def _run_batch(self, batch: list[Call[object]]) -> None:
        """In the worker thread: each call in turn; runs of grouped calls in one transaction."""
        db = self._db()
        start = 0
        while start < len(batch):
            if db is None or not batch[start].grouped:
                batch[start].run()
                start += 1
                continue
            end = start
            while end < len(batch) and batch[end].grouped:
                end += 1
            self._run_group(db, batch[start:end])
            start = end

    def _run_group(self, db: sqlite3.Connection, group: list[Call[object]]) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for call in group:
                call.fail(exc)
            return
        try:
            for call in group:
                # Each in a savepoint: one that fails is undone alone (its own transaction()
                # nests as a savepoint too, and rolls itself back; this one catches what
                # fails outside it).
                db.execute("SAVEPOINT call")
                call.run()
                if call.failed and db.in_transaction:
                    db.execute("ROLLBACK TO call")
                db.execute("RELEASE call")
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for call in group:
                call.fail(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.commits += 1


def _operation(fn: Callable[[], object]) -> str:
    """The JobStore method that made ``fn``: "record_start" for its ``insert``, "open" for
    ``_open``."""
    return fn.__qualname__.split(".<locals>", 1)[0].rpartition(".")[2].lstrip("_")
