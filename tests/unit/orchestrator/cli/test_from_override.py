"""Which command-line override a problem is pinned on: the one that set its key, or those its section's problem names."""

from __future__ import annotations

from orchestrator.cli.pipeline_files import from_override


def test_a_keys_problem_names_the_last_override_of_that_key() -> None:
    problem = "train.steps: must be > 0"
    assert from_override(problem, ["train.steps=5", "train.steps=0", "seed=1"]).endswith(
        "(set on the command line: train.steps=0)"
    )
    assert from_override(problem, ["train={steps: 0}"]).endswith("(set on the command line: train={steps: 0})")
    assert from_override(problem, ["seed=1"]) == problem


def test_a_sections_problem_names_the_overrides_it_is_about_not_the_last_in_the_section() -> None:
    """`resources.filter.num_cpus=1 resources.train.num_cpus=1` on KE named the valid train override."""
    problem = "resources: this pipeline has no filter stage, so resources.filter would be ignored"
    named = from_override(problem, ["resources.filter.num_cpus=1", "resources.train.num_cpus=1"])
    assert named.endswith("(set on the command line: resources.filter.num_cpus=1)")


def test_a_sections_problem_that_names_no_override_lists_every_one_inside_the_section() -> None:
    problem = "data: 2 labeled images per class are too few for the split"
    listed = from_override(problem, ["data.head_count=5", "seed=3", "data.labeled_fraction=0.01"])
    assert listed.endswith("(set on the command line: data.head_count=5, data.labeled_fraction=0.01)")
