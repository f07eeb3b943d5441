"""Pipeline graph: edges from names, every structural problem reported, topological layers."""

import pytest

from orchestrator.dag import Pipeline, Resources, Stage, StageContext, StageResult
from orchestrator.errors import PipelineError


def noop(ctx, inputs, params):
    return StageResult(outputs={})


def stage(name, inputs=(), outputs=(), **kw):
    return Stage(name=name, fn=noop, inputs=tuple(inputs), outputs=tuple(outputs), **kw)


def diamond():
    return Pipeline(
        "diamond",
        [
            stage("split", outputs=["data"]),
            stage("left", ["data"], ["l"]),
            stage("right", ["data"], ["r"]),
            stage("join", ["l", "r"], ["model"]),
        ],
    )


def test_layers_are_topological_and_in_declaration_order():
    layers = [[s.name for s in layer] for layer in diamond().layers()]
    assert layers == [["split"], ["left", "right"], ["join"]]


def test_declaration_order_does_not_need_to_be_topological():
    p = Pipeline("rev", [stage("b", ["x"], ["y"]), stage("a", outputs=["x"])])
    assert [[s.name for s in layer] for layer in p.layers()] == [["a"], ["b"]]


def test_upstream_is_transitive():
    p = diamond()
    assert p.upstream("join") == {"split", "left", "right"}
    assert p.upstream("left") == {"split"}
    assert p.upstream("split") == set()


def test_downstream_is_transitive_and_names_only_dependants():
    p = diamond()
    assert p.downstream("split") == {"left", "right", "join"}
    assert p.downstream("left") == {"join"}
    assert p.downstream("join") == set()
    with pytest.raises(PipelineError, match="no stage named 'nope'"):
        p.downstream("nope")


def test_producer_and_stage_lookup():
    p = diamond()
    assert p.producer("l").name == "left"
    assert p.stage("join").inputs == ("l", "r")
    with pytest.raises(PipelineError, match="no stage produces 'nope'"):
        p.producer("nope")
    with pytest.raises(PipelineError, match="no stage named 'nope'; valid stages: split, left, right, join"):
        p.stage("nope")


def test_every_structural_problem_is_reported_at_once():
    with pytest.raises(PipelineError) as info:
        Pipeline(
            "bad",
            [
                stage("a", outputs=["x"]),
                stage("a", outputs=["y"]),
                stage("b", ["ghost"], ["x"]),
            ],
        )
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert "stage name 'a' is used 2 times" in problems[0]
    assert "output 'x' is produced by 2 stages (a, b)" in problems[1]
    assert "stage 'b' reads 'ghost', which no stage produces" in problems[2]
    assert info.value.name == "bad"


def test_names_stored_under_one_file_name_are_refused():
    """Outputs ``x/y`` and ``x_y`` were both written to x_y.parquet: a reader of one got the other's table."""
    with pytest.raises(PipelineError) as info:
        Pipeline("clash", [stage("g00/train", outputs=["x/y", "x_y"]), stage("g00_train", outputs=["z"])])
    assert info.value.problems == [
        "stage names 'g00/train' and 'g00_train' are stored under one file name; rename one",
        "stage 'g00/train': outputs 'x/y' and 'x_y' are stored under one file name; rename one",
    ]


def test_cycle_names_its_members():
    with pytest.raises(PipelineError) as info:
        Pipeline(
            "loop",
            [
                stage("start", outputs=["s"]),
                stage("a", ["s", "c"], ["a"]),
                stage("b", ["a"], ["b"]),
                stage("c", ["b"], ["c"]),
            ],
        )
    (problem,) = info.value.problems
    assert problem.startswith("dependency cycle: ")
    assert set(problem.split(": ")[1].split(";")[0].split(" -> ")) == {"a", "b", "c"}


def test_self_loop_is_a_cycle():
    with pytest.raises(PipelineError, match="dependency cycle: a -> a"):
        Pipeline("self", [stage("a", ["x"], ["x"])])


def test_non_module_level_functions_are_rejected():
    with pytest.raises(PipelineError, match="not a module-level function"):
        Pipeline("lambda", [Stage("a", lambda c, i, p: None, (), ("x",))])


def test_resources_validate_on_construction():
    assert Resources(num_cpus=2, num_gpus=0.5).workers == 1
    with pytest.raises(ValueError, match="workers >= 1"):
        Resources(workers=0)


def test_context_report_records_float_series():
    ctx = StageContext(run_id="r", stage="s", generation=0, seed=1, device="cpu", attempt=1)
    ctx.report(10, {"loss": 1})
    ctx.report(20, {"loss": 0.5})
    assert ctx.series == [(10, {"loss": 1.0}), (20, {"loss": 0.5})]
    assert isinstance(ctx.series[0][1]["loss"], float)
