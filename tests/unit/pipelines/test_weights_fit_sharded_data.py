"""`init.source` weights that do not fit the network a sharded dataset (`data.name=parquet`) trains are refused before
the run, exit 2 and nothing written, as for an in-memory dataset. The channels and classes come from the dataset's
manifest; they were only compared when `g00/train` loaded the weights, and the run failed midway (exit 1, a FAILED
run record). Real files throughout: an image folder written with PIL and imported, weights saved by torch.save, a
finished run's checkpoint in a real artifact store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from orchestrator.cli import main
from orchestrator.dag import StageResult
from orchestrator.engine.artifacts import ArtifactStore
from pipelines.datasets import imports
from pipelines.models import create_model
from pipelines.stages.common import model_checkpoint
from tests.unit.orchestrator.cli.problems import problem_lines

SMOKE = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml"
CLASSES = ("cat", "dog", "owl")


def rgb_shards(tmp_path: Path) -> Path:
    """A 3-channel dataset of 3 classes with a test split, imported from an image folder as `relay data import` does."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 30), ("test", 5)):
        for name in CLASSES:
            folder = tmp_path / "folder" / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    imports.import_dataset(str(tmp_path / "folder"), str(tmp_path / "shards"), {"image_size": 8})
    return tmp_path / "shards"


def saved_weights(path: Path, channels: int, classes: int = 10) -> Path:
    torch.save(create_model("small_cnn", classes, channels).state_dict(), path)
    return path


def on_shards(shards: Path, workspace: Path, *overrides: str) -> list[str]:
    """`relay run smoke.yaml` on ``shards``, small enough for 3 classes of 30 images."""
    data = [f"data.uri={shards}", "data.name=parquet", "data.head_count=20", f"run.workspace={workspace}"]
    return ["run", str(SMOKE), *data, *overrides]


def test_weights_of_another_channel_count_are_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    shards, workspace = rgb_shards(tmp_path), tmp_path / "ws"
    weights = saved_weights(tmp_path / "gray.pt", channels=1)
    assert main(on_shards(shards, workspace, f"init.source={weights}")) == 2
    assert not workspace.exists(), "refused input must not create the workspace"
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(f"init.source: {weights} does not fit model.name 'small_cnn': shapes differ: ")
    assert "features.0.0.weight (weights [32, 1, 3, 3], network [32, 3, 3, 3])" in problem
    assert "(the weights take 1-channel images; this dataset's are 3-channel)" in problem


def test_the_classes_are_the_manifests(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A kept head is held to the dataset's 3 classes (or to `data.classes`), read from its manifest."""
    shards, workspace = rgb_shards(tmp_path), tmp_path / "ws"
    weights = saved_weights(tmp_path / "ten.pt", channels=3, classes=10)
    assert main(on_shards(shards, workspace, f"init.source={weights}", "init.head=keep")) == 2
    assert not workspace.exists()
    [problem] = problem_lines(capsys.readouterr().err)
    assert "the classifier" in problem and "the weights have 10 outputs, the network 3" in problem

    fitting = saved_weights(tmp_path / "two.pt", channels=3, classes=2)
    validate = ["validate", *on_shards(shards, workspace, f"init.source={fitting}", "init.head=keep")[1:]]
    assert main([*validate, "data.classes=[cat,owl]"]) == 0
    assert main(validate) == 2, "2 outputs against the dataset's 3 classes"


def test_weights_that_fit_are_taken(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shards, workspace = rgb_shards(tmp_path), tmp_path / "ws"
    weights = saved_weights(tmp_path / "rgb.pt", channels=3)
    assert main(["validate", *on_shards(shards, workspace, f"init.source={weights}")[1:]]) == 0, capsys.readouterr()


def finished_run(workspace: Path, run_id: str, channels: int) -> None:
    """A run whose `g00/train` stored a small_cnn checkpoint, as the train stage writes it, and its ledger."""
    store = ArtifactStore(str(workspace / "artifacts"))
    network = create_model("small_cnn", len(CLASSES), channels)
    checkpoint = model_checkpoint(network, "small_cnn", len(CLASSES), channels, 0.0, (8, 8))
    store.write_stage("f" * 64, "g00/train", StageResult(outputs={"g00/model": checkpoint}))
    ledger = {"stages": {"g00/train": {"state": "succeeded", "fingerprint": "f" * 64}}}
    (workspace / "artifacts" / "runs" / run_id).mkdir(parents=True)
    (workspace / "artifacts" / "runs" / run_id / "ledger.json").write_text(json.dumps(ledger))


def test_a_run_stage_of_another_model_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shards, workspace = rgb_shards(tmp_path), tmp_path / "ws"
    finished_run(workspace, "earlier", channels=3)
    before = sorted(workspace.rglob("*"))
    overrides = ("init.source=run:earlier/g00/train", "model.name=resnet18")
    assert main(on_shards(shards, workspace, *overrides)) == 2
    assert sorted(workspace.rglob("*")) == before, "refused input must write nothing"
    lacking = problem_lines(capsys.readouterr().err)
    fit = "init.source: run:earlier/g00/train does not fit model.name 'resnet18': "
    assert [line[: len(fit) + 30] for line in lacking] == [
        f"{fit}layers the weights lack: bn1.b",
        f"{fit}layers the network lacks: feat",
    ]
    assert main(["validate", *on_shards(shards, workspace, "init.source=run:earlier/g00/train")[1:]]) == 0
