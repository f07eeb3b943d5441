"""The image shape a run's models take (what orchestrator.cli.api.predict checks images against).

A network with a global pool runs at any size and answers wrongly at the wrong one, so the shape
must come from the run's data section: data.image_size, the dataset's own size, or a sharded
dataset's manifest (written here for real, then read back).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.datasets import shards
from pipelines.registry import trained_input_shape
from pipelines.schema import DataSection


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "digits"}, (1, 16, 16)),
        ({"name": "digits", "image_size": 8}, (1, 8, 8)),
        ({"name": "cifar10", "root": "/data/cifar"}, (3, 32, 32)),
        ({"name": "cifar10", "root": "/data/cifar", "image_size": 24}, (3, 24, 24)),
    ],
)
def test_a_dataset_in_memory_is_read_at_data_image_size_else_its_own_size(data, expected) -> None:
    assert trained_input_shape(DataSection.model_validate(data)) == expected


def test_a_sharded_dataset_keeps_the_size_it_was_imported_at(tmp_path: Path) -> None:
    uri = str(tmp_path / "shards")
    images = np.zeros((4, 3, 12, 12), dtype=np.uint8)
    shards.write_dataset(uri, ["a", "b"], (3, 12, 12), "raw", {"train": [(images, np.array([0, 1, 0, 1]))]})
    assert trained_input_shape(DataSection.model_validate({"name": "parquet", "uri": uri})) == (3, 12, 12)
