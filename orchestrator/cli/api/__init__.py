"""Relay from Python: run, resume and read pipeline runs from a notebook or a script (docs/API.md).

Users import it as ``import relay`` (relay/__init__.py re-exports ``__all__``, listed here).

Each call goes through what the `relay` command of the same name runs: `run` and `resume` call
what the commands' handlers run (``pipeline.start_run``, ``pipeline.resume_run``, which return the
run's id, store and parent MLflow run) with the arguments `relay` would have parsed, and the readers use the functions `relay generations` and `relay runs`
read with. So every check and fix of the CLI holds here too, and nothing is implemented twice.
Only the ending differs: bad input raises ``InputError`` carrying the message the CLI prints after
``relay:`` (where it exits 2), having written nothing; any other failure raises a ``RelayError``
(exit 1 there); nothing calls ``sys.exit``. A finished run comes back as a ``RunResult``.

Why in the CLI's package: it is the same composition root (the layers of docs/ARCHITECTURE.md let
only ``orchestrator.cli`` wire pipelines to the engine and to tracking).

The calls live in this package's modules: ``running`` (run, resume), ``reading`` (generations, runs,
artifact, pseudo_labels), ``models`` (model, predict, input_shape), and ``calls``, what every call does
at its edge (its arguments checked, MLflow's loggers quieted, the caller's environment given back).
"""

from orchestrator.cli.api.models import input_shape, model, predict
from orchestrator.cli.api.reading import artifact, generations, pseudo_labels, runs
from orchestrator.cli.api.running import RunResult, resume, run
from orchestrator.errors import InputError, RelayError

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
