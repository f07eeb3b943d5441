"""Error messages carry what/where, and errors survive pickling (they cross Ray process boundaries)."""

import pickle

import pytest

from orchestrator.errors import ArtifactError, ConfigError, PipelineError, RelayError, StageError


def test_config_error_lists_every_problem_with_source():
    err = ConfigError(["crest.alpha: must be > 0 (got -1)", "train.stepz: unknown key; valid keys: steps"], "c.yaml")
    assert str(err) == (
        "2 problem(s) in c.yaml:\n  - crest.alpha: must be > 0 (got -1)\n  - train.stepz: unknown key; valid keys: steps"
    )
    assert err.problems[1].startswith("train.stepz")


def test_config_error_without_source_names_the_configuration():
    assert str(ConfigError(["x: bad"])).startswith("1 problem(s) in the configuration:")


def test_pipeline_error_accepts_one_message_or_many():
    assert PipelineError("boom").problems == ["boom"]
    err = PipelineError(["a", "b"], "crest")
    assert "2 problem(s) in pipeline 'crest'" in str(err)


def test_stage_error_names_stage_attempts_and_cause():
    cause = RuntimeError("disk full")
    err = StageError("g00/train", cause, 3)
    assert err.cause is cause
    assert str(err) == "stage 'g00/train' failed after 3 attempt(s): RuntimeError: disk full"


@pytest.mark.parametrize(
    "err",
    [
        ConfigError(["a: b"], "src"),
        PipelineError(["p"], "name"),
        StageError("s", ValueError("v"), 2),
        ArtifactError("model", "gone", retryable=False),
    ],
)
def test_errors_round_trip_through_pickle(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert isinstance(back, RelayError)


def test_artifact_error_keeps_retryable_flag():
    assert ArtifactError("x", "m").retryable is True
    assert pickle.loads(pickle.dumps(ArtifactError("x", "m", retryable=False))).retryable is False
