"""A toy pipeline and its stage functions, shared by the engine's tests (runner, fingerprints, stage bodies)."""

import contextlib
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import torch

from orchestrator.dag import Pipeline, Resources, Stage, StageResult

CALLS: list[str] = []


def make_data(ctx, inputs, params):
    CALLS.append(ctx.stage)
    values = [float(i) * params["scale"] for i in range(params["rows"])]
    return StageResult(outputs={"data": pa.table({"x": pa.array(values, pa.float32())})}, metrics={"rows": len(values)})


def train(ctx, inputs, params):
    CALLS.append(ctx.stage)
    total = float(pc.sum(inputs["data"]["x"]).as_py())
    for step in (1, 2):
        ctx.report(step, {"loss": total / step})
    weight = torch.full((2,), total * params["lr"])
    return StageResult(
        outputs={"model": {"w": weight, "lr": params["lr"]}}, metrics={"threads": torch.get_num_threads()}
    )


def evaluate(ctx, inputs, params):
    CALLS.append(ctx.stage)
    score = float(inputs["model"]["w"].sum())
    report = pa.table({"score": pa.array([score], pa.float64())})
    return StageResult(outputs={"report": report}, metrics={"score": score}, files={"plot.png": b"\x89PNG"})


def flaky(ctx, inputs, params):
    CALLS.append(ctx.stage)
    if ctx.attempt < params["succeed_on"]:
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return StageResult(outputs={"flaky_out": {"attempt": ctx.attempt}})


def bad_value(ctx, inputs, params):
    CALLS.append(ctx.stage)
    raise ValueError("threshold must be in (0, 1); got 2")


def wrong_outputs(ctx, inputs, params):
    CALLS.append(ctx.stage)
    return StageResult(outputs={"unexpected": {"a": 1}})


def random_draw(ctx, inputs, params):
    CALLS.append(ctx.stage)
    return StageResult(outputs={"draw": {"x": torch.rand(3), "seed": ctx.seed, "device": ctx.device}})


class RecordingTracker:
    """A Tracker that remembers what the runner told it."""

    parent_run_id = None

    def __init__(self):
        self.started, self.records = [], []

    def start_pipeline(self, run_id, pipeline_name, config, resume):
        pass

    def stage_started(self, stage_name, generation, attempt=None):
        self.started.append(stage_name)

    def stage_finished(self, record):
        self.records.append(record)

    def end_pipeline(self, status):
        pass

    def record(self, stage):
        return [r for r in self.records if r.stage == stage][-1]


def toy(lr=0.5, scale=1.0, extra=()):
    return Pipeline(
        "toy",
        [
            Stage("data", make_data, (), ("data",), params={"rows": 4, "scale": scale}),
            Stage(
                "g00/train",
                train,
                ("data",),
                ("model",),
                params={"lr": lr},
                resources=Resources(num_cpus=2),
                generation=0,
            ),
            Stage("g00/evaluate", evaluate, ("model",), ("report",), generation=0),
            *extra,
        ],
    )


def counting(ctx, inputs, params):
    """Reports progress every step and looks at the run's progress board while it runs (params["read"])."""
    CALLS.append(ctx.stage)
    for step in range(1, params["steps"] + 1):
        ctx.progress(step, params["steps"], "steps")
    params["seen"].append(params["read"]())
    return StageResult(outputs={"counted": {"steps": params["steps"]}}, metrics={"steps": params["steps"]})


def ctrl_c_after_ledger_write(monkeypatch, status, signum: int | None = None) -> None:
    """Each ledger write of ``status`` is followed by a real SIGINT to this process, the way a terminal sends it
    (``signum``: that signal instead, e.g. SIGTERM as a supervisor sends it)."""
    import os
    import signal

    from orchestrator.engine.ledger import Ledger

    write, sent = Ledger.write, signal.SIGINT if signum is None else signum

    def write_then_ctrl_c(self, written, stages):
        write(self, written, stages)
        if written == status:
            os.kill(os.getpid(), sent)

    monkeypatch.setattr(Ledger, "write", write_then_ctrl_c)


@contextlib.contextmanager
def sigterm_as_relay_run_takes_it() -> Iterator[None]:
    """`relay run`'s SIGTERM handler (``terminate_as_interrupt``: Terminated, exit 143) for the block, then the test's."""
    import signal

    from orchestrator.engine import signals

    before = signal.getsignal(signal.SIGTERM)
    signals.terminate_as_interrupt()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        signals._SIGTERM_RECEIVED.clear()  # other tests see a process no SIGTERM reached
