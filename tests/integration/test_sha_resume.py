"""Synchronous successive halving across a real Ray Tune interrupt and ``Tuner.restore`` (a real local Ray).

The unit tests (tests/unit/orchestrator/tune/test_schedulers_resume.py) stand in for Tune's
controller; this one checks the part that rests on Tune itself: a restored trial that the scheduler
pauses again in ``on_trial_add`` is kept paused by Tune, started only when promoted, and stopped
when its rung drops it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]  # a real local Ray: the serial tier of `make test`, not the parallel one

ROOT = Path(__file__).resolve().parents[2]

# generation-1 scores by learning rate; 0.1 is cut off by the interrupt before it reports (the reviewer's sweep)
SCRIPT = """
import json, logging, os, signal, sys, tempfile, threading, time
import ray
from ray import tune
from orchestrator.tune.schedulers import SuccessiveHalving

FOLDER = sys.argv[1]
FIRST_RUN = os.path.join(FOLDER, "first-run")  # present until the interrupt
SCORES = {0.03: [0.34, 0.29], 0.003: [0.19, 0.1], 0.01: [0.195, 0.185], 0.1: [0.475, 0.395]}


def trainable(config):
    checkpoint = tune.get_checkpoint()
    start = int(open(os.path.join(checkpoint.path, "generation")).read()) if checkpoint else 0
    for generation in range(start + 1, 3):
        if config["lr"] == 0.03 and os.path.exists(FIRST_RUN):
            time.sleep(2)  # reports third: the interrupt comes while Tune pauses it, and the rung keeps it
        while config["lr"] == 0.1 and os.path.exists(FIRST_RUN):
            time.sleep(0.2)  # runs generation 1 until the interrupt cuts it off
        with tempfile.TemporaryDirectory() as folder:
            open(os.path.join(folder, "generation"), "w").write(str(generation))
            score = SCORES[config["lr"]][generation - 1]
            tune.report({"score": score}, checkpoint=tune.Checkpoint.from_directory(folder))


def interrupt_when_three_wait(trial_id, result):
    # Ctrl-C once 3 trials reported generation 1: they wait at the rung, the 4th is still running it
    waiting = len(os.listdir(os.path.join(FOLDER, "reported")))
    open(os.path.join(FOLDER, "reported", trial_id), "w").close()
    if os.path.exists(FIRST_RUN) and waiting + 1 == 3:
        os.kill(os.getpid(), signal.SIGINT)
    return False


logging.basicConfig()
logging.getLogger("orchestrator").setLevel(logging.INFO)  # the scheduler's decisions, as `relay tune` shows them
ray.init(address="local", num_cpus=4, include_dashboard=False, _temp_dir=sys.argv[2])
os.makedirs(os.path.join(FOLDER, "reported"))
open(FIRST_RUN, "w").close()
scheduler = SuccessiveHalving(grace_period=1, reduction_factor=2, max_t=2, trials=4, concurrency=4)
tuner = tune.Tuner(
    trainable,
    param_space={"lr": tune.grid_search(list(SCORES))},
    tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler),
    run_config=tune.RunConfig(name="sha", storage_path=os.path.join(FOLDER, "ray"), stop=interrupt_when_three_wait),
)
first = tuner.fit()
print("FIRST", json.dumps({r.config["lr"]: (r.metrics or {}).get("training_iteration", 0) for r in first}))
os.remove(FIRST_RUN)
path = os.path.join(FOLDER, "ray", "sha")
# a sweep that hangs is ended by a Ctrl-C of its own, so Ray shuts down and the results say which trial waited
watchdog = threading.Timer(120, os.kill, (os.getpid(), signal.SIGINT))
watchdog.start()
grid = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True).fit()
watchdog.cancel()
print("RESUMED", json.dumps({r.config["lr"]: r.metrics["training_iteration"] for r in grid}))
"""


def test_a_rung_decided_after_a_resume_stops_the_restored_trials_it_drops(tmp_path: Path) -> None:
    """Before the fix the resumed sweep logged `2 of 4 trial(s) go on` at generation 1 and ran all 4 to
    generation 2; now the 2 it drops stop at generation 1.

    The Ctrl-C comes while Tune pauses the third trial to report (lr 0.03, kept by the rung): Tune keeps
    that pause in its state and carries it out after the resume. Before the fix that trial then stayed
    paused and the sweep hung (here, until the script's own Ctrl-C after 120 s)."""
    done, out = run_sweep_script(SCRIPT, tmp_path)
    first = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("FIRST "))[6:])
    assert sorted(first.values()) == [0, 1, 1, 1], out  # interrupted with 3 waiting at generation 1
    resumed = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESUMED "))[8:])
    assert resumed == {"0.03": 2, "0.003": 1, "0.01": 1, "0.1": 2}, out
    assert "successive halving at generation 1: 2 of 4 trial(s) go on" in out
    assert out.count("waits at generation 1 again (restored by --resume)") == 3, out


def run_sweep_script(script: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, str]:
    """Run a sweep script (interrupt, then resume) in its own Python with a Ray temp dir of its own; its result and
    its whole output, after checking that it ended well."""
    ray_temp = Path(tempfile.mkdtemp(prefix="rt-"))  # short: Ray's socket paths under it must stay within 107 bytes
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script), str(tmp_path), str(ray_temp)],
            cwd=ROOT,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return done, out
