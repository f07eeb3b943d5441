"""`relay data import/info` and `data.name=parquet` through the real CLI: bad input exits 2 and names the problem."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from PIL import Image

from orchestrator.cli import main
from pipelines.datasets import shards
from tests.unit.orchestrator.cli import blocking_import
from tests.unit.pipelines.datasets.toy import rewrite_shard
from tests.unit.unprivileged import relay_with_mode

ROOT = Path(__file__).resolve().parents[4]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("data") / "digits"
    assert main(["data", "import", "digits", str(dest)]) == 0
    return dest


def _copy(digits: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    for path in digits.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(digits)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(digits)).write_bytes(path.read_bytes())
    return copy


def _validate(tmp_path: Path, *overrides: str) -> int:
    return main(["validate", str(SMOKE), f"run.workspace={tmp_path / 'ws'}", "data.name=parquet", *overrides])


def test_import_then_info_then_validate(digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["data", "info", str(digits), "--verify"]) == 0
    out = capsys.readouterr().out
    assert shards.read_manifest(str(digits)).digest in out and "every image decodes" in out
    assert _validate(tmp_path, f"data.uri={digits}") == 0


def test_a_uri_with_no_shards_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert _validate(tmp_path, f"data.uri={tmp_path / 'empty'}") == 2
    assert "data.uri:" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "empty")]) == 2
    assert "no shards here" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()


def test_info_of_a_path_that_does_not_exist_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """It said `no shards here (no dataset.json); create the dataset with ...` of a mistyped path."""
    missing = tmp_path / "typo"
    assert main(["data", "info", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing} does not exist (no such path): check the path" in err and "no shards here" not in err, err
    assert not missing.exists()


def test_a_file_given_as_the_dataset_says_a_folder_is_expected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    afile = tmp_path / "weights.pt"
    afile.write_bytes(b"not a dataset")
    assert main(["data", "info", str(afile)]) == 2
    assert (
        f"{afile} is a file, not a dataset folder; pass the folder `relay data import` wrote" in capsys.readouterr().err
    )
    assert _validate(tmp_path, f"data.uri={afile}") == 2
    assert f"data.uri: {afile} is a file, not a dataset folder" in capsys.readouterr().err


def test_an_edited_manifest_exits_2(digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = _copy(digits, tmp_path)
    manifest = json.loads((copy / shards.MANIFEST).read_text())
    manifest["splits"]["train"]["count"] = 1000
    (copy / shards.MANIFEST).write_text(json.dumps(manifest))
    assert _validate(tmp_path, f"data.uri={copy}") == 2
    assert "does not match its content" in capsys.readouterr().err


def test_a_shard_with_a_wrong_schema_exits_2(digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = _copy(digits, tmp_path)
    table = pq.read_table(copy / "train" / "part-00000.parquet").drop_columns(["label"])
    rewrite_shard(copy, shards.read_manifest(str(copy)), 0, table)
    assert _validate(tmp_path, f"data.uri={copy}") == 2
    assert "train/part-00000.parquet: wrong schema" in capsys.readouterr().err


def test_labels_out_of_range_exit_2_naming_the_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels = np.arange(1797) % 10
    images = np.zeros((1797, 1, 4, 4), dtype=np.uint8)
    manifest = shards.write_dataset(
        str(tmp_path / "d"), [str(c) for c in range(10)], (1, 4, 4), "raw", {"train": [(images, labels)]}
    )
    table = pq.read_table(tmp_path / "d" / manifest.splits["train"].shards[0].path)
    labels[17] = 12  # the writer refuses it: written by pyarrow, for the preflight's check
    rewrite_shard(tmp_path / "d", manifest, 0, table.set_column(1, table.schema.field(1), pa.array(labels, pa.int32())))
    assert _validate(tmp_path, f"data.uri={tmp_path / 'd'}") == 2
    assert "part-00000.parquet row 17: label 12 is outside 0..9" in capsys.readouterr().err


def test_a_pinned_digest_must_match(digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = "0123abcd" * 2 if not shards.read_manifest(str(digits)).digest.startswith("0123") else "4567abcd" * 2
    assert _validate(tmp_path, f"data.uri={digits}", f"data.digest={other}") == 2
    assert f"data.digest pins {other}" in capsys.readouterr().err
    assert _validate(tmp_path, f"data.uri={digits}", "data.digest=0123abcd") == 2
    err = capsys.readouterr().err
    assert "  - data.digest: '0123abcd' is too short" in err and "data.uri: data.digest" not in err  # blames the pin


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["data.name=parquet"], "set data.uri"), (["data.uri=/somewhere"], "belong to dataset 'parquet'")],
)
def test_uri_and_name_go_together(tmp_path: Path, capsys, overrides: list[str], message: str) -> None:
    assert main(["validate", str(SMOKE), *overrides]) == 2
    assert message in capsys.readouterr().err


def test_import_bad_input_exits_2(digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "import", "not-a-source", str(tmp_path / "d")]) == 2
    assert "valid sources: digits" in capsys.readouterr().err
    assert main(["data", "import", "synthetic", str(digits)]) == 2
    assert "already holds a different dataset" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("dest", ["afile", "afile/sub", "file://{tmp}/afile/sub"])
def test_a_destination_that_cannot_be_a_folder_is_refused_before_the_source_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture, dest: str
) -> None:
    (tmp_path / "afile").write_text("not a folder")
    dest = dest.format(tmp=tmp_path) if dest.startswith("file://") else str(tmp_path / dest)
    assert main(["data", "import", "digits", dest]) == 2
    err = capsys.readouterr().err
    assert "DEST:" in err and "is a file" in err and "Errno" not in err
    assert "import train" not in err, "the source was read before the destination was checked"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_unparseable_uri_is_named_as_such(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", "nosuch://bucket/x"]) == 2
    assert "not a filesystem URI pyarrow can open" in capsys.readouterr().err


def test_storage_that_does_not_answer_is_called_unreachable(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # bound, then released: nothing listens there
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["data", "info", "s3://relay-test/x"]) == 2  # about 6 s: pyarrow's S3 client retries
    err = capsys.readouterr().err
    assert "cannot reach this storage from here" in err and "AWS_ENDPOINT_URL" in err, err
    assert "not a filesystem URI" not in err and "could not read the manifest" not in err


@pytest.mark.skipif(
    any(os.environ.get(name) for name in ("HADOOP_HOME", "ARROW_LIBHDFS_DIR")), reason="libhdfs may load here"
)
def test_hdfs_without_java_says_so_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", "hdfs://namenode:8020/x"]) == 2
    err = capsys.readouterr().err
    assert "Java" in err and "JAVA_HOME" in err
    assert "dlopen" not in err and len(err.strip().splitlines()) == 2, err


def test_a_pin_of_the_printed_16_characters_matches(digits: Path, tmp_path: Path) -> None:
    assert (
        _validate(tmp_path, f"data.uri={digits}", f"data.digest={shards.read_manifest(str(digits)).digest[:16]}") == 0
    )


def test_info_on_an_unfinished_import_says_to_re_run_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shards.write_marker(str(tmp_path / "d"))  # what an import killed before its first shard leaves
    (tmp_path / "d" / "train").mkdir(parents=True)
    assert main(["data", "info", str(tmp_path / "d")]) == 2
    assert "an unfinished import" in capsys.readouterr().err
    assert main(["data", "import", "digits", str(tmp_path / "d")]) == 0
    assert "held what an unfinished import left (0 shard file(s) and 1 folder(s)" in capsys.readouterr().out


def test_a_missing_bucket_is_named_before_the_source_is_read(
    s3: pafs.S3FileSystem, s3_endpoint: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["data", "import", "digits", f"s3://nobucket/x?endpoint_override={s3_endpoint}&scheme=http"]) == 2
    err = capsys.readouterr().err
    assert "bucket 'nobucket' does not exist; create it first" in err, err
    assert "import train" not in err, "the source was read before the bucket was checked"


def test_leftovers_on_s3_with_folder_markers_are_cleared(
    s3: pafs.S3FileSystem, s3_endpoint: str, capsys: pytest.CaptureFixture
) -> None:
    s3.create_dir("leftovers")
    s3.create_dir("leftovers/d/train")  # a folder marker object, as the import's create_dir writes
    shards.write_marker(f"s3://leftovers/d?endpoint_override={s3_endpoint}&scheme=http")
    with s3.open_output_stream("leftovers/d/train/part-00000.parquet") as stream:
        stream.write(b"cut short by SIGKILL")
    uri = f"s3://leftovers/d?endpoint_override={s3_endpoint}&scheme=http"
    assert main(["data", "import", "digits", uri]) == 0
    assert "held what an unfinished import left (1 shard file(s)" in capsys.readouterr().out
    assert main(["data", "import", "digits", uri]) == 0
    assert "nothing written" in capsys.readouterr().out


@pytest.mark.parametrize("pin", [None, "prefix"])
def test_a_loaded_config_and_its_file_carry_the_whole_digest(digits: Path, tmp_path: Path, pin: str | None) -> None:
    """`relay run` keys its cache, and `relay tune` builds its trials and best.yaml, from the pinned digest."""
    from orchestrator.cli.pipeline_files import load_pipeline_file

    digest = shards.read_manifest(str(digits)).digest
    overrides = [f"run.workspace={tmp_path / 'ws'}", "data.name=parquet", f"data.uri={digits}"]
    overrides += [f"data.digest={digest[:16]}"] if pin else []
    _, config, data = load_pipeline_file(str(SMOKE), overrides)
    assert config.data.digest == digest and data["data"]["digest"] == digest


@pytest.mark.parametrize(
    ("overrides", "flip"), [([], False), (["data.name=synthetic"], False), (["augment.weak.flip=true"], True)]
)
def test_a_loaded_config_says_whether_its_views_flip(tmp_path: Path, overrides: list[str], flip: bool) -> None:
    """A null `augment.weak.flip` is the dataset's default written in, so config.yaml and MLflow's params
    say what ran (digits: never mirrored unless asked)."""
    from orchestrator.cli.pipeline_files import load_pipeline_file

    _, config, data = load_pipeline_file(str(SMOKE), [f"run.workspace={tmp_path / 'ws'}", *overrides])
    assert config.augment.weak.flip is flip and data["augment"]["weak"]["flip"] is flip


def test_a_sharded_dataset_flips_as_its_source_does(digits: Path, tmp_path: Path) -> None:
    from orchestrator.cli.pipeline_files import load_pipeline_file

    overrides = [f"run.workspace={tmp_path / 'ws'}", "data.name=parquet", f"data.uri={digits}"]
    _, config, _ = load_pipeline_file(str(SMOKE), overrides)
    assert config.augment.weak.flip is False  # imported from digits


def _image_folder(root: Path, per_class: int = 2, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    """A real ImageFolder: root/train/<class>/<i>.png, 4x4 PNGs written by PIL."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


def test_a_destination_inside_the_source_exits_2_and_writes_nothing(tmp_path: Path, capsys) -> None:
    """Before the fix: DEST under SOURCE/train was accepted; the next import or run: `class folder .../zz_shards holds
    no image`."""
    root = _image_folder(tmp_path / "src").resolve()
    assert main(["data", "import", str(root), str(root / "train" / "zz_shards")]) == 2
    err = capsys.readouterr().err
    assert f"DEST {root}/train/zz_shards is inside SOURCE {root}" in err
    assert f"import into a DEST outside SOURCE, e.g. {root}-shards" in err
    assert not (root / "train" / "zz_shards").exists()
    assert main(["data", "import", str(root), f"{root}-shards"]) == 0


@contextmanager
def import_blocked_after_its_first_shards(source: Path, dest: Path, **streams: Any) -> Iterator[subprocess.Popen]:
    """A real `relay data import blocking DEST` in a session of its own, yielded once it has written shards and
    while it cannot finish, for the test to signal; killed if it still runs at the end.

    The ``blocking`` source (blocking_import.py) reads the image folder SOURCE, given a class folder b of one
    image here, and waits after its first chunk (256 images), which went into shards of 64 rows.
    """
    (source / "train" / "b").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(source / "train" / "b" / "0.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RELAY_"))}
    command = ["data", "import", blocking_import.NAME, str(dest), "--rows-per-group", "1"]
    child = subprocess.Popen(
        [sys.executable, "-m", blocking_import.__name__, *command],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), blocking_import.FOLDER: str(source)},
        start_new_session=True,
        **streams,
    )
    try:
        deadline = time.monotonic() + 120
        while not (dest / "train" / "part-00003.parquet").exists() and child.poll() is None:
            assert time.monotonic() < deadline, "the import wrote no shard in 120 s"
            time.sleep(0.05)
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def killed_import(tmp_path: Path) -> tuple[Path, Path]:
    """(SOURCE, DEST): a folder of 301 small images, and a real import of it SIGKILLed after its first shards (no
    cleanup could run: DEST holds the import's marker and shard files, no manifest)."""
    source = tmp_path / "src"
    rng = np.random.default_rng(0)
    (source / "train" / "a").mkdir(parents=True)
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(source / "train" / "a" / f"{i}.png")
    dest = tmp_path / "dest"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with import_blocked_after_its_first_shards(source, dest, **quiet) as child:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    return source, dest


@pytest.mark.parametrize(
    ("interrupt", "code"),
    [
        (lambda child: os.killpg(child.pid, signal.SIGINT), 130),  # a terminal's Ctrl-C, to the whole group
        (lambda child: child.send_signal(signal.SIGTERM), 143),  # `kill PID`, timeout, Slurm, Kubernetes
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_an_interrupted_import_says_it_removed_dest_and_how_to_start_again(
    tmp_path: Path, interrupt: Callable[[subprocess.Popen], None], code: int
) -> None:
    """Real SIGINT or SIGTERM to a real `relay data import`: exit 130 or 143, DEST gone, and one line saying so.

    Before the fixes: Ctrl-C printed a blank line; SIGTERM ended it at once, exit 143 with nothing said, and left
    DEST holding its in-progress marker and partial shards.
    """
    root = _image_folder(tmp_path / "src", per_class=300, classes=("a",))
    dest = tmp_path / "dest"
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with import_blocked_after_its_first_shards(root, dest, **pipes) as child:
        interrupt(child)
        out, err = child.communicate(timeout=60)
    assert child.returncode == code, err[-3000:]
    assert "Traceback" not in err and out == ""
    last = err.strip().splitlines()[-1]
    assert last.endswith(
        f"WARNING pipelines.datasets.imports: import interrupted; what it wrote was removed ({dest} does not exist); "
        f"start it again with: relay data import {blocking_import.NAME} {dest} --rows-per-group 1"
    ), err[-3000:]
    assert not dest.exists()


def test_a_uri_naming_an_image_folder_says_so_and_what_to_do(tmp_path: Path, capsys) -> None:
    """Before the fix: it advised `relay data import SOURCE <the image folder>`, which refuses a non-empty DEST."""
    root = _image_folder(tmp_path / "images")
    assert _validate(tmp_path, f"data.uri={root}") == 2
    err = capsys.readouterr().err
    assert f"data.uri: {root}: no shards here (no dataset.json), but an image folder (train/<class>/ images)" in err
    assert f"`data.name=imagefolder data.root={root}`" in err and f"`relay data import {root} NEW_DEST`" in err
    assert "relay data import SOURCE" not in err
    assert main(["data", "import", str(root), str(tmp_path / "new")]) == 0


# --- a dataset this user may not read: said so, with the fix (before: no fix, or "re-import" shards that were whole);
# real permission errors: a chmod-000 path read by a `relay` subprocess that may not override it (tests.unit.unprivileged)


def _fix(dataset: Path) -> str:
    return f"make the dataset readable by the user running Relay (e.g. `chmod -R a+rX {dataset}`)"


def _first_shard(dataset: Path) -> Path:
    return sorted((dataset / "train").glob("part-*.parquet"))[0]


@pytest.mark.parametrize(
    "closed", [lambda d: d, lambda d: d / "dataset.json", _first_shard], ids=["folder", "manifest", "shard"]
)
def test_data_info_says_who_may_not_read_and_how_to_let_them(digits: Path, closed) -> None:
    done = relay_with_mode(["data", "info", str(digits), "--verify"], closed(digits), 0)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Permission denied" in done.stderr and _fix(digits) in done.stderr, done.stderr[-3000:]
    assert "re-import" not in done.stderr


def test_a_run_on_a_dataset_it_may_not_read_exits_2_writing_nothing(digits: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", str(SMOKE), f"run.workspace={workspace}", "data.name=parquet", f"data.uri={digits}"]
    done = relay_with_mode(argv, _first_shard(digits), 0)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"data.uri: train/{_first_shard(digits).name}: could not open the shard" in done.stderr
    assert _fix(digits) in done.stderr and "re-import" not in done.stderr, done.stderr[-3000:]
    assert not workspace.exists()
