"""Cluster addresses, tracking stores, reused run ids, resources and bounds: exit 2, one message, nothing written.

Each of these used to get past the checks: some wrote the run record and the tracking database and
then failed with exit 1 (a malformed address, an unknown tracking scheme), some waited forever (a
stage asking for a GPU the local Ray instance does not have), one overwrote an earlier run's record
(`--run-id` of an existing run).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.preflight import tracking_uri_problem
from orchestrator.errors import ConfigError
from tests.integration.cluster import durable_folder
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused

LOCAL = "run.executor=local"


def free_port() -> int:
    """A port nothing listens on: bound once by the OS, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "address", ["notanaddress", "127.0.0.1:99999", "127.0.0.1:", ":6379", "host:port", "[::1", "::1]:6379"]
)
def test_a_malformed_address_is_refused_before_anything_is_written(cwd: Path, capsys, address: str) -> None:
    err = refused(["run", str(SMOKE), "--address", address], cwd, capsys)
    assert f"--address: {address!r} is not a Ray cluster address" in err and "HOST:PORT" in err


def test_an_address_where_nothing_listens_is_refused(cwd: Path, capsys) -> None:
    port = free_port()
    err = refused(["run", str(SMOKE), "--address", f"127.0.0.1:{port}"], cwd, capsys)
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in err and f"ray start --head --port {port}" in err


@pytest.mark.parametrize("command", ["run", "validate"])
def test_run_ray_address_is_checked_for_form_in_the_config(cwd: Path, capsys, command: str) -> None:
    err = refused([command, str(SMOKE), "run.ray_address=notanaddress"], cwd, capsys)
    assert "run.ray_address: 'notanaddress' is not a Ray cluster address" in err


def test_a_dashboard_url_in_ray_address_is_refused_with_the_way_out(cwd: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")
    err = refused(["run", str(SMOKE)], cwd, capsys)
    assert "$RAY_ADDRESS: http://127.0.0.1:1 is a dashboard URL" in err and "unset RAY_ADDRESS" in err


def test_tune_checks_the_address_too(cwd: Path, capsys) -> None:
    port = free_port()
    err = refused(["tune", str(SMOKE), "--address", f"127.0.0.1:{port}"], cwd, capsys)
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in err


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("nosuch://x", "MLflow has no tracking store for 'nosuch://x'"),
        ("sqlite://rel.db", "names no database file; write sqlite:///"),
    ],
)
def test_a_tracking_uri_mlflow_cannot_use_is_refused(cwd: Path, capsys, uri: str, expected: str) -> None:
    err = refused(["run", str(SMOKE), LOCAL, f"tracking.uri={uri}"], cwd, capsys)
    assert f"tracking.uri: {uri!r}" in err or "tracking.uri: MLflow" in err
    assert expected in err


def test_a_folder_as_tracking_store_is_refused_unless_mlflow_allows_it(cwd: Path, capsys, monkeypatch) -> None:
    """MLflow 3 refuses its file store only when the tracker opens it, and tracking failures are not fatal: the run
    finished with exit 0 and tracked nothing."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(cwd / "mlruns"))
    err = refused(["run", str(SMOKE), LOCAL], cwd, capsys)
    assert f"$MLFLOW_TRACKING_URI: '{cwd / 'mlruns'}' is a folder path, MLflow's file store" in err
    assert f"use sqlite:///PATH/mlflow.db, e.g. sqlite:///{cwd / 'mlruns'}/mlflow.db" in err
    err = refused(["validate", str(SMOKE), f"tracking.uri=file://{cwd}/mlruns"], cwd, capsys)
    assert "tracking.uri: " in err and "MLFLOW_ALLOW_FILE_STORE=true" in err
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the user's way to keep the file store
    assert main(["validate", str(SMOKE), f"tracking.uri=file://{cwd}/mlruns"]) == 0


def test_a_tracking_database_that_is_not_sqlite_is_refused_and_left_alone(cwd: Path, capsys) -> None:
    database = cwd / "notes.db"
    database.write_text("hello")
    err = refused(["run", str(SMOKE), LOCAL, f"tracking.uri=sqlite:///{database}"], cwd, capsys)
    assert f"{database} is not an SQLite database" in err
    assert database.read_text() == "hello"


def test_the_workspace_database_is_checked_when_no_uri_is_set(cwd: Path, capsys, monkeypatch) -> None:
    workspace = cwd / "ws"
    workspace.mkdir()
    (workspace / "mlflow.db").write_text("hello")
    monkeypatch.setenv("RELAY_WORKSPACE", str(workspace))
    err = refused(["run", str(SMOKE), LOCAL], cwd, capsys)
    assert "$RELAY_WORKSPACE" in err and "is not an SQLite database" in err


def test_stores_named_by_environment_variables_are_checked_and_named(cwd: Path, capsys, monkeypatch) -> None:
    afile = cwd / "afile"
    afile.write_text("")
    monkeypatch.setenv("RELAY_ARTIFACT_URI", str(afile))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cwd}")
    err = refused(["run", str(SMOKE), LOCAL], cwd, capsys)
    assert f"$RELAY_ARTIFACT_URI: {afile} is a file, not a folder" in err
    assert f"$MLFLOW_TRACKING_URI: {cwd} is a folder, not a database file" in err


def test_a_run_id_in_use_is_refused_and_the_run_keeps_its_record(cwd: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RELAY_WORKSPACE", str(cwd / "ws"))
    assert main(["run", str(SMOKE), LOCAL, "train.steps=3", "--run-id", "taken", "--stop-after", "data/split"]) == 0
    record = cwd / "ws" / "artifacts" / "runs" / "taken" / "config.yaml"
    saved = record.read_bytes()
    capsys.readouterr()
    err = refused(["run", str(SMOKE), LOCAL, "train.steps=5", "--run-id", "taken"], cwd, capsys)
    assert "--run-id: a run 'taken' already exists" in err and "relay resume taken" in err
    assert record.read_bytes() == saved


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["resources.train.num_gpus=64"], "g00/train, g01/train: needs 64 GPUs at once but this machine has"),
        (["run.num_cpus=1", "resources.train.num_cpus=2"], "needs 2 CPUs at once but the local Ray has 1"),
        (["resources.evaluate.custom={fast: 1}"], "g00/evaluate, g01/evaluate: asks for the custom resource(s) fast"),
    ],
)
def test_stages_a_local_ray_could_never_start_are_refused(
    cwd: Path, capsys, overrides: list[str], expected: str
) -> None:
    """A local instance never grows: before, these runs wrote their record and waited forever."""
    err = refused(["run", str(SMOKE), *overrides], cwd, capsys)
    assert expected in err


def test_address_local_starts_a_new_instance_so_it_is_sized_too(cwd: Path, capsys, monkeypatch) -> None:
    """`--address local` (or RAY_ADDRESS=local) starts a new local Ray as no address does: it was let through
    unchecked and the run waited forever for 64 GPUs."""
    err = refused(["run", str(SMOKE), "--address", "local", "resources.train.num_gpus=64"], cwd, capsys)
    assert "needs 64 GPUs at once but this machine has" in err
    monkeypatch.setenv("RAY_ADDRESS", "local")
    err = refused(["run", str(SMOKE), "resources.train.num_gpus=64"], cwd, capsys)
    assert "needs 64 GPUs at once but this machine has" in err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seed=-1", "seed: must be >= 0"),
        ("seed=99999999999999999999999", "seed: must be < 2147483648"),
        ("tune.seed=-1", "tune.seed: must be >= 0"),
        ("crest.generations=100000", "crest.generations: must be <= 1000"),
        ("data.image_size=100000", "data.image_size: must be <= 1024"),
        ("data.loader_workers=100000", "data.loader_workers: must be <= 64"),
        ("data.buffer_mb=100000000000", "data.buffer_mb: must be <= 65536"),
        ("train.batch_size=100000000", "train.batch_size: must be <= 65536"),
        ("train.unlabeled_ratio=100000000", "train.unlabeled_ratio: the unlabeled batch"),
        ("label.shard_size=100000000000", "label.shard_size: must be <= 1048576"),
        ("resources.train.custom={CPU: 1}", "resources.train.custom: CPU is one of Ray's own resources"),
        ("run.num_cpus=1000000000000000000000", "run.num_cpus: must be <= 4096"),
    ],
)
def test_values_beyond_any_real_use_are_refused_when_the_file_loads(cwd: Path, capsys, override, expected) -> None:
    overrides = [override, "tune.metric=evaluate/balanced_accuracy", "tune.space={train.lr: {choice: [0.1]}}"]
    err = refused(["validate", str(SMOKE), *(overrides if override.startswith("tune.") else [override])], cwd, capsys)
    assert expected in err


@pytest.mark.parametrize(
    ("space", "metric", "expected"),
    [
        ("{train.stepz: {choice: [1, 2]}}", "evaluate/balanced_accuracy", "train.stepz: unknown key"),
        ("{train.steps: {choice: [-1, 0]}}", "evaluate/balanced_accuracy", "train.steps: must be > 0"),
        ("{train.steps: {choice: [10]}}", "nosuchrole/acc", "no stage reports 'nosuchrole/acc'"),
    ],
)
def test_validate_checks_a_tune_section_as_relay_tune_does(cwd: Path, capsys, space, metric, expected) -> None:
    err = refused(["validate", str(SMOKE), f"tune.space={space}", f"tune.metric={metric}"], cwd, capsys)
    assert expected in err


def test_a_file_that_is_no_image_in_an_image_folder_is_named(cwd: Path, capsys) -> None:
    from PIL import Image

    root = cwd / "images"
    for name in ("cat", "dog"):
        (root / "train" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "train" / name / "ok.png")
    (root / "train" / "cat" / "broken.png").write_text("not an image")
    err = refused(["validate", str(SMOKE), "data.name=imagefolder", f"data.root={root}"], cwd, capsys)
    assert "data.root: imagefolder:" in err and "broken.png does not decode as an image" in err


@pytest.mark.parametrize("command", ["run", "validate", "tune"])
def test_a_missing_config_is_the_only_argument_named(cwd: Path, capsys, command: str) -> None:
    """The overrides are optional: naming them as required sent users looking for one."""
    with pytest.raises(SystemExit) as exit_info:
        main([command])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().endswith("the following arguments are required: config")


def test_inside_a_ray_job_the_local_check_leaves_the_jobs_cluster_alone(monkeypatch) -> None:
    """A job's driver runs on the head (maybe CPU-only) and joins the job's cluster: GPU stages run elsewhere."""
    from orchestrator.cli.pipeline_files import load_pipeline_config
    from orchestrator.cli.run.cluster_fit import check_cluster
    from orchestrator.cli.run.run_locations import RAY_JOB_ENV

    spec, config = load_pipeline_config(str(SMOKE), ["resources.train.num_gpus=64"])
    pipeline = spec.build(config)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(RAY_JOB_ENV, raising=False)
    with pytest.raises(ConfigError, match="needs 64 GPUs"):
        check_cluster(None, config.run, pipeline)
    monkeypatch.setenv(RAY_JOB_ENV, "{}")  # what Ray's job supervisor sets for the entrypoint
    check_cluster(None, config.run, pipeline)


def test_an_unknown_option_shows_the_commands_own_usage(cwd: Path, capsys) -> None:
    """`relay run CONFIG --bogus` used to print the top-level usage, which lists commands, not run's options."""
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(SMOKE), "--bogus"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "relay run: error: unrecognized arguments: --bogus" in err
    assert "--stop-after" in err  # run's usage, not the list of commands


def test_a_new_sweep_never_writes_over_files_that_are_not_a_sweeps(cwd: Path, capsys) -> None:
    """Before, `relay tune --output DIR` replaced DIR/best.yaml whatever it was."""
    output = cwd / "mine"
    output.mkdir()
    (output / "best.yaml").write_text("hi\n")
    err = refused(["tune", str(SMOKE), "--output", str(output)], cwd, capsys)
    assert f"--output: {output} already holds files that are not a sweep's (best.yaml)" in err
    assert (output / "best.yaml").read_text() == "hi\n"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["tune.grace_period=5"], "tune.grace_period: 5 generations, but each trial has 2"),
        (["tune.scheduler=pbt", "tune.perturbation_interval=2"], "tune.perturbation_interval: 2 generations"),
    ],
)
def test_scheduler_settings_past_the_last_generation_are_refused(cwd: Path, capsys, overrides, expected) -> None:
    """ASHA asserted grace_period <= max_t only once the sweep had started (a trace, a FAILED MLflow run)."""
    space = ["tune.space={train.lr: {uniform: [0.01, 0.1]}}", "tune.metric=evaluate/balanced_accuracy"]
    assert expected in refused(["validate", str(SMOKE), *space, *overrides], cwd, capsys)
    assert expected in refused(["tune", str(SMOKE), *space, *overrides], cwd, capsys)


def test_a_moved_workspace_is_read_where_it_is_and_not_resumed_into_the_old_place(
    cwd: Path, capsys, no_store_settings
) -> None:
    """The record keeps the stores' absolute paths; MLflow keeps its own in mlflow.db, so only reads follow a move."""
    old, new = cwd / "ws", cwd / "moved"
    argv = ["run", str(SMOKE), LOCAL, "train.steps=3", "--run-id", "r1", "--stop-after", "g00/train"]
    assert main([*argv, f"run.workspace={old}"]) == 0
    old.rename(new)
    capsys.readouterr()
    assert main(["generations", "r1", "--workspace", str(new)]) == 0
    read = capsys.readouterr().out  # stopped after g00/train: read back, with no generation evaluated yet
    assert "Run r1: no generation has finished yet" in read and "(the run is STOPPED)" in read
    assert main(["resume", "r1", "--workspace", str(new)]) == 2
    err = capsys.readouterr().err
    assert f"run r1 started in workspace {old}, which has moved to {new}" in err and "Move the workspace back" in err
    assert not old.exists(), "the refused resume wrote into the old place"


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime: what a refused command leaves unchanged."""
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*") if path.is_file()}


def test_a_copied_workspace_is_not_resumed_and_the_same_one_by_a_symlink_is(
    cwd: Path, capsys, no_store_settings
) -> None:
    """A copy's record points at the original: a resume there would split the run between the two."""
    old, copy, link = cwd / "ws", cwd / "copy", cwd / "link"
    argv = ["run", str(SMOKE), LOCAL, "train.steps=3", "--run-id", "r1", "--stop-after", "data/split"]
    assert main([*argv, f"run.workspace={old}"]) == 0
    shutil.copytree(old, copy)
    before = {**tree(old), **tree(copy)}
    capsys.readouterr()
    assert main(["resume", "r1", "--workspace", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"run r1 started in workspace {old}; {copy} holds a copy of its record" in err
    assert f"relay resume r1 --workspace {old}" in err
    assert {**tree(old), **tree(copy)} == before, "the refused resume wrote nothing in either place"
    link.symlink_to(old)
    assert main(["resume", "r1", "--workspace", str(link), "--stop-after", "g00/train"]) == 0


def test_generations_of_a_run_whose_record_is_elsewhere_reads_the_tracking_store(
    cwd: Path, capsys, monkeypatch, no_store_settings
) -> None:
    """A laptop that sees the tracking store but not the run's artifact store still gets the run's table."""
    ran = cwd / "cluster"
    argv = ["run", str(SMOKE), LOCAL, "train.steps=3", "--run-id", "r1", "--stop-after", "g00/evaluate"]
    assert main([*argv, f"run.workspace={ran}"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ran / 'mlflow.db'}")
    assert main(["generations", "r1", "--workspace", str(cwd / "laptop")]) == 0
    out = capsys.readouterr().out
    assert "Run r1: per-generation results" in out and "balanced_accuracy" in out and "tail" in out
    assert main(["generations", "nope", "--workspace", str(cwd / "laptop")]) == 2  # in neither store
    assert "no run 'nope' in the artifact store" in capsys.readouterr().err


def test_a_file_store_in_tmp_given_to_submit_is_not_advised_a_database_in_tmp(
    cwd: Path, capsys, monkeypatch, no_store_settings
) -> None:
    """`relay submit tracking.uri=file:///tmp/mlruns` was told to use sqlite:////tmp/mlruns/mlflow.db, a store the
    next check refuses (a job's stores must outlive it); a local run may keep its database beside the folder."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    nothing_listens = f"http://127.0.0.1:{free_port()}"  # never reached: the refusal comes first
    command = ["submit", str(SMOKE), "--address", nothing_listens, "run.workspace=/mnt/relay"]
    err = refused([*command, "tracking.uri=file:///tmp/relay-mlruns"], cwd, capsys)
    assert "tracking.uri: 'file:///tmp/relay-mlruns' is a folder path, MLflow's file store" in err, err
    assert "sqlite:////tmp/" not in err and "e.g. sqlite:////mnt/relay/mlflow.db (a folder every node" in err
    local = refused(["validate", str(SMOKE), "tracking.uri=file:///tmp/relay-mlruns"], cwd, capsys)
    assert "e.g. sqlite:////tmp/relay-mlruns/mlflow.db" in local


SHARED_ADVICE = "e.g. sqlite:////mnt/relay/mlflow.db (a folder every node"


@pytest.mark.parametrize("variable", ["TMPDIR", "RAY_TMPDIR"])
def test_a_file_store_under_the_temp_dir_a_variable_names_is_not_advised_a_database_there(
    monkeypatch, variable: str
) -> None:
    """The advice knew only /tmp, /var/tmp, /dev/shm and Python's temp dir, read once per process, while `relay submit`
    refuses $TMPDIR and $RAY_TMPDIR too: the database it advised was refused by the next check."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv(variable, "/scratch/relay-temp")  # a node's scratch space, outside /tmp
    problem = tracking_uri_problem("file:///scratch/relay-temp/mlruns", "tracking.uri", local=False)
    assert problem is not None and SHARED_ADVICE in problem and "sqlite:////scratch/" not in problem, problem
    local = tracking_uri_problem("file:///scratch/relay-temp/mlruns", "tracking.uri", local=True)
    assert local is not None and "e.g. sqlite:////scratch/relay-temp/mlruns/mlflow.db" in local


def test_a_file_store_through_a_symlink_into_tmp_or_a_ray_session_is_not_advised_a_database_there(
    monkeypatch, tmp_path: Path
) -> None:
    """A folder outside /tmp that links into it, or a path through Ray's session_latest, lands where a job's results
    are lost, as `relay submit` says of a store there; the advice named a database beside it all the same."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    (tmp_path / "mlruns").mkdir()  # pytest's tmp_path is under the temporary folder
    with durable_folder("preflight-link") as outside:
        outside.mkdir(parents=True)
        (outside / "mlruns").symlink_to(tmp_path / "mlruns")
        for folder in (outside / "mlruns", Path("/data/ray/session_latest/mlruns")):
            problem = tracking_uri_problem(f"file://{folder}", "tracking.uri", local=False)
            assert problem is not None and SHARED_ADVICE in problem and f"sqlite:///{folder}" not in problem, problem
        durable = outside / "durable"
        durable.mkdir()
        kept = tracking_uri_problem(f"file://{durable}", "tracking.uri", local=False)
        assert kept is not None and f"e.g. sqlite:///{durable}/mlflow.db" in kept


def test_relay_run_validate_and_tune_take_the_workspace_and_store_flags_the_other_commands_take(
    cwd: Path, capsys
) -> None:
    """`relay run CONFIG --workspace DIR` (and `relay tune`'s) was an unrecognised argument, while `relay run` ends by printing
    `relay generations RUN --workspace DIR` and resume/runs/generations/submit take the flag."""
    afile = cwd / "afile"
    afile.write_text("not a folder")
    err = refused(["validate", str(SMOKE), "--workspace", str(afile)], cwd, capsys)
    assert f"run.workspace: {afile} is a file, not a folder" in err and f"run.workspace={afile}" in err, err
    sweep = ["tune", str(SMOKE), "tune.space={train.lr: {grid: [0.01]}}", "tune.metric=evaluate/balanced_accuracy"]
    assert f"run.workspace: {afile} is a file" in refused([*sweep, "--workspace", str(afile)], cwd, capsys)
    assert f"run.artifact_uri: {afile} is a file" in refused([*sweep, "--artifact-uri", str(afile)], cwd, capsys)
    both = refused(["validate", str(SMOKE), "--workspace", str(cwd / "a"), f"run.workspace={cwd / 'b'}"], cwd, capsys)
    assert f"--workspace: given beside the override run.workspace={cwd / 'b'}" in both, both  # not a key given twice
    workspace, store = cwd / "ws", cwd / "elsewhere"
    argv = ["run", str(SMOKE), LOCAL, "--workspace", str(workspace), "--artifact-uri", str(store)]
    assert main([*argv, "--run-id", "flags", "--stop-after", "data/split"]) == 0
    assert (store / "runs" / "flags" / "config.yaml").is_file(), "the run record is in the --artifact-uri store"
    assert (workspace / "mlflow.db").is_file() and not (workspace / "artifacts" / "runs").exists()
