"""The `data/split` stage: draw the labeled / unlabeled / test split once; later stages read images by id.

The table comes from `pipelines.split.split_table`, the very function the driver's preflight
draws from, so a config that passed `relay validate` splits the same way here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator.dag import StageContext, StageResult
from pipelines.datasets.catalog import SHARDED, cached_manifest, dataset_labels
from pipelines.datasets.checks import verify_digests
from pipelines.split import split_table
from pipelines.stages.common import output_name

SUBSETS = ("labeled", "unlabeled", "test")


def _draw(data: Any) -> tuple[pa.Table, dict[str, float]]:
    """The split table of the `data` section (from the labels the preflight drew from) and its subset sizes as metrics.

    A sharded dataset's shards are hashed against its manifest here, once: the preflight checked
    only what is cheap (manifest digest, sizes, schemas, labels), and every later stage of the
    run depends on this one. The table records the dataset's digest in its schema metadata.
    """
    fields = data.model_dump()
    table = split_table(fields, dataset_labels(fields))
    if data.name == SHARDED:
        manifest = cached_manifest(data.uri)
        verify_digests(data.uri, manifest)
        table = table.replace_schema_metadata({"relay.dataset_digest": manifest.digest})
    subsets = np.asarray(table.column("subset").to_pylist())
    return table, {f"{name}_size": float(np.sum(subsets == name)) for name in SUBSETS}


def split_data(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Load the dataset and draw the split; every later stage reads images by sample id."""
    table, metrics = _draw(params["data"])
    if metrics["unlabeled_size"] == 0:
        raise ValueError("the split leaves no unlabeled images: lower data.labeled_fraction below 1")
    return StageResult(outputs={output_name(params, "split"): table}, metrics=metrics)


def split_supervised(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """The CReST split table (`split.split_table`) without demanding an unlabeled subset.

    KE and distillation train on `labeled` (all of it with data.labeled_fraction 1 and
    data.imbalance_ratio 1: a plain balanced supervised set) and report on `test`.
    """
    table, metrics = _draw(params["data"])
    return StageResult(outputs={output_name(params, "split"): table}, metrics=metrics)
