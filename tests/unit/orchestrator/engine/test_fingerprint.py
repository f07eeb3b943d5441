"""Fingerprints: stable under reordering, sensitive to everything that determines a stage's outputs."""

import dataclasses
import shutil
from pathlib import Path

import pytest

from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.dag import Parallelism, Resources, Stage
from orchestrator.engine.fingerprint import code_versions, fingerprint, source_closure
from tests.unit.orchestrator.engine.toy import evaluate, toy, train

# what of a stage's resources changes its float results (toy()'s g00/train: 2 CPUs, 1 worker, no GPU)
NUMERICS = [Resources(num_cpus=1), Resources(num_cpus=2, num_gpus=1), Resources(num_cpus=2, workers=2)]


def test_fingerprint_is_stable_and_sensitive():
    stage = toy().stage("g00/train")
    base = fingerprint(stage, {"data": "d1"}, "v1", seed=0)
    reordered = Stage(
        "g00/train",
        train,
        ("data",),
        ("model",),
        params=dict(reversed(list({"lr": 0.5}.items()))),
        resources=Resources(num_cpus=2, custom={"ssd": 1}),
    )
    assert fingerprint(stage, {"data": "d1"}, "v1", seed=0) == base
    assert fingerprint(reordered, {"data": "d1"}, "v1", seed=0) == base  # custom resources/generation do not matter
    changed = [
        fingerprint(toy(lr=0.1).stage("g00/train"), {"data": "d1"}, "v1", seed=0),
        fingerprint(stage, {"data": "d2"}, "v1", seed=0),
        fingerprint(stage, {"data": "d1"}, "v2", seed=0),
        fingerprint(stage, {"data": "d1"}, "v1", seed=1),
        fingerprint(Stage("g00/train", evaluate, ("data",), ("model",), params={"lr": 0.5}), {"data": "d1"}, "v1"),
        *(fingerprint(dataclasses.replace(stage, resources=r), {"data": "d1"}, "v1", seed=0) for r in NUMERICS),
    ]
    assert len(set(changed + [base])) == len(changed) + 1
    assert len(base) == 64


def test_shard_actors_do_not_change_a_fingerprint_but_threads_and_ranks_do():
    """A labeling stage moved to more actors is still cached (each shard is labeled alike); more threads or
    data-parallel ranks add floats in another order, so a training stage with them is another result."""
    labeling = Stage("g00/label", train, ("data",), ("labels",), parallelism=Parallelism.SHARDS)
    one, four = (dataclasses.replace(labeling, resources=Resources(workers=n)) for n in (1, 4))
    assert fingerprint(one, {}, "v1") == fingerprint(four, {}, "v1")
    threads = dataclasses.replace(labeling, resources=Resources(num_cpus=2, workers=4))
    assert fingerprint(threads, {}, "v1") != fingerprint(four, {}, "v1")


def test_fingerprint_rejects_params_that_are_not_json():
    stage = Stage("s", train, (), ("m",), params={"obj": object()})
    with pytest.raises(TypeError, match="stage 's': cannot fingerprint its params"):
        fingerprint(stage, {}, "v1")


# --- code versions: a stage's own modules, not the whole package ---------------------------

ROOT = Path(__file__).resolve().parents[4]


def stage_modules(config_name: str) -> set[str]:
    spec, config = load_pipeline_config(str(ROOT / "pipelines" / "configs" / config_name), [])
    return {stage.fn.__module__ for stage in spec.build(config).stages}


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    """A copy of the pipelines package to edit (the repository itself is never touched)."""
    package = tmp_path_factory.mktemp("copy") / "pipelines"
    shutil.copytree(ROOT / "pipelines", package, ignore=shutil.ignore_patterns("__pycache__", "configs"))
    return package


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_editing_the_ke_loop_keeps_crest_stages_cached(package_copy):
    crest, ke = stage_modules("smoke.yaml"), stage_modules("ke_digits.yaml")
    modules = crest | ke
    before = code_versions(modules, package_copy)
    assert before == code_versions(modules, ROOT / "pipelines"), "the version is the code's, not its folder's"
    edit(package_copy / "training" / "student.py")  # the loop KE, Noisy Student and distillation train with
    after = code_versions(modules, package_copy)
    assert {m: after[m] for m in crest} == {m: before[m] for m in crest}
    assert after["pipelines.stages.train_network"] != before["pipelines.stages.train_network"]
    edit(package_copy / "training" / "fixmatch.py")
    again = code_versions(modules, package_copy)
    assert {m for m in modules if again[m] != after[m]} == {"pipelines.stages.train"}


def test_a_module_imported_lazily_counts_and_a_foreign_one_does_not(tmp_path):
    package = tmp_path / "mine"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "body.py").write_text("import torch\n\ndef run():\n    from mine import helper\n    return helper\n")
    (package / "helper.py").write_text("X = 1\n")
    (package / "unused.py").write_text("Y = 2\n")
    assert sorted(source_closure("mine.body", package)) == ["mine", "mine.body", "mine.helper"]
    before = code_versions(["mine.body"], package)
    edit(package / "unused.py")
    assert code_versions(["mine.body"], package) == before
    edit(package / "helper.py")
    assert code_versions(["mine.body"], package) != before
