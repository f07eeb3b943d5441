"""Tracking off the critical path: a tracker's calls run on one background thread, in order.

Why: every MLflow call is a SQLite (or HTTP) round trip, and a stage's bookkeeping (its run,
metrics, plots, registered model, dataset inputs) costs from tenths of a second to seconds on
a loaded machine. Made inline by the runner, that time sits between one stage finishing and
the next one starting. Queued here, the runner dispatches the next stage at once, and the
parent run is created while Ray is still starting (benchmarks/overhead.py measures both).
At the end ``close`` queues the end without waiting, so the caller can stop Ray while the
last calls drain, and ``join`` waits for them.

Order is kept (one thread, one FIFO queue), so MLflow sees exactly the calls it saw before.
A failure raised by the wrapped tracker (only in strict mode: MlflowTracker warns otherwise)
is re-raised on the caller's thread at its next call or at ``end_pipeline``, so
``tracking.strict`` still stops the run: at the first stage call after the failure is known.
Knowing it takes the client's retries (seconds; MLflow's system-metrics monitor, stopped at
each stage's end, swallows its own failures and waits them out too), so stages shorter than
that may finish in between. From that failure on, the
stage calls still queued are dropped, not made: the run is stopping, and against a dead
server each would cost the client's retries before the process could exit. The end is still
made, so the runs that were opened get closed (MlflowTracker skips it when the store is gone).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.engine.records import StageRecord, Tracker

logger = logging.getLogger(__name__)
_STOP = object()


class BackgroundTracker:
    """A Tracker that forwards every call to ``inner`` on a single daemon thread."""

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self._queue: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._failed = False  # a call failed (strict): the stage calls queued after it are dropped
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="relay-tracking", daemon=True)
        self._thread.start()

    @property
    def parent_run_id(self) -> str | None:
        """The inner tracker's parent run, once every queued call has been made."""
        self.flush()
        return self.inner.parent_run_id

    def start_pipeline(self, run_id: str, pipeline_name: str, config: Mapping[str, Any], resume: bool) -> None:
        self._put(self.inner.start_pipeline, run_id, pipeline_name, dict(config), resume)

    def stage_started(self, stage_name: str, generation: int | None, attempt: int | None = None) -> None:
        self._put(self.inner.stage_started, stage_name, generation, attempt)

    def stage_finished(self, record: StageRecord) -> None:
        self._put(self.inner.stage_finished, record)

    def end_pipeline(self, status: str) -> None:
        """Queue the end, wait until MLflow has everything, stop the thread; raise a strict failure."""
        self.close(status)
        self.join()

    def close(self, status: str) -> None:
        """Queue the end of the pipeline run and the thread's stop, without waiting for either.

        The caller can stop Ray while MLflow takes the queued calls; ``join`` then waits for them.
        """
        if self._closed:
            return
        self._closed = True
        self._put(self.inner.end_pipeline, status, check=False)
        if self._thread.is_alive():
            self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued call (the end included) has been made; raise a strict failure.

        Call it before the process exits: the thread is a daemon, so calls still queued at exit
        would be lost, and the MLflow tree must be complete when `relay run` returns.
        ``timeout``: wait at most that many seconds; False when calls were still left then.
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._raise_pending()
        return True

    def flush(self) -> None:
        """Block until every call queued so far has been made (readers of MLflow call this first)."""
        if self._thread.is_alive():
            self._queue.join()
        self._raise_pending()

    def _put(self, fn: Callable[..., None], *args: Any, check: bool = True) -> None:
        if check:
            self._raise_pending()
        if not self._thread.is_alive():  # after end_pipeline: run inline rather than drop the call
            fn(*args)
            return
        self._queue.put((fn, args))

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._call(*item)
            finally:
                self._queue.task_done()

    def _call(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Make one queued call; after a failure, only the end (which closes the runs) is still made."""
        name = getattr(fn, "__name__", fn)
        if self._failed and name != "end_pipeline":
            logger.debug("tracking call %s dropped: an earlier one failed and the run is stopping", name)
            return
        try:
            fn(*args)
        except BaseException as exc:  # kept for the caller's thread: strict tracking must stop the run
            logger.debug("tracking call %s failed: %s", name, exc)
            self._failed = True
            if self._error is None:
                self._error = exc
