"""Two real smoke runs in one workspace, read as a user reads them in MLflow's UI and with `relay generations`.

Why: every pipeline run's generation runs were named `gen-00`, `gen-01` and its stage runs `g00/train`, so where
MLflow lists runs of several pipeline runs together (a search, the compare view) they read alike; and the
8-character run id MLflow's UI shows, given to `relay generations`, found no run. Real CLI, real training, real
artifact store, real SQLite MLflow store; the model registry's `gen-NN` aliases are untouched by the names.
"""

from __future__ import annotations

import pytest

from tests.integration.relay_cli import ROOT, mlflow_client, pipeline_runs, relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")
SMALL = ("train.steps=10", "crest.generations=2", "run.executor=local")
RUNS = ("names-a", "names-b")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """Two runs of the smoke pipeline, the second with another seed (so it trains, not a cache hit)."""
    workspace = tmp_path_factory.mktemp("ws")
    for seed, run_id in enumerate(RUNS):
        result = relay("run", SMOKE, *SMALL, f"seed={seed}", "--run-id", run_id, workspace=workspace)
        assert result.returncode == 0, result.stderr[-4000:]
    return workspace


def of_kind(workspace, run_id: str, kind: str) -> list:
    return [run for run in pipeline_runs(workspace, run_id) if run.data.tags["relay.kind"] == kind]


def files_of(folder) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_generation_and_stage_runs_say_whose_they_are(workspace) -> None:
    generations = [run for run_id in RUNS for run in of_kind(workspace, run_id, "generation")]
    assert sorted(run.info.run_name for run in generations) == [
        "gen-00 of names-a",
        "gen-00 of names-b",
        "gen-01 of names-a",
        "gen-01 of names-b",
    ]
    stages = {run.info.run_name for run_id in RUNS for run in of_kind(workspace, run_id, "stage")}
    assert {
        "g00/train of names-a",
        "g00/train of names-b",
        "g01/evaluate of names-b",
        "data/split of names-a",
    } <= stages
    parents = [run.info.run_name for run_id in RUNS for run in of_kind(workspace, run_id, "pipeline")]
    assert parents == list(RUNS)  # the pipeline run keeps the run id as its name


def test_the_registry_aliases_stay_gen_nn_on_the_newest_runs_models(workspace) -> None:
    client = mlflow_client(workspace)
    for alias, generation in (("gen-00", "0"), ("gen-01", "1"), ("newest", "1")):
        version = client.get_model_version_by_alias("smoke", alias)  # models:/smoke@gen-00 and so on
        assert version.tags["relay.pipeline_run"] == "names-b" and version.tags["relay.generation"] == generation


@pytest.mark.parametrize(("run_id", "kind"), [("names-a", "generation"), ("names-b", "pipeline"), ("names-a", "stage")])
def test_the_8_characters_mlflow_s_ui_shows_name_the_run_in_relay_generations(workspace, run_id, kind) -> None:
    mlflow_id = of_kind(workspace, run_id, kind)[0].info.run_id
    shown = relay("generations", mlflow_id[:8], workspace=workspace)
    assert shown.returncode == 0, shown.stderr[-4000:]
    assert f"Run {run_id}: per-generation results on the test set" in shown.stdout
    rows = [line.split() for line in shown.stdout.splitlines() if line[:2] in ("0 ", "1 ")]
    assert [row[0] for row in rows] == ["0", "1"] and all(row[1] != "-" for row in rows)
    assert shown.stdout == relay("generations", run_id, workspace=workspace).stdout  # the same table as by its id


def test_a_prefix_no_mlflow_run_id_starts_with_is_one_message_exit_2_and_nothing_written(workspace) -> None:
    ids = [run.info.run_id for run_id in RUNS for run in pipeline_runs(workspace, run_id)]
    unknown = next(p for p in ("00000000", "11111111", "22222222") if not any(i.startswith(p) for i in ids))
    before = files_of(workspace)
    shown = relay("generations", unknown, workspace=workspace)
    assert shown.returncode == 2
    assert shown.stdout == ""
    assert shown.stderr.count("run_id:") == 1
    assert f"no run '{unknown}' in the artifact store, and no MLflow run in the tracking store" in shown.stderr
    assert "pass the Relay run id (`relay runs` lists them) or an MLflow run id of the run" in shown.stderr
    assert "Traceback" not in shown.stderr
    assert files_of(workspace) == before
