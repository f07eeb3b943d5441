"""`relay data import` with a plug-in installed that brings its own import source (its own `DataSpec`).

Before the fix: Relay's own DataSpec claimed every existing folder and `relay data import` took the first claiming
spec in pipeline-name order, so a plug-in's folder source was never reached: its folder, and its source name, were
refused with Relay's sources alone in the "valid:" list. A folder both packages read was imported by whichever
came first. The plug-in is a real installed distribution (a dist-info folder with entry_points.txt on sys.path),
found through `relay.pipelines` as the product finds plug-ins; the imports are real, through the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.problems import problem_lines
from tests.unit.orchestrator.plugins import installed_plugin
from tests.unit.pipelines.datasets.test_digest_leaves_out_source_times import image_folder

PLUGIN = """
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs

from orchestrator.config import PipelineConfig
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.registry import DataSpec, PipelineSpec


class NpyConfig(PipelineConfig):
    pass


def make(ctx, inputs, params):
    return StageResult(outputs={"g00/value": None}, metrics={})


def build(config):
    return Pipeline(config.name, [Stage(name="g00/make", fn=make, inputs=(), outputs=("g00/value",), generation=0)])


def _arrays(source):
    # images.npy under a folder or URI (file://, s3://...?endpoint_override=...): (filesystem, its path)
    if "://" not in source:
        return pafs.LocalFileSystem(), str(Path(source).expanduser() / "images.npy")
    fs, root = pafs.FileSystem.from_uri(source)
    return fs, root.rstrip("/") + "/images.npy"


def claims(source):
    fs, path = _arrays(source)
    return fs.get_file_info(path).type == pafs.FileType.File


def _load(source):
    fs, path = _arrays(source)
    with fs.open_input_stream(path) as stream:
        return np.load(io.BytesIO(stream.read()))


def import_dataset(source, dest, options):
    images = np.zeros((3, 1, 2, 2), np.uint8) if source == "npydata" else _load(source)
    Path(dest).mkdir(parents=True, exist_ok=True)
    (Path(dest) / "npy.json").write_text(json.dumps({"source": source, "count": len(images)}))
    return {"dataset": dest, "images": len(images)}


def describe(uri, verify):
    return json.loads((Path(uri) / "npy.json").read_text())


DATA = DataSpec(
    sources={"npydata": "a folder holding images.npy (the name alone: 3 blank images)"},
    claims=claims,
    import_dataset=import_dataset,
    describe=describe,
)
SPEC = PipelineSpec(name="npypipe", config_model=NpyConfig, build=build, data=DATA)
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution `relay-npy` whose pipeline `npypipe` carries a DataSpec with the source `npydata`."""
    with installed_plugin(tmp_path / "site", "relay_npy", PLUGIN, {"npypipe": "SPEC"}):
        yield tmp_path


def _npy_folder(folder: Path, count: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.arange(count * 4, dtype=np.uint8).reshape(count, 1, 2, 2))
    return folder


def _imported_by_plugin(dest: Path) -> dict:
    return json.loads((dest / "npy.json").read_text())


def test_a_folder_only_the_plugin_reads_is_imported_by_the_plugin(plugin: Path, capsys) -> None:
    """QA's repro: the folder was refused with Relay's sources, exit 2, and the plug-in's import never ran."""
    source, dest = _npy_folder(plugin / "arrays"), plugin / "out"
    assert main(["data", "import", str(source), str(dest)]) == 0, capsys.readouterr().err
    assert _imported_by_plugin(dest) == {"source": str(source), "count": 5}


def test_the_plugins_source_name_is_imported_by_the_plugin(plugin: Path, capsys) -> None:
    dest = plugin / "out"
    assert main(["data", "import", "npydata", str(dest)]) == 0, capsys.readouterr().err
    assert _imported_by_plugin(dest) == {"source": "npydata", "count": 3}


def test_a_folder_no_package_reads_lists_every_installed_packages_sources(plugin: Path, capsys) -> None:
    (notes := plugin / "notes").mkdir()
    (notes / "readme.txt").write_text("no data here")
    dest = plugin / "out"
    assert main(["data", "import", str(notes), str(dest)]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(f"SOURCE {str(notes)!r} is neither a source name nor a folder one recognises; valid: ")
    for name in ("digits", "synthetic", "cifar10", "cifar100", "imagefolder"):
        assert f"{name} (" in problem
    assert "npydata (a folder holding images.npy (the name alone: 3 blank images))" in problem
    assert not dest.exists()


def test_a_folder_two_packages_read_is_refused_naming_both(plugin: Path, capsys) -> None:
    """An image folder that also holds images.npy: which package imported it hung on its pipelines' names."""
    source = _npy_folder(image_folder(plugin / "both"))
    dest = plugin / "out"
    assert main(["data", "import", str(source), str(dest)]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(f"SOURCE {str(source)!r} is read by more than one installed package (the one with ")
    assert "sources digits, synthetic, cifar10, cifar100, imagefolder, of pipeline(s) " in problem
    assert "the one with sources npydata, of pipeline(s) npypipe)" in problem
    assert "Pass a folder holding only the files of the source you mean" in problem
    assert not dest.exists()


def test_relays_own_folders_still_go_to_relay_with_the_plugin_installed(plugin: Path, capsys) -> None:
    dest = plugin / "out"
    assert main(["data", "import", str(image_folder(plugin / "pets")), str(dest)]) == 0, capsys.readouterr().err
    assert (dest / "dataset.json").is_file() and not (dest / "npy.json").exists()
    (empty := plugin / "empty").mkdir()
    assert main(["data", "import", str(empty), str(plugin / "out2")]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(f"SOURCE {str(empty)!r} is an empty folder: nothing to import.")


# --- Relay's claim narrowed to what it reads (a reviewer's repro: a plug-in folder with train/, a URI) -----------


def test_a_plugin_folder_with_a_train_subfolder_is_imported_by_the_plugin(plugin: Path, capsys) -> None:
    """Relay's own claimed every folder with a train/, images or not, so this one was refused as read by two
    packages, advising to uninstall the other one: Relay itself."""
    source = _npy_folder(plugin / "arrays")
    _npy_folder(source / "train" / "c0")  # train/<class>/ of arrays, no image
    np.save(source / "train" / "more.npy", np.zeros((5, 1, 2, 2), np.uint8))
    dest = plugin / "out"
    assert main(["data", "import", str(source), str(dest)]) == 0, capsys.readouterr().err
    assert _imported_by_plugin(dest) == {"source": str(source), "count": 5}


def test_a_file_uri_relay_holds_no_dataset_at_is_imported_by_the_plugin(plugin: Path, capsys) -> None:
    """Relay's own claimed every URI: a file:// URI to the plug-in's arrays was refused as read by two packages."""
    source = f"file://{_npy_folder(plugin / 'arrays')}"
    dest = plugin / "out"
    assert main(["data", "import", source, str(dest)]) == 0, capsys.readouterr().err
    assert _imported_by_plugin(dest) == {"source": source, "count": 5}


def test_an_s3_uri_the_plugin_reads_is_imported_by_the_plugin_and_relays_dataset_there_by_relay(
    plugin: Path, s3: pafs.S3FileSystem, s3_endpoint: str, capsys
) -> None:
    """moto's S3 server: the plug-in's arrays at s3://npy/arrays were refused as read by two packages; a Relay
    dataset in the same bucket, which the plug-in does not claim, is still copied by Relay."""
    s3.create_dir("npy")
    with s3.open_output_stream("npy/arrays/images.npy") as stream:
        np.save(stream, np.zeros((4, 1, 2, 2), np.uint8))
    query = f"?endpoint_override={s3_endpoint}&scheme=http"
    dest = plugin / "out"
    assert main(["data", "import", f"s3://npy/arrays{query}", str(dest)]) == 0, capsys.readouterr().err
    assert _imported_by_plugin(dest) == {"source": f"s3://npy/arrays{query}", "count": 4}

    assert main(["data", "import", "digits", f"s3://npy/digits{query}"]) == 0, capsys.readouterr().err
    back = plugin / "back"
    assert main(["data", "import", f"s3://npy/digits{query}", str(back)]) == 0, capsys.readouterr().err
    assert (back / "dataset.json").is_file() and not (back / "npy.json").exists()


def test_relays_image_folder_goes_to_relay_however_its_images_lie(plugin: Path, capsys) -> None:
    """The claim's look for an image under train/<class>/: one nested class folder deep (train/cat/2019/x.png),
    in a class folder after an empty hidden one, is Relay's image folder; the plug-in does not read it."""
    source = image_folder(plugin / "pets")
    (source / "train" / ".cache").mkdir()
    for image in sorted((source / "train").glob("*/*.png")):
        nested = image.parent / "2019"
        nested.mkdir(exist_ok=True)
        image.rename(nested / image.name)
    dest = plugin / "out"
    assert main(["data", "import", str(source), str(dest)]) == 0, capsys.readouterr().err
    assert (dest / "dataset.json").is_file() and not (dest / "npy.json").exists()


def test_a_folder_relay_and_the_plugin_read_is_refused_without_advising_to_uninstall_relay(
    plugin: Path, capsys
) -> None:
    """The refusal ended "or uninstall the other package", the other one being Relay itself."""
    source = _npy_folder(image_folder(plugin / "both"))
    assert main(["data", "import", str(source), str(plugin / "out")]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert "uninstall" not in problem
    assert "The one with sources digits, synthetic, cifar10, cifar100, imagefolder is Relay itself (keep it " in problem
    assert "for the plug-in (the one with sources npydata), one without what Relay reads there" in problem
    assert problem.endswith("for Relay, one without the plug-in's files")
    assert not (plugin / "out").exists()


def test_a_plugin_folder_is_claimed_without_importing_torchvision(plugin: Path) -> None:
    """Relay's claim looked for images with torchvision's suffixes, importing torchvision (and torch) on every
    import of a plug-in's folder; a fresh interpreter says whether the claim imported it."""
    source = _npy_folder(plugin / "arrays")
    _npy_folder(source / "parts" / "p0")  # a subfolder: Relay's claim looks in it for class folders of images
    probe = (
        "import sys; from pipelines.datasets import imports; "
        f"print(imports.claims({str(source)!r}), 'torchvision' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
