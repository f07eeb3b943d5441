"""`relay submit` of a file with a `tune:` section: one run of its base config, or with --tune the sweep as a job.

- Without --tune the job ran `relay run FILE` with exit 0 and no word that the `tune:` section was left out; it
  now says so on stderr, with the command that submits the sweep (--tune).
- With --tune the sweep's driver (`relay tune`) is the job, under the id sweep-NAME: before, a sweep on a cluster
  could only be driven from the machine that typed `relay tune --address`, and stopped with it.
Against the small real HTTP server of ``test_cluster_submit_jobs_server`` that answers like Ray's Jobs server.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from orchestrator import jobs
from orchestrator.cli import main
from tests.integration.cluster import durable_folder
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import SMOKE, JobsServer, job, project, server

__all__ = ["project", "server"]  # the fixtures, used by name below

SWEEP_NOTE = "has a `tune:` section, which `relay submit` does not run: this job is one run of the base config"


def test_a_sweep_file_is_submitted_as_one_run_and_says_how_to_sweep(
    server: JobsServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["submit", str(SMOKE), "train.steps=5", "--run-id", "r1", "--address", server.address]
    assert main([*argv, "--skip-resource-check", "--workspace", "/mnt/relay-shared"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "r1"  # the job id alone on stdout, as for any submit
    assert f"relay: {SMOKE} {SWEEP_NOTE} (`relay run {SMOKE}`), not the sweep" in err
    # the same location flags, or the pasted command would be refused (a relative default workspace)
    assert (
        f"`relay submit {SMOKE} train.steps=5 --tune --workspace /mnt/relay-shared --skip-resource-check --address "
        f"{server.address}`" in err
    )
    (request,) = server.submitted
    assert "relay run" in request["entrypoint"] and "relay tune" not in request["entrypoint"]


def test_a_file_without_tune_says_nothing_of_sweeps(
    server: JobsServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {key: value for key, value in yaml.safe_load(SMOKE.read_text()).items() if key != "tune"}
    (project / "base.yaml").write_text(yaml.safe_dump(base))
    argv = ["submit", "base.yaml", "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--workspace", "/mnt/relay-shared"]) == 0
    assert SWEEP_NOTE not in capsys.readouterr().err
    assert len(server.submitted) == 1


def test_a_refused_sweep_file_says_only_the_refusal(
    server: JobsServer, project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs.capacity, "NODES_REPORT_WAIT_S", 0)
    server.usage = {"CPU": [0.0, 4.0], "memory": [0.0, 8e9]}
    argv = ["submit", str(SMOKE), "resources.train.num_cpus=6", "--address", server.address]
    assert main([*argv, "--workspace", "/mnt/relay-shared"]) == 2
    err = capsys.readouterr().err
    assert "asks for 6 CPU" in err and SWEEP_NOTE not in err
    assert server.submitted == []


# --------------------------------------------------------------------------- --tune: the sweep as the job

SHARED = "/mnt/relay-shared"
SWEEP = ["submit", str(SMOKE), "train.steps=5", "--tune", "--workspace", SHARED]


def submit_sweep(server: JobsServer, *extra: str) -> int:
    return main([*SWEEP, *extra, "--address", server.address, "--skip-resource-check"])


def test_tune_submits_the_sweeps_driver_as_a_job_named_after_the_sweep(
    server: JobsServer, project: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert submit_sweep(server) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "sweep-smoke-sweep" and SWEEP_NOTE not in err
    said = [record.getMessage() for record in caplog.records]  # the file went with the job: not "must exist there"
    assert any("its text is sent with the job" in line for line in said), said
    assert not any("must exist on the cluster" in line for line in said), said
    (request,) = server.submitted
    # SMOKE is outside the uploaded project: its text goes with the job, which runs it (``jobs.submit.config_job``)
    assert request["entrypoint"].endswith('exec relay tune "$folder"/smoke.yaml train.steps=5')
    assert request["submission_id"] == "sweep-smoke-sweep"
    assert request["metadata"]["relay.sweep"] == "smoke-sweep" and request["metadata"]["relay.pipeline"] == "crest"
    env = request["runtime_env"]["env_vars"]
    assert env["RELAY_WORKSPACE"] == SHARED and env["RELAY_JOB_ADDRESS"] == server.address
    way_on = (
        f"relay submit {SMOKE} train.steps=5 --tune --resume-sweep --workspace {SHARED} --skip-resource-check "
        f"--address {server.address}"
    )
    assert env["RELAY_SWEEP_RESUME_COMMAND"] == way_on == request["metadata"]["relay.resume"]
    # the job's "start it again" line is this submit, not `relay tune` of the job's copy of the file
    assert env["RELAY_SWEEP_START_COMMAND"] == way_on.replace(" --resume-sweep", "")
    # `relay stop` of the job as a Ctrl-C, with a minute to write the table (Ray's job supervisor reads these)
    assert env["RAY_JOB_STOP_SIGNAL"] == "SIGINT" and int(env["RAY_JOB_STOP_WAIT_TIME_S"]) >= 30


def test_a_new_start_of_a_sweep_whose_earlier_job_ended_gets_the_next_id(
    server: JobsServer, project: Path, capsys
) -> None:
    """Ray never reuses a job id: a sweep whose first job failed before any trial (its folder unseen here) starts
    again as the sweep's next job; the job's `relay tune` refuses it there if that folder holds the sweep."""
    server.jobs = [job("sweep-smoke-sweep", "FAILED")]
    assert submit_sweep(server) == 0
    assert capsys.readouterr().out.strip() == "sweep-smoke-sweep-resume-2"
    (request,) = server.submitted
    assert "--resume" not in request["entrypoint"]


def test_resume_sweep_where_the_workspace_is_seen_and_the_sweep_is_not_is_refused(
    server: JobsServer, project: Path, capsys
) -> None:
    """A --resume-sweep of a name that never ran was sent on, and its job failed ("nothing to resume")."""
    with durable_folder("sweep-ws") as workspace:
        workspace.mkdir(parents=True)
        argv = ["submit", str(SMOKE), "--tune", "--resume-sweep", "--workspace", str(workspace)]
        assert main([*argv, "--address", server.address, "--skip-resource-check"]) == 2
        said = f"nothing to resume at {workspace}/tune/smoke-sweep/ray/smoke-sweep; start it without --resume-sweep"
        assert said in capsys.readouterr().err
        assert server.submitted == [] and list(workspace.iterdir()) == []


def test_an_output_folder_holding_another_sweep_is_refused(server: JobsServer, project: Path, capsys) -> None:
    """Sent on, the job's `relay tune` refused it, naming `relay tune`'s --resume."""
    with durable_folder("sweep-busy") as output:
        (output / "ray" / "busy").mkdir(parents=True)
        (output / "ray" / "busy" / "tuner.pkl").write_bytes(b"")  # what Ray Tune's can_restore looks for
        assert submit_sweep(server, "--output", str(output)) == 2
        err = capsys.readouterr().err
        assert (
            f"--output: {output} holds sweep busy, not one named smoke-sweep; continue it with tune.name=busy and --resume-sweep"
            in err
        )
        assert server.submitted == []


def test_a_sweep_folder_in_a_lost_workspace_names_the_flag_that_chose_it(
    server: JobsServer, project: Path, capsys
) -> None:
    argv = ["submit", str(SMOKE), "--tune", "--workspace", "/tmp/relay-ws", "--address", server.address]
    assert main([*argv, "--skip-resource-check"]) == 2
    err = capsys.readouterr().err
    assert "--workspace: the artifact store" in err and "run.workspace" not in err
    assert "--workspace: the sweep folder /tmp/relay-ws/tune/smoke-sweep (WORKSPACE/tune/NAME) would be under" in err
    assert "--output:" not in err
    assert server.submitted == []


def test_resume_sweep_continues_it_as_the_sweeps_next_job(server: JobsServer, project: Path, capsys) -> None:
    server.jobs = [job("sweep-smoke-sweep", "STOPPED")]
    output = f"{SHARED}/sweeps/s1"  # not on this machine: the job checks it there
    assert submit_sweep(server, "--resume-sweep", "--output", output) == 0
    assert capsys.readouterr().out.strip() == "sweep-smoke-sweep-resume-2"
    (request,) = server.submitted
    assert request["entrypoint"].endswith(
        f'exec relay tune "$folder"/smoke.yaml train.steps=5 --output {output} --resume'
    )


def test_a_second_job_of_a_sweep_still_running_is_refused(server: JobsServer, project: Path, capsys) -> None:
    server.jobs = [job("sweep-smoke-sweep", "RUNNING")]
    assert submit_sweep(server, "--resume-sweep") == 2
    assert "sweep sweep-smoke-sweep is still running as job sweep-smoke-sweep (RUNNING)" in capsys.readouterr().err
    assert server.submitted == []


def test_resume_sweep_of_a_visible_folder_without_a_sweep_is_refused(server: JobsServer, project: Path, capsys) -> None:
    with durable_folder("sweep-job") as empty:  # outside /tmp, which a cluster's folder must not be
        empty.mkdir(parents=True)
        assert submit_sweep(server, "--resume-sweep", "--output", str(empty)) == 2
        said = f"nothing to resume at {empty}/ray/smoke-sweep; start it without --resume-sweep"
        assert said in capsys.readouterr().err
        assert server.submitted == []
        assert list(empty.iterdir()) == []


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--output", "/mnt/s"], "--output: only with --tune (a sweep's job); add --tune, or drop --output"),
        (["--resume-sweep"], "--resume-sweep: only with --tune"),
        (["--tune", "--run-id", "r1"], "--run-id: has no effect with --tune (a sweep's job is named sweep-NAME"),
        (["--tune", "--no-cache"], "--no-cache: has no effect with --tune"),
    ],
)
def test_sweep_flags_out_of_place_are_refused(
    server: JobsServer, project: Path, capsys, flags: list[str], said: str
) -> None:
    argv = ["submit", str(SMOKE), *flags, "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--workspace", SHARED]) == 2
    assert said in capsys.readouterr().err
    assert server.submitted == []


def test_tune_with_resume_of_a_run_is_refused(server: JobsServer, project: Path, capsys) -> None:
    assert main(["submit", "--resume", "r1", "--tune", "--address", server.address]) == 2
    assert "--tune: not with --resume RUN_ID" in capsys.readouterr().err
    assert main(["submit", "--resume", "r1", "--output", "/mnt/s", "--resume-sweep", "--address", server.address]) == 2
    err = capsys.readouterr().err
    assert "--output: has no effect with --resume" in err and "--resume-sweep: has no effect with --resume" in err
    assert server.submitted == []


def test_tune_of_a_file_without_a_sweep_is_refused(server: JobsServer, project: Path, capsys) -> None:
    base = {key: value for key, value in yaml.safe_load(SMOKE.read_text()).items() if key != "tune"}
    (project / "base.yaml").write_text(yaml.safe_dump(base))
    assert main(["submit", "base.yaml", "--tune", "--workspace", SHARED, "--address", server.address]) == 2
    assert "--tune: base.yaml has no `tune:` section to search" in capsys.readouterr().err
    assert server.submitted == []


def test_a_sweep_folder_the_job_would_lose_is_refused(server: JobsServer, project: Path, capsys) -> None:
    assert submit_sweep(server, "--output", "sweeps/s1") == 2
    err = capsys.readouterr().err
    assert "--output: the sweep folder sweeps/s1 would be a relative path, which a Ray job resolves inside" in err
    assert server.submitted == []


def test_a_searched_worker_no_node_holds_is_refused(server: JobsServer, project: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(jobs.capacity, "NODES_REPORT_WAIT_S", 0)
    server.usage = {"CPU": [0.0, 4.0], "memory": [0.0, 8e9]}
    server.nodes = [{"CPU": 2.0, "memory": 4e9}, {"CPU": 2.0, "memory": 4e9}]
    space = "tune.space.resources.train.num_cpus={choice: [1, 3]}"
    assert main([*SWEEP, space, "--address", server.address]) == 2
    err = capsys.readouterr().err
    assert "tune.space.resources.train.num_cpus: a trial given resources.train.num_cpus=3" in err
    assert "the largest has 2 CPU" in err
    assert server.submitted == []
    server.nodes = [{"CPU": 4.0, "memory": 8e9}]
    assert main([*SWEEP, space, "--address", server.address]) == 0  # a node that large: submitted
    assert len(server.submitted) == 1


def test_status_of_a_stopped_sweep_job_says_how_to_continue_it(server: JobsServer, project: Path, capsys) -> None:
    """The way on of a run's job (`relay submit --resume RUN_ID`) would not continue a sweep: its job says its own."""
    way_on = "relay submit f.yaml --tune --resume-sweep --address http://h:8265"
    metadata = {"relay.sweep": "s", "relay.resume": way_on}
    server.jobs = [
        {**job("sweep-s", "STOPPED"), "metadata": metadata},
        {**job("sweep-ok", "SUCCEEDED"), "metadata": metadata},
    ]
    assert main(["status", "sweep-s", "--address", server.address]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "STOPPED"
    assert f"sweep s's job is STOPPED: `{way_on}` continues it as a new job" in err
    assert main(["status", "sweep-ok", "--address", server.address]) == 0
    assert capsys.readouterr().err == ""  # a sweep that ended has no way on to say


def test_status_of_a_failed_sweep_job_sends_to_its_log_first(server: JobsServer, project: Path, capsys) -> None:
    """A sweep job refused on the cluster before any trial FAILED too: --resume-sweep alone would loop."""
    way_on = "relay submit f.yaml --tune --resume-sweep --address http://h:8265"
    server.jobs = [{**job("sweep-f", "FAILED"), "metadata": {"relay.sweep": "f", "relay.resume": way_on}}]
    assert main(["status", "sweep-f", "--address", server.address]) == 0
    err = capsys.readouterr().err
    assert "sweep f's job is FAILED: `relay logs` of it says why" in err
    assert f"`{way_on}` continues the sweep if its trials had started" in err
    assert "else submit it again without --resume-sweep" in err


def test_a_sweeps_name_means_its_job(server: JobsServer, project: Path, capsys) -> None:
    """`relay logs NAME` with the sweep's name (as `relay generations NAME` takes it) said "no job 'NAME'"."""
    server.jobs = [job("sweep-s", "SUCCEEDED"), job("sweep-s-resume-2", "RUNNING")]
    assert main(["status", "s", "--address", server.address]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "RUNNING"
    assert "s: no job by that id; sweep s's job is sweep-s" in err and "its newest job is sweep-s-resume-2" in err


# --------------------------------------------------------------------------- run ids and sweep names: one namespace


def test_a_sweep_named_as_a_run_of_the_workspace_is_refused_before_it_is_sent(
    server: JobsServer, project: Path, capsys
) -> None:
    """Sent on, the job's `relay tune` refused it on the cluster, after the upload; where this machine sees the
    workspace, the submit refuses it (exit 2, nothing sent or written)."""
    with durable_folder("sweep-named-as-run") as workspace:
        record = workspace / "artifacts" / "runs" / "smoke-sweep"
        record.mkdir(parents=True)
        (record / "config.yaml").write_text(SMOKE.read_text())
        before = sorted(workspace.rglob("*"))
        argv = ["submit", str(SMOKE), "--tune", "--workspace", str(workspace)]
        assert main([*argv, "--address", server.address, "--skip-resource-check"]) == 2
        err = capsys.readouterr().err
        assert f"tune.name: 'smoke-sweep' is the id of a run in {workspace / 'artifacts'}" in err
        assert "name the sweep otherwise (tune.name=NEW)" in err
        assert server.submitted == [] and sorted(workspace.rglob("*")) == before


def test_a_run_id_that_names_a_sweep_of_the_workspace_is_refused_before_it_is_sent(
    server: JobsServer, project: Path, capsys
) -> None:
    with durable_folder("run-id-named-as-sweep") as workspace:
        (workspace / "tune" / "lr-search").mkdir(parents=True)
        (workspace / "tune" / "lr-search" / "sweep-config.yaml").write_text(SMOKE.read_text())
        (workspace / "artifacts").mkdir()
        argv = ["submit", str(SMOKE), "--run-id", "lr-search", "--workspace", str(workspace)]
        assert main([*argv, "--address", server.address, "--skip-resource-check"]) == 2
        err = capsys.readouterr().err
        assert f"--run-id: 'lr-search' is the name of a sweep (its folder {workspace / 'tune' / 'lr-search'})" in err
        assert server.submitted == []
        assert main([*argv[:3], "lr-search-2", *argv[4:], "--address", server.address, "--skip-resource-check"]) == 0
        assert [request["submission_id"] for request in server.submitted] == ["lr-search-2"]
