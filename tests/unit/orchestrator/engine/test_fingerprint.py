"""Fingerprints: stable under reordering, sensitive to everything that determines a stage's outputs."""

import pytest

from orchestrator.dag import Stage
from orchestrator.engine.fingerprint import fingerprint
from tests.unit.orchestrator.engine.toy import evaluate, toy, train


def test_fingerprint_is_stable_and_sensitive():
    stage = toy().stage("g00/train")
    base = fingerprint(stage, {"data": "d1"}, "v1", seed=0)
    reordered = Stage("g00/train", train, ("data",), ("model",), params=dict(reversed(list({"lr": 0.5}.items()))))
    assert fingerprint(stage, {"data": "d1"}, "v1", seed=0) == base
    assert fingerprint(reordered, {"data": "d1"}, "v1", seed=0) == base  # resources/generation do not matter
    changed = [
        fingerprint(toy(lr=0.1).stage("g00/train"), {"data": "d1"}, "v1", seed=0),
        fingerprint(stage, {"data": "d2"}, "v1", seed=0),
        fingerprint(stage, {"data": "d1"}, "v2", seed=0),
        fingerprint(stage, {"data": "d1"}, "v1", seed=1),
        fingerprint(Stage("g00/train", evaluate, ("data",), ("model",), params={"lr": 0.5}), {"data": "d1"}, "v1"),
    ]
    assert len(set(changed + [base])) == len(changed) + 1
    assert len(base) == 64


def test_fingerprint_rejects_params_that_are_not_json():
    stage = Stage("s", train, (), ("m",), params={"obj": object()})
    with pytest.raises(TypeError, match="stage 's': cannot fingerprint its params"):
        fingerprint(stage, {}, "v1")
