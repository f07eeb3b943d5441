"""Progress: what a stage sends (throttled, rank 0 only), what the board keeps, and what the driver shows."""

from __future__ import annotations

import io
import logging

import pytest

from orchestrator.dag import StageContext, StageProgress
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.progress import ProgressBoard, ProgressDisplay, progress_line
from orchestrator.engine.task import StageTask
from tests.unit.orchestrator.engine.toy import CALLS, counting


def context(sink, rank: int = 0) -> StageContext:
    return StageContext("run", "g01/train", 1, 0, "cpu", attempt=1, rank=rank, progress_sink=sink)


def test_a_stage_sends_its_first_update_then_at_most_one_a_second_and_always_the_last(monkeypatch):
    clock = iter([100.0, 100.2, 100.4, 101.3, 101.4, 101.5])
    monkeypatch.setattr("orchestrator.dag.time.monotonic", lambda: next(clock))
    sent: list[StageProgress] = []
    ctx = context(sent.append)
    ctx.progress(500, 1000, "steps", {"loss": 2.0})  # resumed at step 500: the first update always goes
    ctx.progress(501, 1000, "steps")  # 0.2 s later: held back
    ctx.progress(502, 1000, "steps", {"loss": 1.5})  # held back, but its loss is remembered
    ctx.progress(510, 1000, "steps")  # 1.3 s after the last one sent: goes
    ctx.progress(511, 1000, "steps")  # held back
    ctx.progress(1000, 1000, "steps")  # the last step always goes
    assert [p.done for p in sent] == [500, 510, 1000]
    assert sent[1].metrics == {"loss": 1.5} and sent[1].initial == 500
    assert sent[1].elapsed_s == pytest.approx(1.3) and sent[2].elapsed_s == pytest.approx(1.5)


def test_only_rank_0_sends_and_no_sink_sends_nothing():
    sent: list[StageProgress] = []
    context(sent.append, rank=1).progress(1, 10, "steps")
    context(None).progress(1, 10, "steps")
    assert sent == []


def test_the_board_keeps_the_newest_word_of_each_running_attempt():
    board = ProgressBoard()
    board.update(StageProgress("g00/train", 1))  # "running"
    board.update(StageProgress("g00/train", 1, 10, 60, "steps"))
    board.update(StageProgress("g00/train", 1))  # a late "running" from another process hides nothing
    board.update(StageProgress("g00/evaluate", 1))
    assert [(p.stage, p.done) for p in board.snapshot()] == [("g00/train", 10), ("g00/evaluate", 0)]
    board.update(StageProgress("g00/train", 1, finished=True))
    board.update(StageProgress("g00/train", 1, 60, 60, "steps"))  # after its end: ignored
    assert [p.stage for p in board.snapshot()] == ["g00/evaluate"]
    board.update(StageProgress("g00/evaluate", 2, 5, 100, "rows"))  # a retry replaces the first attempt
    board.update(StageProgress("g00/evaluate", 1, 50, 100, "rows"))  # the old attempt's late word does not
    assert [(p.attempt, p.done) for p in board.snapshot()] == [(2, 5)]


def test_a_plain_line_has_the_unit_rate_eta_and_metrics():
    line = progress_line(StageProgress("g01/train", 1, 24, 60, "steps", {"loss": 0.53214, "mask_rate": 0.41}, 0, 6.0))
    assert line.startswith("g01/train:  40%")
    for part in ("24/60", "00:06<00:09", "4.00steps/s", "loss=0.5321", "mask_rate=0.41"):
        assert part in line, line


def test_without_a_terminal_each_stage_is_logged_when_first_seen_then_every_interval(caplog):
    caplog.set_level(logging.INFO, logger="orchestrator.engine.progress")
    display = ProgressDisplay(list, stream=io.StringIO(), log_every_s=30)
    assert not display.bars  # a StringIO is no terminal
    train = StageProgress("g00/train", 1, 10, 60, "steps", {"loss": 1.0}, 0, 2.0)
    display.show([train, StageProgress("g00/evaluate", 1)], now=0.0)  # evaluate only runs: no line of its own
    display.show([train], now=10.0)
    display.show([train], now=31.0)
    display.show([], now=40.0)  # done
    display.show([train], now=41.0)  # a new attempt is new
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all(line.startswith("g00/train:  17% 10/60") for line in lines)


def test_on_a_terminal_each_running_stage_has_a_bar_until_it_is_done():
    stream = io.StringIO()
    display = ProgressDisplay(list, stream=stream, bars=True)
    display.show([StageProgress("g00/train", 1, 30.0, 60.0, "steps", {"loss": 0.5}), StageProgress("g00/evaluate", 1)])
    text = stream.getvalue()
    assert "g00/train:  50%" in text and "| 30/60 [" in text and "loss=0.5" in text  # counts as whole numbers
    assert "g00/evaluate: running" in text and "0.0it" not in text  # never a bare counter before "running"
    display.show([])
    assert display._shown == {}


def test_the_local_executor_wires_its_board_into_the_tasks_it_runs(tmp_path):
    from orchestrator.dag import Stage

    executor = LocalExecutor()
    read = executor.open_progress("run-1")
    seen: list[list[StageProgress]] = []
    stage = Stage("count", counting, (), ("counted",), params={"steps": 3, "read": read, "seen": seen})
    handle = executor.submit(StageTask(stage, "fp-count", {}, str(tmp_path), "run-1", seed=0))
    [(_, manifest)] = executor.wait([handle])
    assert CALLS[-1] == "count" and manifest.metrics == {"steps": 3.0}
    assert [(p.stage, p.done, p.total, p.unit) for p in seen[-1]] == [("count", 3, 3, "steps")]
    assert read() == []  # the stage's line closed when it ended
