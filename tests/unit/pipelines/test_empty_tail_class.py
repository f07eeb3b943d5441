"""A long tail that leaves a class 0 images is bad input: exit 2, one message with the keys and the fix, nothing written.

Before the fix: `data.imbalance_ratio=200` at `data.head_count` 130 (crest_digits.yaml) or 100 (smoke.yaml) drew
counts ending in 0 and was valid (rc 0); the run gave those classes 0 labels, CReST's head rate (N_L / N_1)^(1/alpha)
was 0, so every head pseudo-label was dropped, and the balanced test set still held the class. Real CLI, real
digits, real split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from pipelines.long_tail import labeled_counts, long_tailed_split
from pipelines.sampling import crest_rates

CONFIGS = Path(__file__).resolve().parents[3] / "pipelines" / "configs"
# Where such a run is accepted, it stops after drawing its split, in this process: the test stays short either way.
JUST_THE_SPLIT = ("run.executor=local", "--stop-after", "data/split")


def _refused(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def test_validate_refuses_a_tail_class_of_0_images_and_names_the_fix(capsys: pytest.CaptureFixture) -> None:
    err = _refused(capsys, "validate", str(CONFIGS / "crest_digits.yaml"), "data.imbalance_ratio=200")
    assert "data.imbalance_ratio: 200 with data.head_count 130 leaves the rarest class" in err, err
    assert "0 images (N_L = head_count / imbalance_ratio = 0.65, below 1)" in err
    assert "Set data.imbalance_ratio to at most 130" in err
    assert "or data.head_count to at least 200" in err
    assert err.count("data.imbalance_ratio: 200") == 1, "one message, not one per check"


def test_the_suggested_imbalance_ratio_passes(capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(CONFIGS / "crest_digits.yaml"), "data.imbalance_ratio=130"]) == 0
    assert main(["validate", str(CONFIGS / "crest_digits.yaml"), "data.imbalance_ratio=131"]) == 2
    assert "at most 130" in capsys.readouterr().err


def test_the_class_order_names_the_class_that_gets_0(capsys: pytest.CaptureFixture) -> None:
    order = "data.class_order=[9,8,7,6,5,4,3,2,1,0]"
    err = _refused(capsys, "validate", str(CONFIGS / "smoke.yaml"), "data.imbalance_ratio=200", order)
    assert "leaves class 0 (the last of data.class_order) 0 images" in err, err


@pytest.mark.parametrize("config", ["crest_digits", "noisy_student_digits", "ke_digits", "distill_digits"])
def test_run_refuses_it_in_every_long_tailed_pipeline_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, config: str
) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", str(CONFIGS / f"{config}.yaml"), f"run.workspace={workspace}", "data.imbalance_ratio=200"]
    err = _refused(capsys, *argv, *JUST_THE_SPLIT)
    assert "data.imbalance_ratio: 200 with data.head_count 130 leaves" in err, err
    assert not workspace.exists(), "bad input must not create the workspace"


def test_smoke_run_is_refused_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    workspace = tmp_path / "ws"
    argv = [
        "run",
        str(CONFIGS / "smoke.yaml"),
        "train.steps=30",
        "data.imbalance_ratio=200",
        f"run.workspace={workspace}",
    ]
    err = _refused(capsys, *argv, *JUST_THE_SPLIT)
    assert "data.imbalance_ratio: 200 with data.head_count 100" in err and "at most 100" in err, err
    assert not workspace.exists()
    assert list(tmp_path.iterdir()) == []


def test_tune_refuses_a_trial_value_that_empties_a_class(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = (CONFIGS / "smoke.yaml").read_text()
    line = "    crest.alpha: {choice: [2, 3]}"
    assert line in text
    config = tmp_path / "sweep.yaml"
    config.write_text(text.replace(line, "    data.imbalance_ratio: {choice: [10, 200]}  #"))
    workspace = tmp_path / "ws"
    err = _refused(capsys, "tune", str(config), f"run.workspace={workspace}")
    assert "tune.space.data.imbalance_ratio: 200 with data.head_count 100 leaves" in err, err
    assert not workspace.exists()


def test_the_split_itself_names_the_classes_that_get_0() -> None:
    labels = np.repeat(np.arange(4), 50)
    with pytest.raises(ValueError, match=r"leaves class 'd' 0 images .*at most 30.*at least 40"):
        long_tailed_split(labels, 4, 30, 40, 0.5, np.random.default_rng(0), class_names=["a", "b", "c", "d"])


def test_a_head_count_fix_that_would_empty_a_class_is_not_suggested() -> None:
    """The largest head_count the data holds, 30, leaves a class 0 images at imbalance_ratio 50: say so."""
    labels = np.repeat(np.arange(3), 30)
    with pytest.raises(ValueError, match="No head_count fits every class at imbalance_ratio 50") as caught:
        long_tailed_split(labels, 3, 100, 50, 0.5, np.random.default_rng(0))
    assert "lower imbalance_ratio to at most 30 with head_count 30" in str(caught.value)
    assert "Set head_count to at most 30" not in str(caught.value)
    parts = long_tailed_split(labels, 3, 30, 30, 0.5, np.random.default_rng(0))  # the suggestion fits
    assert np.bincount(labels[parts["labeled"]], minlength=3).min() >= 1


def test_every_class_of_one_image_keeps_its_label_whatever_the_fraction() -> None:
    assert labeled_counts([5, 1], 1e-12) == [1, 1]
    assert labeled_counts([10, 3], 0.3) == [3, 1]


def test_crest_rates_refuse_a_class_with_no_label() -> None:
    with pytest.raises(ValueError, match=r"classes \[2\] have 0 labeled images"):
        crest_rates([10, 3, 0], alpha=3.0)
