"""MlflowTracker against a real sqlite store: the run tree, metrics, files, resume, failures."""

import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.engine.records import NullTracker, StageRecord, TrackedArtifact, Tracker
from orchestrator.errors import InputError, TrackingError
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from orchestrator.tracking.reading import read_generations


def own_name(run) -> str:
    """A run's name without the `of RUN_ID` that a generation's and a stage's name end with (`gen-01 of run-a`)."""
    return run.info.run_name.removesuffix(f" of {run.data.tags['relay.pipeline_run']}")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite database for the module: creating one costs about two seconds."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", root


@pytest.fixture
def experiment(request):
    return f"exp-{request.node.name}"


def tracker_for(store, experiment, **kw):
    uri, root = store
    return MlflowTracker(uri, experiment, artifact_location=(root / "mlartifacts" / experiment).as_uri(), **kw)


def record(stage, generation, metrics=None, cache_hit=False, status="FINISHED", **kw):
    return StageRecord(
        stage=stage,
        generation=generation,
        fingerprint=f"fp-{stage}",
        cache_hit=cache_hit,
        status=status,
        metrics=metrics or {},
        **kw,
    )


def runs(store, experiment, kind):
    client = MlflowClient(store[0])
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.`relay.kind` = '{kind}'")


def run_two_generations(tracker, plot):
    tracker.start_pipeline("run-a", "toy", {"seed": 0, "train": {"steps": 5}}, resume=False)
    tracker.stage_started("split", None)
    tracker.stage_finished(record("split", None, {"labeled": 40}))
    for g in (0, 1):
        tracker.stage_started(f"g{g:02d}/train", g)
        series = [(1, {"loss": 2.0 - g}), (2, {"loss": 1.0 - g / 2})]
        finals = {"loss": series[-1][1]["loss"], "steps": 2.0}  # as a train stage reports: the curve's end
        tracker.stage_finished(record(f"g{g:02d}/train", g, finals, series=series, files={"plot.png": plot}))
        tracker.stage_finished(record(f"g{g:02d}/evaluate", g, {"accuracy": 0.5 + g / 10}, cache_hit=g == 0))
    tracker.end_pipeline("FINISHED")


def test_creating_a_tracker_writes_nothing(tmp_path):
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'sub' / 'mlflow.db'}", "relay")
    assert tracker.parent_run_id is None
    assert list(tmp_path.iterdir()) == []


def test_run_tree_tags_metrics_and_files(store, experiment, tmp_path):
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"\x89PNG")
    tracker = tracker_for(store, experiment)
    run_two_generations(tracker, str(plot))
    client = MlflowClient(store[0])

    (parent,) = runs(store, experiment, "pipeline")
    assert parent.info.run_id == tracker.parent_run_id
    assert parent.info.run_name == "run-a" and parent.info.status == "FINISHED"
    assert parent.data.tags["relay.pipeline_run"] == "run-a"
    assert parent.data.params["train.steps"] == "5"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == [
        "config.yaml",
        "generations.csv",
        "generations.html",
    ]
    summary = client.download_artifacts(parent.info.run_id, "generations.csv", str(tmp_path))
    assert Path(summary).read_text().splitlines()[0].startswith("generation,evaluate/accuracy")
    assert parent.data.tags["relay.version.mlflow"] and parent.data.tags["relay.git_commit"]

    assert sorted(r.info.run_name for r in runs(store, experiment, "generation")) == [
        "gen-00 of run-a",
        "gen-01 of run-a",
    ]
    gens = {own_name(r): r for r in runs(store, experiment, "generation")}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in gens.values())
    assert gens["gen-01"].data.tags["relay.generation"] == "1"
    assert gens["gen-01"].data.metrics["evaluate/accuracy"] == pytest.approx(0.6)

    stages = {own_name(r): r for r in runs(store, experiment, "stage")}
    assert sorted(stages) == ["g00/evaluate", "g00/train", "g01/evaluate", "g01/train", "split"]
    assert stages["g01/train"].info.run_name == "g01/train of run-a"
    assert stages["split"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    train1 = stages["g01/train"]
    assert train1.data.tags["mlflow.parentRunId"] == gens["gen-01"].info.run_id
    assert train1.data.tags["relay.stage"] == "g01/train"
    assert train1.data.tags["relay.generation"] == "1"
    assert train1.data.tags["relay.fingerprint"] == "fp-g01/train"
    assert train1.data.tags["cache_hit"] == "false"
    assert stages["g00/evaluate"].data.tags["cache_hit"] == "true"
    assert [(m.step, m.value) for m in client.get_metric_history(train1.info.run_id, "loss")] == [
        (1, 1.0),
        (2, 0.5),
    ]  # the curve's final value is not logged again at step 0, where it would start the curve with its end
    assert [(m.step, m.value) for m in client.get_metric_history(train1.info.run_id, "steps")] == [(0, 2.0)]
    assert [a.path for a in client.list_artifacts(train1.info.run_id)] == ["plot.png"]
    assert [a.path for a in client.list_artifacts(gens["gen-01"].info.run_id, "train")] == ["train/plot.png"]

    history = client.get_metric_history(parent.info.run_id, "evaluate/accuracy")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, pytest.approx(0.6))]
    assert "split/labeled" not in parent.data.metrics  # generation-less stages stay on their own run


def test_read_generations_returns_rows_per_generation(store, experiment, tmp_path):
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"x")
    run_two_generations(tracker_for(store, experiment), str(plot))
    run_id, rows = read_generations(store[0], experiment, "run-a")
    assert run_id == "run-a"
    assert [r["generation"] for r in rows] == [0, 1]
    assert rows[1]["evaluate/accuracy"] == pytest.approx(0.6)
    assert rows[0]["train/loss"] == 1.0
    assert read_generations(store[0], experiment, None)[0] == "run-a"  # latest run by default


def test_read_generations_errors_say_what_is_missing(store, tmp_path):
    with pytest.raises(InputError, match="no tracking database at"):
        read_generations(f"sqlite:///{tmp_path / 'none.db'}", "relay", None)
    with pytest.raises(InputError, match="no MLflow experiment 'nope'"):
        read_generations(store[0], "nope", None)


def test_resume_reuses_parent_and_generation_runs(store, experiment):
    first = tracker_for(store, experiment)
    first.start_pipeline("run-r", "toy", {"seed": 0}, resume=False)
    first.stage_finished(record("g00/train", 0, {"loss": 1.0}))
    first.stage_finished(record("g01/train", 1, status="FAILED", error="RuntimeError: boom"))
    first.end_pipeline("FAILED")
    (parent,) = runs(store, experiment, "pipeline")
    assert parent.info.status == "FAILED"
    assert {own_name(r): r.info.status for r in runs(store, experiment, "generation")} == {
        "gen-00": "FINISHED",
        "gen-01": "FAILED",
    }

    second = tracker_for(store, experiment)
    second.start_pipeline("run-r", "toy", {"seed": 0}, resume=True)
    assert second.parent_run_id == parent.info.run_id
    second.stage_finished(record("g00/train", 0, {"loss": 1.0}, cache_hit=True))  # already tracked: not duplicated
    second.stage_started("g01/train", 1)
    second.stage_finished(record("g01/train", 1, {"loss": 0.5}))
    second.end_pipeline("FINISHED")

    assert len(runs(store, experiment, "pipeline")) == 1
    gens = {own_name(r): r for r in runs(store, experiment, "generation")}
    assert sorted(gens) == ["gen-00", "gen-01"] and gens["gen-01"].info.status == "FINISHED"
    stage_runs = [(own_name(r), r.info.status) for r in runs(store, experiment, "stage")]
    assert sorted(stage_runs) == [("g00/train", "FINISHED"), ("g01/train", "FAILED"), ("g01/train", "FINISHED")]
    retry = [r for r in runs(store, experiment, "stage") if r.info.status == "FINISHED" and own_name(r) == "g01/train"]
    assert retry[0].data.tags["mlflow.parentRunId"] == gens["gen-01"].info.run_id


def test_a_paused_trial_keeps_its_generations_finished_and_runs_again_on_resume(store, experiment):
    first = tracker_for(store, experiment)
    first.start_pipeline("run-p", "toy", {"seed": 0}, resume=False)
    first.stage_finished(record("g00/evaluate", 0, {"accuracy": 0.5}))
    first.end_pipeline("PAUSED")
    (parent,) = runs(store, experiment, "pipeline")
    assert (parent.info.status, parent.data.tags["relay.status"]) == ("KILLED", "PAUSED")
    assert [r.info.status for r in runs(store, experiment, "generation")] == ["FINISHED"]

    second = tracker_for(store, experiment)
    second.start_pipeline("run-p", "toy", {"seed": 0}, resume=True)
    (parent,) = runs(store, experiment, "pipeline")
    assert (parent.info.status, parent.data.tags["relay.status"]) == ("RUNNING", "RUNNING")
    second.end_pipeline("FINISHED")
    (parent,) = runs(store, experiment, "pipeline")
    assert (parent.info.status, parent.data.tags["relay.status"]) == ("FINISHED", "FINISHED")


def test_start_pipeline_twice_opens_one_parent(store, experiment):
    tracker = tracker_for(store, experiment)
    tracker.start_pipeline("run-x", "toy", {}, resume=False)
    tracker.start_pipeline("run-x", "toy", {}, resume=False)
    assert len(runs(store, experiment, "pipeline")) == 1


def test_failures_warn_unless_strict(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    uri = f"sqlite:///{blocker / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay")
    tracker.start_pipeline("run-w", "toy", {}, resume=False)
    assert "MLflow start_pipeline failed" in caplog.text
    assert tracker.parent_run_id is None
    tracker.stage_finished(record("g00/train", 0))  # no parent: silently nothing
    tracker.end_pipeline("FINISHED")
    with pytest.raises(TrackingError, match="MLflow start_pipeline failed .*tracking.strict=false"):
        MlflowTracker(uri, "relay", strict=True).start_pipeline("run-w", "toy", {}, resume=False)


def test_default_artifact_location_sits_beside_sqlite_db(tmp_path):
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay")
    assert tracker.artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert MlflowTracker("http://mlflow:5000", "relay").artifact_location is None


def test_trackers_satisfy_the_protocol():
    null: Tracker = NullTracker()
    null.start_pipeline("r", "p", {}, False)
    null.stage_finished(record("s", None))
    assert null.parent_run_id is None
    assert isinstance(logging.getLogger("orchestrator.tracking"), logging.Logger)


def lineage_outputs(tmp_path, generation):
    """A stored model checkpoint and a Parquet dataset, as the runner describes them to the tracker."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from orchestrator.engine.records import TrackedArtifact

    model = tmp_path / f"g{generation}-model.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "model": "toy", "num_classes": 2}, model)
    table = tmp_path / f"g{generation}-picks.parquet"
    pq.write_table(pa.table({"sample_id": pa.array([1, 2], pa.int64()), "probs": pa.array([[0.1, 0.9]] * 2)}), table)
    return {
        f"g{generation:02d}/model": TrackedArtifact(
            f"g{generation:02d}/model", model.as_uri(), "a" * 64, "checkpoint", "model", str(model)
        ),
        f"g{generation:02d}/picks": TrackedArtifact(
            f"g{generation:02d}/picks", table.as_uri(), f"{generation}" * 64, "table", "dataset", str(table)
        ),
    }


def test_lineage_models_registered_datasets_and_teacher_as_inputs(store, experiment, tmp_path):
    tracker = tracker_for(store, experiment, log_models=True)
    tracker.start_pipeline("run-l", f"toy-{experiment}", {}, resume=False)
    gen0, gen1 = lineage_outputs(tmp_path, 0), lineage_outputs(tmp_path, 1)
    tracker.stage_finished(record("g00/train", 0, outputs={"g00/model": gen0["g00/model"]}))
    tracker.stage_finished(record("g00/rebalance", 0, inputs=("g00/model",), outputs={"g00/picks": gen0["g00/picks"]}))
    tracker.stage_finished(record("g01/train", 1, inputs=("g00/picks",), outputs={"g01/model": gen1["g01/model"]}))
    tracker.end_pipeline("FINISHED")
    client = MlflowClient(store[0])
    stages = {own_name(r): client.get_run(r.info.run_id) for r in runs(store, experiment, "stage")}
    train1 = stages["g01/train"]
    (dataset,) = train1.inputs.dataset_inputs
    assert dataset.dataset.name == "g00/picks" and dataset.dataset.digest == "0" * 32
    assert '"sample_id"' in dataset.dataset.schema and '"array"' in dataset.dataset.schema
    teacher = train1.inputs.model_inputs[0].model_id
    assert client.get_logged_model(teacher).tags["relay.artifact"] == "g00/model"
    assert train1.data.tags["relay.teacher"] == f"models:/{teacher}"
    registered = client.get_registered_model(f"toy-{experiment}")
    assert sorted(registered.aliases) == ["gen-00", "gen-01", "newest"]
    assert registered.aliases["newest"] == registered.aliases["gen-01"]
    newest = client.get_model_version_by_alias(f"toy-{experiment}", "newest")
    assert newest.run_id == train1.info.run_id
    parent = client.get_run(tracker.parent_run_id)  # the pipeline run lists what it registered
    name = f"toy-{experiment}"
    assert parent.data.tags["relay.registered_models"] == f"models:/{name}/1 (gen-00), models:/{name}/2 (gen-01)"
    models = {output.model_id: output.step for output in parent.outputs.model_outputs}
    assert models == {teacher: 0, train1.outputs.model_outputs[0].model_id: 1}


def test_lineage_can_be_switched_off_for_models(store, experiment, tmp_path):
    tracker = tracker_for(store, experiment, log_models=False)
    tracker.start_pipeline("run-n", f"toy-{experiment}", {}, resume=False)
    tracker.stage_finished(record("g00/train", 0, outputs={"g00/model": lineage_outputs(tmp_path, 0)["g00/model"]}))
    tracker.end_pipeline("FINISHED")
    assert MlflowClient(store[0]).search_registered_models(f"name = 'toy-{experiment}'") == []


def test_the_experiment_opens_in_the_model_training_view(store, experiment):
    tracker_for(store, experiment).start_pipeline("run-k", "toy", {}, resume=False)
    client = MlflowClient(store[0])
    assert client.get_experiment_by_name(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    # made before Relay tagged experiments; an explicit artifact location, or MLflow would write to ./mlruns
    artifacts = (store[1] / "mlartifacts").as_uri()
    older = client.create_experiment(f"{experiment}-older", artifact_location=f"{artifacts}/older")
    chosen = client.create_experiment(
        f"{experiment}-genai",
        artifact_location=f"{artifacts}/genai",
        tags={"mlflow.experimentKind": "genai_development"},
    )
    tracker_for(store, f"{experiment}-older").start_pipeline("run-k", "toy", {}, resume=False)
    tracker_for(store, f"{experiment}-genai").start_pipeline("run-k", "toy", {}, resume=False)
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment(chosen).tags["mlflow.experimentKind"] == "genai_development"  # a choice is kept


def test_plots_are_also_stepped_images_on_the_pipeline_run(store, experiment, tmp_path):
    from PIL import Image

    tracker = tracker_for(store, experiment)
    tracker.start_pipeline("run-i", "toy", {}, resume=False)
    for generation in (0, 1):
        plot = tmp_path / f"per_class-{generation}.png"
        Image.new("RGB", (8, 6), (generation * 200, 0, 0)).save(plot)
        files = {"per_class.png": str(plot), "picks.csv": str(tmp_path / "none.csv")}
        (tmp_path / "none.csv").write_text("a\n")
        tracker.stage_finished(record(f"g{generation:02d}/evaluate", generation, files=files))
    tracker.end_pipeline("FINISHED")
    client = MlflowClient(store[0])
    images = [a.path for a in client.list_artifacts(tracker.parent_run_id, "images")]
    stepped = sorted(path.split("+")[2] for path in images if path.endswith(".png"))
    assert stepped == ["0", "1"], images
    assert all(path.startswith("images/evaluate~per_class+step+") for path in images)
    assert client.get_run(tracker.parent_run_id).data.tags["mlflow.loggedImages"] == "True"


def test_more_params_and_metrics_than_one_batch_holds_all_land(store, experiment):
    tracker = tracker_for(store, experiment)
    config = {"section": {f"key{i}": i for i in range(150)}}  # MLflow takes 100 params per batch
    tracker.start_pipeline("run-b", "toy", config, resume=False)
    series = [(step, {"loss": 1.0 / step}) for step in range(1, 1201)]  # and 1000 metrics
    tracker.stage_finished(record("g00/train", 0, series=series))
    tracker.end_pipeline("FINISHED")
    client = MlflowClient(store[0])
    assert len(client.get_run(tracker.parent_run_id).data.params) == 150
    (train,) = runs(store, experiment, "stage")
    assert len(client.get_metric_history(train.info.run_id, "loss")) == 1200


def test_system_metrics_start_and_stop_with_a_stage(store, experiment):
    """MLflow's system metrics need psutil (declared): a strict tracker raises if the monitor cannot start."""
    tracker = tracker_for(store, experiment, strict=True, system_metrics=True, system_metrics_interval_s=60.0)
    tracker.start_pipeline("run-sys", "toy", {}, resume=False)
    tracker.stage_started("g00/train", 0)
    assert "g00/train" in tracker._monitors
    tracker.stage_finished(record("g00/train", 0))
    tracker.end_pipeline("FINISHED")
    assert tracker._monitors == {}


def image_file(path, shade):
    """A tiny PNG whose bytes differ with ``shade``, so a test can tell whose plot landed where."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (shade, 0, 0)).save(path)
    return str(path)


def test_side_branch_models_get_a_role_alias_never_gen_nn_or_newest(store, experiment, tmp_path):
    """FitNets' `kd/train` sits in generation 1 and finished last: `gen-01` and `newest` must stay on g01's model."""
    tracker = tracker_for(store, experiment, log_models=True)
    name = f"toy-{experiment}"
    tracker.start_pipeline("run-side", name, {}, resume=False)
    student = lineage_outputs(tmp_path, 1)["g01/model"]
    kd = TrackedArtifact("kd/model", student.uri, "b" * 64, "checkpoint", "model", student.local_path)
    tracker.stage_finished(record("g01/train", 1, outputs={"g01/model": student}))
    tracker.stage_finished(record("kd/train", 1, outputs={"kd/model": kd}))
    tracker.end_pipeline("FINISHED")
    client = MlflowClient(store[0])
    assert client.get_registered_model(name).aliases == {"gen-01": 1, "newest": 1, "kd-gen-01": 2}
    stages = {own_name(r): r.info.run_id for r in runs(store, experiment, "stage")}
    assert client.get_model_version_by_alias(name, "gen-01").run_id == stages["g01/train"]
    tag = client.get_run(tracker.parent_run_id).data.tags["relay.registered_models"]
    assert tag == f"models:/{name}/1 (gen-01), models:/{name}/2 (kd-gen-01)"


def test_side_branch_plots_do_not_replace_the_generations_own(store, experiment, tmp_path):
    """`gen-01/evaluate/per_class.png` is g01's plot; KD's keeps its stage name; one image per key and step."""
    tracker = tracker_for(store, experiment)
    tracker.start_pipeline("run-plots", "toy", {}, resume=False)
    own = image_file(tmp_path / "own" / "per_class.png", 10)  # stages store their plots under one name
    side = image_file(tmp_path / "side" / "per_class.png", 200)
    tracker.stage_finished(record("g01/evaluate", 1, files={"per_class.png": own}))
    tracker.stage_finished(record("kd/evaluate", 1, files={"per_class.png": side}))  # last, as in the bug
    tracker.end_pipeline("FINISHED")
    client = MlflowClient(store[0])
    (gen,) = runs(store, experiment, "generation")
    on_gen = client.download_artifacts(gen.info.run_id, "evaluate/per_class.png", str(tmp_path / "down"))
    assert Path(on_gen).read_bytes() == Path(own).read_bytes()
    assert [a.path for a in client.list_artifacts(gen.info.run_id, "kd/evaluate")] == ["kd/evaluate/per_class.png"]
    images = [a.path for a in client.list_artifacts(tracker.parent_run_id, "images") if a.path.endswith(".png")]
    keys = sorted(path.split("/", 1)[1].split("+step+")[0] for path in images)
    assert keys == ["evaluate~per_class", "kd~evaluate~per_class"], images


def test_resume_kills_the_stage_runs_a_dead_driver_left_running(store, experiment):
    """A driver killed mid-stage leaves its stage run RUNNING; the resumed run marks it KILLED."""
    first = tracker_for(store, experiment)
    first.start_pipeline("run-dead", "toy", {}, resume=False)
    first.stage_started("g01/train", 1)  # then SIGKILL: no stage_finished, no end_pipeline
    second = tracker_for(store, experiment)
    second.start_pipeline("run-dead", "toy", {}, resume=True)
    second.stage_started("g01/train", 1)
    second.stage_finished(record("g01/train", 1))
    second.end_pipeline("FINISHED")
    statuses = sorted(r.info.status for r in runs(store, experiment, "stage"))
    assert statuses == ["FINISHED", "KILLED"]


def test_a_model_logged_before_the_driver_died_is_not_logged_again_on_resume(store, experiment, tmp_path):
    """SIGKILL after a stage's model was logged but before its stage run closed: the resume re-tracks
    the (cached) stage; it must link the model it finds, not log and register a second copy."""
    name = f"toy-{experiment}"
    outputs = {"g00/model": lineage_outputs(tmp_path, 0)["g00/model"]}
    first = tracker_for(store, experiment, log_models=True)
    first.start_pipeline("run-k", name, {}, resume=False)
    first.stage_finished(record("g00/train", 0, outputs=outputs))
    client = MlflowClient(store[0])
    (stage,) = runs(store, experiment, "stage")
    client.update_run(stage.info.run_id, status="RUNNING")  # the close that the kill cut off
    second = tracker_for(store, experiment, log_models=True)
    second.start_pipeline("run-k", name, {}, resume=True)
    second.stage_finished(record("g00/train", 0, cache_hit=True, outputs=outputs))
    second.end_pipeline("FINISHED")
    exp = client.get_experiment_by_name(experiment)
    models = client.search_logged_models([exp.experiment_id], filter_string="tags.`relay.pipeline_run` = 'run-k'")
    assert len(models) == 1
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert [o.model_id for o in client.get_run(second.parent_run_id).outputs.model_outputs] == [models[0].model_id]
    statuses = sorted(r.info.status for r in runs(store, experiment, "stage"))
    assert statuses == ["FINISHED", "KILLED"]


def test_ending_the_pipeline_closes_stage_runs_left_open(store, experiment):
    """Ctrl-C mid-stage: the stage never reports; ending the pipeline KILLED closes its run too."""
    tracker = tracker_for(store, experiment)
    tracker.start_pipeline("run-int", "toy", {}, resume=False)
    tracker.stage_started("g01/train", 1)
    tracker.end_pipeline("KILLED")
    (stage,) = runs(store, experiment, "stage")
    (gen,) = runs(store, experiment, "generation")
    (parent,) = runs(store, experiment, "pipeline")
    assert (stage.info.status, gen.info.status, parent.info.status) == ("KILLED", "KILLED", "KILLED")
    assert parent.data.tags["relay.status"] == "INTERRUPTED"  # as `relay runs` says it


def test_a_run_stopped_after_a_stage_is_told_apart_from_an_interrupted_one(store, experiment):
    """`--stop-after` closed the parent KILLED with relay.status KILLED, as a Ctrl-C does: the UI could not tell."""
    tracker = tracker_for(store, experiment)
    tracker.start_pipeline("run-stop", "toy", {}, resume=False)
    tracker.stage_finished(record("g00/train", 0, {"loss": 0.5}))
    tracker.end_pipeline("STOPPED")
    (parent,) = runs(store, experiment, "pipeline")
    (gen,) = runs(store, experiment, "generation")
    assert (parent.info.status, parent.data.tags["relay.status"], gen.info.status) == ("KILLED", "STOPPED", "KILLED")


def test_a_rerun_of_the_same_weights_links_the_logged_model_and_moves_the_aliases(store, experiment, tmp_path):
    """A rerun whose stages hit the cache logged each model again (a second copy of the weights) and registered
    a new version of identical bytes; it now links the model and moves its version's aliases."""
    import dataclasses

    name = f"toy-{experiment}"
    same = lineage_outputs(tmp_path, 0)["g00/model"]
    other = dataclasses.replace(same, digest="b" * 64)  # another run's weights for the same stage
    for run_id, artifact in (("run-1", same), ("run-2", same), ("run-3", other), ("run-4", same)):
        tracker = tracker_for(store, experiment, log_models=True)
        tracker.start_pipeline(run_id, name, {}, resume=False)
        tracker.stage_finished(record("g00/train", 0, cache_hit=run_id != "run-1", outputs={"g00/model": artifact}))
        tracker.end_pipeline("FINISHED")
        parent = MlflowClient(store[0]).get_run(tracker.parent_run_id)
        version = "2" if run_id == "run-3" else "1"
        assert parent.data.tags["relay.registered_models"] == f"models:/{name}/{version} (gen-00)"
        assert MlflowClient(store[0]).get_registered_model(name).aliases == {
            "gen-00": int(version),
            "newest": int(version),
        }
        assert len(parent.outputs.model_outputs) == 1
    client = MlflowClient(store[0])
    exp = client.get_experiment_by_name(experiment)
    assert len(client.search_logged_models([exp.experiment_id])) == 2  # one copy of each set of weights
    assert sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'")) == ["1", "2"]


def test_evaluation_metrics_land_on_the_generations_logged_model_and_versions_name_their_run(
    store, experiment, tmp_path
):
    """search_logged_models(filter_string='metrics.balanced_accuracy > 0') found no model: the evaluate stage's
    metrics stayed on runs. Every model was named `g00-model` in every pipeline, and a registered version did
    not say which pipeline run and generation made it."""
    name = f"toy-{experiment}"
    tracker = tracker_for(store, experiment, log_models=True)
    tracker.start_pipeline("run-m", name, {}, resume=False)
    for generation in (0, 1):
        model = lineage_outputs(tmp_path, generation)[f"g{generation:02d}/model"]
        model = TrackedArtifact(model.name, model.uri, f"{generation}" * 64, "checkpoint", "model", model.local_path)
        scores = {"balanced_accuracy": 0.5 + generation / 4, "recall/3": 0.25}
        tracker.stage_finished(
            record(f"g{generation:02d}/train", generation, {"loss": 1.0}, outputs={model.name: model})
        )
        tracker.stage_finished(record(f"g{generation:02d}/evaluate", generation, scores, inputs=(model.name,)))
    tracker.end_pipeline("FINISHED")
    client = MlflowClient(store[0])
    exp = client.get_experiment_by_name(experiment)
    scored = client.search_logged_models([exp.experiment_id], filter_string="metrics.balanced_accuracy > 0")
    by_artifact = {m.tags["relay.artifact"]: m for m in scored}
    assert sorted(by_artifact) == ["g00/model", "g01/model"]
    for generation, accuracy in ((0, 0.5), (1, 0.75)):
        model = by_artifact[f"g{generation:02d}/model"]
        metrics = {m.key: m.value for m in model.metrics}
        assert metrics == {"balanced_accuracy": accuracy, "recall/3": 0.25}  # not the train loss, not duration_s
        assert model.name == f"{name}-g{generation:02d}-model"
    stages = {own_name(r): r.info.run_id for r in runs(store, experiment, "stage")}
    assert {m.run_id for m in by_artifact["g01/model"].metrics} == {stages["g01/evaluate"]}
    version = client.get_model_version_by_alias(name, "gen-01")
    assert version.tags["relay.pipeline_run"] == "run-m" and version.tags["relay.generation"] == "1"
    assert version.tags["relay.stage"] == "g01/train"


def track_generations(store, experiment, tmp_path, run_id, generations, status="FINISHED", resume=False, side=None):
    """A run of ``generations`` whose own models (and a `kd/` branch's at generation ``side``) have run-own bytes."""
    tracker = tracker_for(store, experiment, log_models=True)
    tracker.start_pipeline(run_id, f"toy-{experiment}", {}, resume=resume)
    for generation in generations:
        stored = lineage_outputs(tmp_path, generation)[f"g{generation:02d}/model"]
        own = TrackedArtifact(
            stored.name, stored.uri, f"{run_id}-{generation}", "checkpoint", "model", stored.local_path
        )
        tracker.stage_finished(record(f"g{generation:02d}/train", generation, outputs={own.name: own}))
        if generation == side:
            kd = TrackedArtifact("kd/model", stored.uri, f"{run_id}-kd", "checkpoint", "model", stored.local_path)
            tracker.stage_finished(record("kd/train", generation, outputs={"kd/model": kd}))
    tracker.end_pipeline(status)


def test_a_finished_run_removes_the_generation_aliases_beyond_its_last(store, experiment, tmp_path, caplog):
    """A run of 2 generations after one of 3 left `gen-02` on the older run's version: `@gen-01` and `@gen-02`
    came from unrelated runs. A part stopped early keeps them (its resume registers them); the finished run
    removes them and says so."""
    caplog.set_level(logging.INFO, logger="orchestrator.tracking")
    name = f"toy-{experiment}"
    client = MlflowClient(store[0])

    def aliased_runs():
        aliases = client.get_registered_model(name).aliases
        return {
            alias: client.get_model_version(name, str(v)).tags["relay.pipeline_run"] for alias, v in aliases.items()
        }

    track_generations(store, experiment, tmp_path, "run-3", (0, 1, 2), side=2)
    assert sorted(aliased_runs()) == ["gen-00", "gen-01", "gen-02", "kd-gen-02", "newest"]
    track_generations(store, experiment, tmp_path, "run-2", (0,), status="STOPPED")  # --stop-after g00/train
    assert set(aliased_runs().values()) == {"run-3"}  # a stopped run moves no alias
    assert "removed alias" not in caplog.text
    track_generations(store, experiment, tmp_path, "run-2", (1,), resume=True)  # the resume finishes it
    assert aliased_runs() == {"gen-00": "run-2", "gen-01": "run-2", "newest": "run-2"}
    (line,) = [r.getMessage() for r in caplog.records if "removed alias" in r.getMessage()]
    assert line == (
        f"removed alias(es) gen-02, kd-gen-02 of model {name}: an earlier run set them, "
        "and this run's last generation is gen-01"
    )


def test_a_finished_run_removes_the_branch_aliases_it_has_no_model_for(store, experiment, tmp_path, caplog):
    """`ke.compute_matched_baseline=false` after a run with the baseline left `baseline-gen-01` on the older run's
    version beside the new run's `gen-01`: the finished run removes it, saying so, as it removes `gen-NN`."""
    caplog.set_level(logging.INFO, logger="orchestrator.tracking")
    name = f"toy-{experiment}"
    client = MlflowClient(store[0])
    track_generations(store, experiment, tmp_path, "k1", (0, 1), side=1)
    assert sorted(client.get_registered_model(name).aliases) == ["gen-00", "gen-01", "kd-gen-01", "newest"]
    track_generations(store, experiment, tmp_path, "k4", (0, 1))  # the same config without its kd branch
    aliases = client.get_registered_model(name).aliases
    assert {a: client.get_model_version(name, str(v)).tags["relay.pipeline_run"] for a, v in aliases.items()} == {
        "gen-00": "k4",
        "gen-01": "k4",
        "newest": "k4",
    }
    (line,) = [r.getMessage() for r in caplog.records if "removed alias" in r.getMessage()]
    assert line == (
        f"removed alias(es) kd-gen-01 of model {name}: an earlier run set them, "
        "and this run has no model of their branch"
    )
    track_generations(store, experiment, tmp_path, "k5", (0, 1), side=1)  # a run with the branch keeps its own
    assert sorted(client.get_registered_model(name).aliases) == ["gen-00", "gen-01", "kd-gen-01", "newest"]
