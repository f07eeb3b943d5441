"""A `data.uri` on S3 storage that refuses the credentials is called so, not unreachable, against a real moto server.

Before the fix: `relay validate` (and `relay run`, `relay resume`) of a sharded dataset on an S3-API server that
answered ACCESS_DENIED said "cannot reach this storage from here ... check the network", sending the
user after the network instead of the keys. The server here runs with IAM checks on: every request
is refused.
"""

from __future__ import annotations

import pytest

from orchestrator.cli import main
from orchestrator.cli.run.resume_checks import check_data_unchanged
from orchestrator.config import load_yaml, validate_config
from orchestrator.errors import ConfigError
from pipelines.registry import PIPELINES
from tests.integration.test_store_failures import checking_moto  # noqa: F401 (the fixture)
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE


def denied(problem: str, uri: str) -> bool:
    """Whether ``problem`` says the storage at ``uri`` refused the credentials, and nothing about the network."""
    return (
        f"data.uri: access to the store {uri} was denied (" in problem
        and "ACCESS_DENIED" in problem
        and "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in problem
        and "cannot reach" not in problem
    )


def test_validate_says_the_credentials_were_refused(checking_moto: str, cwd, capsys) -> None:  # noqa: F811
    uri = f"s3://bucket/digits?endpoint_override={checking_moto}&scheme=http"
    assert main(["validate", str(SMOKE), "data.name=parquet", f"data.uri={uri}"]) == 2
    err = capsys.readouterr().err
    assert denied(err, uri), err


def test_resume_says_the_credentials_were_refused(checking_moto: str) -> None:  # noqa: F811
    uri = f"s3://bucket/digits?endpoint_override={checking_moto}&scheme=http"
    spec = PIPELINES["crest"]
    data = load_yaml(str(SMOKE))
    config = validate_config(spec.config_model, {**data, "data": {**data["data"], "name": "parquet", "uri": uri}})
    with pytest.raises(ConfigError) as raised:
        check_data_unchanged(spec, config, "r1", "config.yaml")
    (problem,) = raised.value.problems
    assert denied(problem, uri), problem
