"""`relay tune --address` of a sweep whose stage worker no node holds (two 1-CPU nodes, a 2-CPU worker), through
the real CLI against a real two-node Ray (``ray.cluster_utils``): refused (exit 2) with a sweep's way on, not
`relay submit ... --skip-resource-check`, which would run the base config once."""

import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.cli import main
from tests.unit.orchestrator.tune.test_per_node_concurrency import SMOKE

pytestmark = pytest.mark.integration


@pytest.fixture
def two_one_cpu_nodes(monkeypatch: pytest.MonkeyPatch):
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert not ray.is_initialized(), "a Ray instance from another test is still up in this process"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_tune_and_run_each_get_their_own_way_on(two_one_cpu_nodes, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = [str(SMOKE), "resources.train.num_cpus=2", "--address", two_one_cpu_nodes.address]
    assert main(["tune", *overrides]) == 2
    err = capsys.readouterr().err
    assert "no node of the cluster has that much (the largest has 1 CPU)" in err
    assert "start a node that large first" in err and "then run `relay tune` again" in err
    assert "--skip-resource-check" not in err
    assert main(["run", *overrides]) == 2
    assert "relay submit CONFIG --address http://HOST:8265 --skip-resource-check" in capsys.readouterr().err
