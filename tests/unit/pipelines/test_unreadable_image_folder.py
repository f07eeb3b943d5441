"""An image folder part of which the user may not read: `relay data import` says so and how to fix it (exit 2), where
it said a class folder "holds no image" or a file "does not decode as an image".

The permission error is real: the folder or file is chmod 000 and the import runs in a subprocess that may not
override it. A non-root user is refused by the mode alone; root is run without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH (``setpriv``), which is all that lets it read a mode-000 path it owns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.unit.unprivileged import relay_with_mode


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


def _import_refused(source: Path, dest: Path, unreadable: Path) -> str:
    """`relay data import SOURCE DEST` with ``unreadable`` chmod 000: its stderr, once it exited 2 writing nothing."""
    done = relay_with_mode(["data", "import", str(source), str(dest)], unreadable, 0)
    assert done.returncode == 2, done.stderr[-3000:]
    assert not dest.exists()
    return done.stderr


def test_an_unreadable_class_folder_is_said_to_be_unreadable(tmp_path: Path) -> None:
    """Before the fix: `class folder .../train/b holds no image (.jpg, ...); add images to it or remove the folder`."""
    source = _image_folder(tmp_path / "src")
    err = _import_refused(source, tmp_path / "dest", source / "train" / "b")
    assert (
        f"imagefolder: class folder {source}/train/b cannot be read (permission denied); make it readable by the "
        f"user running Relay (e.g. `chmod -R a+rX {source}/train/b`), or remove it"
    ) in err, err[-3000:]
    assert "holds no image" not in err


def test_an_unreadable_image_is_said_to_be_unreadable(tmp_path: Path) -> None:
    """Before the fix: `.../1.png does not decode as an image ([Errno 13] Permission denied: ...); fix or remove it`."""
    source = _image_folder(tmp_path / "src")
    image = source / "train" / "c" / "1.png"
    err = _import_refused(source, tmp_path / "dest", image)
    assert (
        f"imagefolder: {image} cannot be read (permission denied); make it readable by the user running Relay "
        f"(e.g. `chmod -R a+rX {image}`), or remove it"
    ) in err, err[-3000:]
    assert "does not decode" not in err


def test_an_unreadable_train_folder_is_said_to_be_unreadable(tmp_path: Path) -> None:
    """Before the fix: a bare `[Errno 13] Permission denied: '.../train'`, naming no fix."""
    source = _image_folder(tmp_path / "src")
    err = _import_refused(source, tmp_path / "dest", source / "train")
    assert (
        f"imagefolder: {source}/train cannot be read (permission denied); make it readable by the user running "
        f"Relay (e.g. `chmod -R a+rX {source}/train`)"
    ) in err, err[-3000:]
