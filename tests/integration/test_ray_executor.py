"""RayExecutor on a real local Ray (2 CPUs): concurrency, same artifacts as LocalExecutor, error handling."""

import logging
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from orchestrator.dag import Pipeline, Resources, Stage, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner, StageState
from orchestrator.engine.task import StageTask
from orchestrator.errors import StageError

pytestmark = pytest.mark.integration

RENDEZVOUS_S = 120.0  # how long a stage waits for the other to start: generous, for 2 loaded cores


def rendezvous(ctx, inputs, params):
    """Leave a mark, then wait for the other stage's: both return only if they ran at the same time."""
    folder = Path(params["folder"])
    (folder / ctx.stage).touch()
    other = folder / params["other"]
    deadline = time.monotonic() + params["deadline_s"]
    while not other.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"stage {ctx.stage} waited {params['deadline_s']} s for stage {params['other']} to start:"
                " the two independent stages did not run concurrently"
            )
        time.sleep(0.05)
    return StageResult(outputs={ctx.stage: {"pid": os.getpid()}})


def make_table(ctx, inputs, params):
    gen = torch.Generator().manual_seed(ctx.seed)
    values = torch.rand(params["rows"], generator=gen)
    return StageResult(outputs={"table": pa.table({"v": pa.array(values.numpy(), pa.float32())})})


def fit(ctx, inputs, params):
    column = torch.tensor(inputs["table"]["v"].to_numpy())
    noise = torch.rand(3)  # global RNG: seeded per stage by the runner, identical on any executor
    ctx.report(1, {"mean": float(column.mean())})
    return StageResult(
        outputs={"model": {"w": column[:3] + noise, "rows": len(column)}}, metrics={"mean": float(column.mean())}
    )


def crash_once(ctx, inputs, params):
    if ctx.attempt == 1:
        os._exit(1)  # the worker process dies: Ray reports a crash, not an exception
    return StageResult(outputs={"survived": {"attempt": ctx.attempt}})


def reject(ctx, inputs, params):
    raise ValueError("alpha must be > 0; got -1")


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


def runner(tmp_path, executor, name):
    return Runner(ArtifactStore(str(tmp_path / name)), executor, NullTracker(), "v1", seed=3)


def test_independent_stages_run_concurrently(ray_executor, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    stages = [
        Stage(
            n,
            rendezvous,
            (),
            (n,),
            params={"folder": str(marks), "other": other, "deadline_s": RENDEZVOUS_S},
            resources=Resources(num_cpus=1),
        )
        for n, other in (("a", "b"), ("b", "a"))
    ]
    try:  # run one after the other, the first stage would wait for the second in vain
        summary = runner(tmp_path, ray_executor, "meet").run(Pipeline("meet", stages), "run-1")
    except StageError as error:
        pytest.fail(f"the independent stages did not both finish: {error} (cause: {error.cause!r})")
    assert {n: summary.stages[n].state for n in ("a", "b")} == {"a": StageState.SUCCEEDED, "b": StageState.SUCCEEDED}
    pids = {ArtifactStore(str(tmp_path / "meet")).load(summary.manifests[n].outputs[n])["pid"] for n in ("a", "b")}
    assert len(pids) == 2 and os.getpid() not in pids


def test_ray_and_local_produce_the_same_artifacts(ray_executor, tmp_path):
    pipeline = Pipeline(
        "same",
        [
            Stage("make", make_table, (), ("table",), params={"rows": 64}),
            Stage("fit", fit, ("table",), ("model",), resources=Resources(num_cpus=1)),
        ],
    )
    local = runner(tmp_path, LocalExecutor(), "local").run(pipeline, "run-1")
    remote = runner(tmp_path, ray_executor, "ray").run(pipeline, "run-1")
    for name in ("make", "fit"):
        assert remote.stages[name].state is StageState.SUCCEEDED
        assert remote.stages[name].fingerprint == local.stages[name].fingerprint
        digests = {k: r.digest for k, r in remote.manifests[name].outputs.items()}
        assert digests == {k: r.digest for k, r in local.manifests[name].outputs.items()}
    assert remote.manifests["fit"].series == local.manifests["fit"].series


def test_worker_crash_is_retried(ray_executor, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="orchestrator")
    stage = Stage("crash", crash_once, (), ("survived",), retries=1)
    summary = runner(tmp_path, ray_executor, "crash").run(Pipeline("crash", [stage]), "run-1")
    assert summary.stages["crash"].attempts == 2
    assert "stage crash attempt 1 failed (WorkerLostError" in caplog.text and "WorkerCrashedError" in caplog.text
    store = ArtifactStore(str(tmp_path / "crash"))
    assert store.load(summary.manifests["crash"].outputs["survived"]) == {"attempt": 2}


def test_task_error_is_unwrapped_to_the_original_type(ray_executor, tmp_path):
    stage = Stage("reject", reject, (), ("never",), retries=3)
    with pytest.raises(StageError) as info:
        runner(tmp_path, ray_executor, "reject").run(Pipeline("reject", [stage]), "run-1")
    assert type(info.value.cause) is ValueError  # not RayTaskError, so decide() did not retry it
    assert info.value.attempts == 1
    assert "alpha must be > 0" in str(info.value.cause)


def report_pid(ctx, inputs, params):
    return StageResult(outputs={"pid": {"pid": os.getpid()}})


def pid_task(store: Path, name: str) -> StageTask:
    stage = Stage(name, report_pid, (), ("pid",), resources=Resources(num_cpus=1))
    return StageTask(stage, f"fp-{name}", {}, str(store), "run-warm", seed=0, attempt=1)


def test_warm_starts_one_worker_first_and_the_rest_beside_the_first_stage(ray_executor, tmp_path):
    import ray

    executor = RayExecutor()  # Ray is up (the module's fixture): this one only wraps it
    executor.warm(["json", "orchestrator.engine.ray_task"], workers=2)
    assert len(executor._warming) == 1  # one import at a time while nothing runs yet
    ref = executor.submit(pid_task(tmp_path, "first"))
    ready, _ = ray.wait(executor._warming[:1], timeout=0)
    assert ready, "the first stage is submitted only once the first worker has imported the modules"
    assert len(executor._warming) == 2  # the second worker warms beside the first stage
    pid = ArtifactStore(str(tmp_path)).load(ray.get(ref).outputs["pid"])["pid"]
    assert isinstance(pid, int) and all(isinstance(pid, int) for pid in ray.get(executor._warming))
    executor.submit(pid_task(tmp_path, "second"))
    assert len(executor._warming) == 2  # later stages start nothing more


def test_a_stage_that_cannot_be_placed_is_said_to_wait_and_runs_once_room_is_made(
    ray_executor, tmp_path, caplog, monkeypatch
):
    """A cluster large enough in total can still have no room (a Tune sweep's trial drivers after a node loss);
    the stage used to wait without a word. Here an actor holds both CPUs; the warning comes, then room."""
    import threading

    import ray

    from orchestrator.engine import placement_warnings
    from orchestrator.engine import ray_executor as executor_module  # the fixture holds the name ray_executor

    monkeypatch.setattr(placement_warnings, "WAITING_WARN_S", 0.0)
    monkeypatch.setattr(executor_module, "REFIT_EVERY_S", 1.0)
    caplog.set_level(logging.WARNING, logger="orchestrator")
    holder = ray.remote(num_cpus=2)(type("Holder", (), {"ping": lambda self: 1})).remote()
    ray.get(holder.ping.remote())  # placed: both CPUs held
    executor = RayExecutor()  # Ray is up (the module's fixture): this one only wraps it
    ref = executor.submit(pid_task(tmp_path, "squeezed"))

    def free_once_said() -> None:
        deadline = time.monotonic() + 120
        while "squeezed has waited" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.5)
        ray.kill(holder)

    releaser = threading.Thread(target=free_once_said, daemon=True)
    releaser.start()
    ((_, outcome),) = executor.wait([ref])
    releaser.join()
    assert "squeezed has waited 0 s for a place: it asks for 1 CPU and 0 GPU a worker" in caplog.text, (
        f"no warning for the unplaced stage; captured log:\n{caplog.text}"
    )
    assert "the cluster has 0 CPU" in caplog.text, (
        f"the warning does not say the room left; captured log:\n{caplog.text}"
    )
    assert ArtifactStore(str(tmp_path)).load(outcome.outputs["pid"])["pid"] != os.getpid()


def gated(ctx, inputs, params):
    """Return once the test opens the gate (a file): a stage that is still running for as long as the test needs."""
    opened = Path(params["folder"]) / "open"
    deadline = time.monotonic() + params["deadline_s"]
    while not opened.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {opened} was never opened")
        time.sleep(0.05)
    return StageResult(outputs={"gated": {"opened": True}})


def test_a_stage_another_run_computes_becomes_a_cache_hit_while_another_stage_runs(
    ray_executor, tmp_path, caplog, monkeypatch
):
    """The runner looks again at a stage a twin run holds (``stage_claims``) while its other stages run on Ray:
    a wait that blocked until a stage in flight finished would take the twin's result only after the gated stage,
    which the test opens only once the cache hit is logged."""
    import shutil
    import threading

    from orchestrator.engine import runner as runner_module
    from orchestrator.engine.stage_claims import StageClaims

    monkeypatch.setattr(runner_module, "TWIN_POLL_S", 0.2)
    caplog.set_level(logging.INFO, logger="orchestrator")
    folder = tmp_path / "gate"
    folder.mkdir()
    table = Stage("table", make_table, (), ("table",), params={"rows": 8})
    gate = Stage("gate", gated, (), ("gated",), params={"folder": str(folder), "deadline_s": RENDEZVOUS_S})
    twin = runner(tmp_path, ray_executor, "elsewhere").run(Pipeline("twins", [table]), "twin")
    fingerprint = twin.stages["table"].fingerprint
    claims = StageClaims(ArtifactStore(str(tmp_path / "shared")))
    assert claims.take(fingerprint)
    box: dict = {}
    thread = threading.Thread(
        target=lambda: box.update(
            result=runner(tmp_path, ray_executor, "shared").run(Pipeline("twins", [table, gate]), "waiting")
        ),
        daemon=True,
    )
    thread.start()
    try:
        wait_in_log(caplog, "table waits: another run is computing the same stage")
        source = tmp_path / "elsewhere" / "stages" / fingerprint
        shutil.copytree(source, tmp_path / "shared" / "stages" / fingerprint, dirs_exist_ok=True)
        claims.release(fingerprint)
        wait_in_log(caplog, "skip table: cache hit")
    finally:
        (folder / "open").touch()
        thread.join(RENDEZVOUS_S)
    summary = box["result"]
    assert summary.stages["table"].state is StageState.CACHED
    assert summary.stages["gate"].state is StageState.SUCCEEDED


def wait_in_log(caplog, text: str) -> None:
    deadline = time.monotonic() + RENDEZVOUS_S
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"not logged within {RENDEZVOUS_S:.0f} s: {text}\n{caplog.text}"
        time.sleep(0.05)
