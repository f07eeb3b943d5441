"""`relay data import` with a plug-in installed that brings its own import source (its own `DataSpec`).

Before the fix: Relay's own DataSpec claimed every existing folder and `relay data import` took the first claiming
spec in pipeline-name order, so a plug-in's folder source was never reached: its folder, and its source name, were
refused with Relay's sources alone in the "valid:" list. A folder both packages read was imported by whichever
came first. The plug-in is a real installed distribution (a dist-info folder with entry_points.txt on sys.path),
found through `relay.pipelines` as the product finds plug-ins; the imports are real, through the real CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.problems import problem_lines
from tests.unit.orchestrator.plugins import installed_plugin
from tests.unit.pipelines.datasets.test_digest_leaves_out_source_times import image_folder

PLUGIN = """
import json
from pathlib import Path

import numpy as np

from orchestrator.config import PipelineConfig
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.registry import DataSpec, PipelineSpec


class NpyConfig(PipelineConfig):
    pass


def make(ctx, inputs, params):
    return StageResult(outputs={"g00/value": None}, metrics={})


def build(config):
    return Pipeline(config.name, [Stage(name="g00/make", fn=make, inputs=(), outputs=("g00/value",), generation=0)])


def claims(source):
    return (Path(source).expanduser() / "images.npy").is_file()


def import_dataset(source, dest, options):
    images = np.zeros((3, 1, 2, 2), np.uint8) if source == "npydata" else np.load(Path(source) / "images.npy")
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
