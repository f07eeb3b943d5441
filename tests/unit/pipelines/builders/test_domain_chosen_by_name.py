"""Domain similarity names the source it chose, and its ranking, by name in MLflow.

Before the fix, the chosen source was shown as an index only (the metric `train/source_rank0_index`, e.g. 1): which
candidate that was had to be worked out from the order of `domain.sources`. A tiny real run (local
executor, real MLflow sqlite store) must tag the pipeline run `domain.chosen_source=<name>` and log
the ranking as a table of names.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from orchestrator.cli import main
from tests.integration.relay_cli import own_name

CONFIG = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "domain_similarity_digits.yaml")
TINY = [
    "run.executor=local",
    "train.steps=3",
    "train.warmup_steps=1",
    "init.freeze_backbone_steps=1",
    "domain.pretrain_steps=3",
    "domain.baseline=false",
]
SOURCES = {"noisy-digits", "rotated-digits", "templates", "pure-noise"}


def test_the_chosen_source_is_a_tag_by_name_and_the_ranking_a_table_of_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI"):  # the test names its stores
        monkeypatch.delenv(name, raising=False)
    workspace = tmp_path / "ws"
    assert main(["run", CONFIG, *TINY, f"run.workspace={workspace}", "--run-id", "ds"]) == 0
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    runs = {own_name(r): r for r in client.search_runs([experiment], "tags.`relay.pipeline_run` = 'ds'")}

    similarity = {k.split("/", 1)[1]: v for k, v in runs["ds"].data.metrics.items() if k.startswith("similarity/")}
    assert set(similarity) == SOURCES
    most_similar = max(similarity, key=similarity.__getitem__)
    for name in ("ds", "gen-00", "g00/similarity"):  # the pipeline run, its generation and the stage
        assert runs[name].data.tags["domain.chosen_source"] == most_similar

    local = mlflow.artifacts.download_artifacts(
        run_id=runs["gen-00"].info.run_id, artifact_path="similarity/ranking.csv", tracking_uri=uri, dst_path=tmp_path
    )
    rows = list(csv.DictReader(io.StringIO(Path(local).read_text())))
    assert rows[0]["source"] == most_similar and {row["source"] for row in rows} == SOURCES
    assert [int(row["rank"]) for row in rows] == [0, 1, 2, 3]
    assert "tags.json" not in {f.path for f in client.list_artifacts(runs["g00/similarity"].info.run_id)}

    assert main(["run", CONFIG, *TINY, f"run.workspace={workspace}", "--run-id", "ds-again"]) == 0  # all cached
    [again] = client.search_runs(
        [experiment], "tags.`relay.pipeline_run` = 'ds-again' and tags.`relay.kind` = 'pipeline'"
    )
    assert again.data.tags["domain.chosen_source"] == most_similar
