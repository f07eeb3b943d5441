"""Relay from Python: ``import relay; result = relay.run("pipelines/configs/smoke.yaml")`` (docs/API.md).

The public names of ``orchestrator.cli.api``, re-exported and nothing else. Why a package of its own:
``import orchestrator.cli.api as relay`` named where the API lives among the CLI's modules (it is
the same composition root as the commands), which users should not have to know; the code stays there.
"""

from orchestrator.cli.api import (
    InputError,
    RelayError,
    RunResult,
    artifact,
    generations,
    input_shape,
    model,
    predict,
    pseudo_labels,
    resume,
    run,
    runs,
)

__all__ = [
    "InputError",
    "RelayError",
    "RunResult",
    "artifact",
    "generations",
    "input_shape",
    "model",
    "predict",
    "pseudo_labels",
    "resume",
    "run",
    "runs",
]
