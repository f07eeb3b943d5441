"""Live progress of a run's stages: a board the stages write to, and what the driver shows of it.

Stages run in Ray workers, Ray Train ranks and actor pools, so a progress bar drawn where the
stage runs is invisible to the user (Ray captures those processes' output). Instead a stage's
body calls ``ctx.progress(done, total, unit, metrics)``; the context sends at most one update a
second to the run's ``ProgressBoard`` without waiting for an answer, and the driver polls the
board. The board is a plain object: LocalExecutor keeps it in-process, RayExecutor runs it as a
small named actor (``ray_executor.py``). ``ProgressDisplay`` polls it on a thread of the driver and
draws one tqdm bar per running stage on a terminal, or logs one plain line per stage every
``LOG_EVERY_S`` otherwise, so the progress also reaches `relay logs` and `ray job logs`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from orchestrator.dag import StageProgress

logger = logging.getLogger(__name__)

POLL_S = 0.5  # how often the driver reads the board
LOG_EVERY_S = 30.0  # one plain line per running stage this often when stderr is not a terminal
RUNNING_FORMAT = "{desc}: running {elapsed}"  # a stage that has not reported any progress yet


class ProgressBoard:
    """The latest progress of every running stage attempt of one run.

    Updates arrive from several processes in no guaranteed order between them, so the board
    keeps what stays true: a closed attempt (``finished``) ignores anything that comes later,
    an older attempt never replaces a newer one, and a bare "running" never hides real progress.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the in-process board is written by the stage and read by the display
        self._latest: dict[str, StageProgress] = {}
        self._closed: set[tuple[str, int]] = set()

    def update(self, progress: StageProgress) -> None:
        """Take one update from a stage (the ``ProgressSink`` the executor wires into its tasks)."""
        key = (progress.stage, progress.attempt)
        with self._lock:
            if key in self._closed:
                return
            current = self._latest.get(progress.stage)
            if progress.finished:
                self._closed.add(key)
                if current is not None and current.attempt <= progress.attempt:
                    del self._latest[progress.stage]
                return
            if current is not None and (
                current.attempt > progress.attempt
                or (current.attempt == progress.attempt and progress.total is None and current.total is not None)
            ):
                return
            self._latest[progress.stage] = progress

    def snapshot(self) -> list[StageProgress]:
        """The running stages' latest progress, in the order they started."""
        with self._lock:
            return list(self._latest.values())


def metrics_text(metrics: Mapping[str, float]) -> str:
    """``loss=0.532, mask_rate=0.41``: a stage's latest metrics, four significant digits."""
    return ", ".join(f"{key}={value:.4g}" for key, value in metrics.items())


def progress_line(progress: StageProgress) -> str:
    """One plain line: ``g01/train:  40% 24/60 [00:06<00:09,  4.00steps/s, loss=0.532]`` (tqdm's own meter).

    Rate and ETA come from the worker's numbers (``initial``, ``elapsed_s``), so the line says
    the same whether the driver polled a second or a minute ago.
    """
    return tqdm.format_meter(
        count(progress.done),
        count(progress.total),
        progress.elapsed_s,
        ncols=0,
        prefix=progress.stage,
        unit=progress.unit or "it",
        postfix=metrics_text(progress.metrics) or None,
        initial=progress.initial,
    )


class ProgressDisplay:
    """Shows a run's progress board on the driver while the run goes on, from a daemon thread.

    ``read`` returns the board's snapshot (an in-process call, or a Ray call to the board's actor);
    a read that fails is skipped, never raised: progress is a view, and the run goes on without it.
    ``bars`` defaults to whether ``stream`` is a terminal. Use it as a context manager around the run.
    """

    def __init__(
        self,
        read: Callable[[], Sequence[StageProgress]],
        stream: IO[str] | None = None,
        bars: bool | None = None,
        log_every_s: float = LOG_EVERY_S,
        poll_s: float = POLL_S,
    ) -> None:
        self._read = read
        self._stream = stream if stream is not None else sys.stderr
        self.bars = _is_terminal(self._stream) if bars is None else bars
        self._log_every_s = log_every_s
        self._poll_s = poll_s
        self._shown: dict[str, Any] = {}  # stage -> its tqdm bar, or the time its last line was logged
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="relay-progress", daemon=True)
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> ProgressDisplay:
        if self.bars:  # log lines go above the bars instead of through them
            self._exit.enter_context(logging_redirect_tqdm())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10 * self._poll_s + 5)
        self.show([])
        self._exit.close()

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                snapshot = list(self._read())
            except Exception as exc:  # a slow or restarting board: skip this look, never stop the run
                logger.debug("could not read the progress board: %s", exc)
                continue
            self.show(snapshot)

    def show(self, snapshot: Sequence[StageProgress], now: float | None = None) -> None:
        """Draw (bars) or log (lines) one snapshot; stages missing from it are done and their line goes."""
        for stage in [s for s in self._shown if s not in {p.stage for p in snapshot}]:
            gone = self._shown.pop(stage)
            if self.bars:
                gone.close()
        for progress in snapshot:
            if self.bars:
                self._draw(progress)
            else:
                self._log(progress, time.monotonic() if now is None else now)

    def _log(self, progress: StageProgress, now: float) -> None:
        """A line when a stage first reports progress, then one every ``log_every_s``."""
        if progress.total is None and not progress.done:
            return  # only "running": the runner's own `run <stage>` line says as much
        last = self._shown.get(progress.stage)
        if last is None or now - last >= self._log_every_s:
            self._shown[progress.stage] = now
            logger.info("%s", progress_line(progress))

    def _draw(self, progress: StageProgress) -> None:
        """Create or move the stage's bar to the stage's numbers; a restarted attempt resets it."""
        done, total = count(progress.done), count(progress.total)
        started = total is not None or done > 0
        bar = self._shown.get(progress.stage)
        if bar is None:
            bar = tqdm(
                total=total,
                desc=progress.stage,
                initial=done,
                unit=progress.unit or "it",
                bar_format=None if started else RUNNING_FORMAT,
                file=self._stream,
                leave=False,
            )
            self._shown[progress.stage] = bar
        elif done < bar.n:
            bar.reset(total=total)
        bar.bar_format = None if started else RUNNING_FORMAT
        bar.total, bar.unit = total, progress.unit or "it"
        bar.set_postfix_str(metrics_text(progress.metrics), refresh=False)
        bar.update(done - bar.n)
        bar.refresh()


def count(value: float | None) -> float | None:
    """``60`` for 60.0: whole counts (steps, rows) show as integers, as tqdm shows its own."""
    return int(value) if value is not None and float(value).is_integer() else value


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
