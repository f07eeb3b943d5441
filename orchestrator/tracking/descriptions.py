"""What a Relay run's MLflow runs say about themselves: their descriptions and their Source column.

Why apart from the tracker: these are the words a user reads first on a run's page (what the
run is, how it was started, each generation's results as a table), built from plain values, so
they can be read and tested without a tracking store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.engine.records import TrackedArtifact
from orchestrator.tracking import report, run_command

TAG_NOTE = "mlflow.note.content"  # a run's description in the MLflow UI (Markdown)
TAG_SOURCE_NAME, TAG_SOURCE_TYPE = "mlflow.source.name", "mlflow.source.type"  # the runs table's Source column


def source_tags(command: run_command.RunCommand | None) -> dict[str, str]:
    """MLflow's source tags for a run started by a command: its config file, run locally (MLflow's LOCAL).

    Why: the runs table's Source column showed "—"; MLflow itself puts the main script there
    (``mlflow.tracking.context.default_context``), and for Relay that is the config file. A Tune
    trial has no command of its own: no source tags.
    """
    if command is None:
        return {}
    return {TAG_SOURCE_NAME: command.config_path, TAG_SOURCE_TYPE: "LOCAL"}


def command_line(command: run_command.RunCommand) -> str:
    """``relay run CONFIG OVERRIDES``: how the run was started, for its description."""
    overrides = run_command.overrides_tag(command.overrides, "")
    return " ".join(part for part in ("relay run", command.config_path, overrides) if part)


def generation_note(run_id: str, generation: int, models: Sequence[TrackedArtifact], teachers: Sequence[str]) -> str:
    """A generation run's description: what its model is, a teacher's student or not, in one line."""
    names = ", ".join(f"`{model.name}`" for model in models)
    if teachers:
        what = f"its model {names} is a student of {', '.join(f'`{t}`' for t in teachers)}"
    else:
        what = f"its model {names} was trained without a teacher model"
    return f"Generation {generation} of Relay run `{run_id}`: {what}."


def started_with(command: run_command.RunCommand | None) -> str:
    """``, started with `relay run CONFIG overrides` `` for the description, "" when the command is not known.

    Kept in the closing description too: the note that replaced the opening one at the run's end dropped it.
    """
    return f", started with `{command_line(command)}`" if command is not None else ""


def closing_note(heading: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The pipeline run's description at its end: ``heading``, then every per-generation metric as Markdown."""
    columns = [key for key in sorted({k for row in rows for k in row}) if in_note(key)]
    if not columns:  # no row, or training's numbers alone: no generation has a result
        return f"{heading}\n\nNo generation has finished yet: no per-generation results."
    counts = {key: report.is_counts_column(rows, key) for key in columns}  # as the terminal's table reads them
    lines = [
        "| generation | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
        *(
            f"| {row['generation']} | " + " | ".join(report.table_cell(row, key, counts[key]) for key in columns) + " |"
            for row in rows
        ),
    ]
    everything = "every metric of every generation: generations.csv among this run's artifacts"
    return f"{heading}\n\nPer generation ({everything}):\n\n" + "\n".join(lines)


def in_note(key: str) -> bool:
    """Whether a per-generation metric is a column of the description's table: a result, not bookkeeping.

    Per-class values (``evaluate/recall/3``), training's own numbers (``train/loss``: curves on the stage
    run) and resume counters leave about 60 columns of a CReST run at 10; generations.csv keeps them all.
    """
    last = key.rsplit("/", 1)[-1]
    return key != "generation" and not last.isdigit() and not key.startswith("train/") and "resumed_from" not in last
