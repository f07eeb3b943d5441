"""Checks that hold for the whole test session."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

# Tests send SIGINT to the processes they start, as a terminal's Ctrl-C does. A session started in the
# background without job control (`nohup make test &`, some CI runners) ignores SIGINT, every process it
# starts inherits that, and the tests then hang until their timeout. A Python handler here is reset to
# the default in every program the tests start (exec resets handled signals), so Ctrl-C reaches them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

CLUSTER_TIER = "tests/cluster/"  # its modules share one stack (tests/cluster/conftest.py), so one process runs them all


class ClusterTierTogether(LoadScopeScheduling):
    """pytest-xdist's ``--dist loadscope`` (a process takes whole modules), with the cluster tier one unit.

    Why: the tier's stack (S3, an MLflow server, a three-node Ray cluster) is package-scoped, and
    pytest tears a package fixture down as soon as a process moves on to a test outside the package.
    Handed out module by module, the tier's seven modules went to both processes between integration
    modules, and the stack was started and stopped eight times in a CI run (about 40 s of start-up
    each on 2 cores); as one unit it starts once.
    """

    def _split_scope(self, nodeid: str) -> str:
        return CLUSTER_TIER if nodeid.startswith(CLUSTER_TIER) else super()._split_scope(nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadScopeScheduling | None:
    """``ClusterTierTogether`` for ``--dist loadscope`` (what `make test` asks for); xdist's own otherwise."""
    return ClusterTierTogether(config, log) if config.getoption("dist") == "loadscope" else None


STRAY = ("mlruns", "mlartifacts", "mlflow.db", "relay-workspace")  # what a run writes when it picks the cwd


@pytest.fixture(scope="session", autouse=True)
def nothing_lands_in_the_working_directory() -> Iterator[None]:
    """No test leaves MLflow or Relay output in the folder pytest ran from (a test that forgot its tmp_path).

    Why: MLflow puts a new experiment's artifacts in ./mlruns when nobody names a location, and
    the repository is where `make test` runs.
    """
    cwd = Path(os.getcwd())
    before = {name for name in STRAY if (cwd / name).exists()}
    yield
    after = {name for name in STRAY if (cwd / name).exists()}
    assert not after - before, f"tests wrote {sorted(after - before)} into {cwd}"


@pytest.fixture(autouse=True)
def ray_auth_mode_kept() -> Iterator[None]:
    """RAY_AUTH_MODE as it was before each test.

    Why: Relay switches its own process to token mode when it finds a Ray token
    (``orchestrator.jobs.auth.find_auth_token``), as a CLI process should; a test that calls it
    in-process with a token in its environment left the whole test session in token mode, and
    later tests joining token-less clusters failed.
    """
    before = os.environ.get("RAY_AUTH_MODE")
    yield
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture(autouse=True)
def moto_starts_empty() -> None:
    """Each test finds moto's in-process S3 empty: no bucket or object an earlier test left.

    Why: moto's in-process servers (``moto.server.ThreadedMotoServer``) all serve one backend per
    Python process, whatever their port, so a test saw the buckets and objects of the tests before it
    on the same pytest-xdist worker: a ``run-1`` ledger another test left under ``bucket/relay`` made
    tests/integration/test_store_failures.py's run count its stage's attempt as the second. This
    calls what ``POST /moto-api/reset`` calls, before each test's own fixtures start a server or make
    a bucket (autouse fixtures are set up first within a scope); a test runs alone in its process,
    so no other test is using a server then. A module- or session-scoped fixture may start a server
    (tests/unit/orchestrator/cli/conftest.py does) but must not put buckets in it: its tests would
    see them only until the next one starts. Moto servers in processes of their own (the cluster
    tier's, tests/integration/test_store_stalls.py's) are not touched.
    """
    if "moto" in sys.modules:  # a test module imported it; the others do not pay for the import
        from moto.moto_api._internal import moto_api_backend

        moto_api_backend.reset()
