"""`relay` with one more import source, ``blocking``: an image folder's first chunk, then a wait that never ends.

What the tests of an interrupted import run in a process of its own (``python -m`` this module, then `relay`'s
arguments), to signal or kill an import that has written shards and cannot finish. The source is registered as
a plug-in's would be (``imports.SOURCES`` and the DataSpec's ``sources``), and everything after it is the real
CLI, writer and cleanup. Why not a FIFO among the images, which blocked the import where it opened it: the
listing refuses a file that is no regular file, since a FIFO there hung imports and runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.datasets import imports
from pipelines.registry import DATA

NAME = "blocking"
FOLDER = "BLOCKING_SOURCE_FOLDER"  # the environment variable naming the image folder it reads


def blocking(folder: Path | None, options: Mapping[str, Any]) -> imports.SourceData:
    """The image folder at $BLOCKING_SOURCE_FOLDER as Relay's imagefolder source reads it, up to its first chunk
    (``imports.IMAGEFOLDER_CHUNK`` images); then it sleeps until a signal ends the process."""
    opened = imports.SOURCES["imagefolder"].open(Path(os.environ[FOLDER]), options)
    count, chunks = opened.splits["train"]

    def first_then_wait() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield from itertools.islice(chunks(), 1)
        while True:
            time.sleep(60)

    return dataclasses.replace(opened, splits={"train": (count, first_then_wait)})


if __name__ == "__main__":
    description = "an image folder's first chunk, then a wait (tests only)"
    imports.SOURCES[NAME] = imports.Source(NAME, description, blocking)
    DATA.sources[NAME] = description

    from orchestrator.cli import main

    sys.exit(main(sys.argv[1:]))
