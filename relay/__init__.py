"""Relay from Python: ``import relay; result = relay.run("pipelines/configs/smoke.yaml")`` (docs/API.md).

The public names of ``orchestrator.cli.api``, re-exported and nothing else. Why a package of its own:
``import orchestrator.cli.api as relay`` named where the API lives among the CLI's modules (it is
the same composition root as the commands), which users should not have to know; the code stays there.
"""

from orchestrator.cli.api import *  # noqa: F403  (the names the API lists in its __all__, one list for both)
from orchestrator.cli.api import __all__  # noqa: F401
