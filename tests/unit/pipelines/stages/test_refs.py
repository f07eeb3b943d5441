"""Stage bodies by reference (pipelines.stages.refs): each names a real function and stands in for it exactly."""

from __future__ import annotations

import inspect
import pickle

import pytest

from orchestrator.dag import Stage
from orchestrator.engine.fingerprint import fingerprint
from pipelines.stages import refs

REFERENCES = {name: value for name, value in vars(refs).items() if isinstance(value, refs.StageBody)}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_reference_names_a_module_level_stage_function(name: str) -> None:
    body = REFERENCES[name]
    fn = body.resolve()
    assert inspect.isfunction(fn) and fn.__name__ == name == body.__qualname__
    assert list(inspect.signature(fn).parameters) == ["ctx", "inputs", "params"]
    assert (fn.__module__, fn.__qualname__) == (body.__module__, body.__qualname__)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_a_reference_fingerprints_and_pickles_like_the_function(name: str) -> None:
    body = REFERENCES[name]
    by_reference = Stage(name="s", fn=body, inputs=(), outputs=("o",))
    direct = Stage(name="s", fn=body.resolve(), inputs=(), outputs=("o",))
    assert fingerprint(by_reference, {}, "code") == fingerprint(direct, {}, "code")
    copy = pickle.loads(pickle.dumps(body))
    assert copy == body and copy.resolve() is body.resolve()


def test_calling_a_reference_calls_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.stages import split

    monkeypatch.setattr(split, "split_data", lambda ctx, inputs, params: ("called", ctx, inputs, params))
    assert refs.split_data(1, 2, 3) == ("called", 1, 2, 3)
