"""A `parquet` candidate source of domain similarity is the target's own sharded dataset or bad input.

A source names no `uri`, so any other `parquet` source passed `relay validate` and the preflight and
failed when the similarity stage ran ("unknown dataset 'parquet'").
"""

from __future__ import annotations

from pipelines.builders.domain_similarity import DomainConfig
from tests.unit.pipelines.helpers import config, problems

PARQUET_SOURCE = [{"name": "own", "dataset": "parquet"}]


def test_a_parquet_source_beside_another_target_is_refused_naming_the_key_and_the_fix() -> None:
    text = problems(DomainConfig, **{"domain.sources": PARQUET_SOURCE})
    assert "domain.sources[0].dataset: 'parquet' reads only the target's own sharded dataset" in text
    assert "the target is data.name 'digits'" in text and "use data.name=parquet" in text


def test_a_parquet_source_with_a_root_is_refused_even_beside_a_sharded_target() -> None:
    sources = [{**PARQUET_SOURCE[0], "root": "/data/shards"}]
    text = problems(DomainConfig, **{"data.name": "parquet", "data.uri": "/data/shards", "domain.sources": sources})
    assert "domain.sources[0].dataset" in text and "sets a root" in text


def test_the_sharded_target_itself_stays_a_valid_source() -> None:
    checked = config(
        DomainConfig, **{"data.name": "parquet", "data.uri": "/data/shards", "domain.sources": PARQUET_SOURCE}
    )
    assert checked.domain.sources[0].dataset == "parquet"
