"""A sweep of one trial at a time, interrupted and resumed through real Ray Tune: the resume runs its
restored trials one at a time too (a real local Ray, ``Tuner.restore`` as ``relay tune --resume`` calls it).

The sweep's search and scheduler are the ones ``relay tune`` gives it (``sweep.tune_config``: ASHA,
the default, under ``ConcurrencyCap``); its trials are a few lines each instead of pipeline runs, so
that the interrupt lands where the test needs it and the test takes seconds. The unit tests
(tests/unit/orchestrator/tune/test_resume_concurrency.py) cover every scheduler against a stand-in
for Tune's controller; this one checks the part that rests on Tune itself: Tune keeps a trial the cap
paused on its add, and starts it only when the cap lets the scheduler choose it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_sha_resume import run_sweep_script

pytestmark = [pytest.mark.integration]  # a real local Ray: the serial tier of `make test`, not the parallel one


# The first run: trials start one at a time; the first two fail at generation 2 (their one retry too), the third
# reports generation 1 and runs on until the interrupt. The resume restores all three: two errored, one unfinished.
# Each start of a trial in the resumed run records when it started and when it reported its last generation
# (the trial cut off may start from scratch: Tune can save its state at the Ctrl-C before that trial's checkpoint).
SCRIPT = """
import json, logging, os, signal, sys, tempfile, threading, time, uuid
import ray
from ray import tune
from orchestrator.config import TuneSettings
from orchestrator.tune.space import param_space
from orchestrator.tune.sweep import tune_config

FOLDER = sys.argv[1]
FIRST_RUN = os.path.join(FOLDER, "first-run")  # present until the interrupt
ROLES, FAILED, INTERVALS = (os.path.join(FOLDER, name) for name in ("roles", "failed", "intervals"))
METRIC = "evaluate/score"


def role(trial_id):
    # the order trials started in the first run (one at a time there); the first two fail
    path = os.path.join(ROLES, trial_id)
    if not os.path.exists(path):
        number = len(os.listdir(ROLES))
        open(path, "w").write(str(number))
    return int(open(path).read())


def trainable(config):
    trial_id = tune.get_context().get_trial_id()
    started, session = time.monotonic_ns(), uuid.uuid4().hex  # this start of the trial, from its checkpoint if any
    if os.path.exists(FIRST_RUN):
        role(trial_id)  # numbered as it starts, before the stop callback reads its number
    checkpoint = tune.get_checkpoint()
    done = int(open(os.path.join(checkpoint.path, "generation")).read()) if checkpoint else 0
    for generation in range(done + 1, 3):
        first_run = os.path.exists(FIRST_RUN)
        if first_run and generation == 2 and role(trial_id) < 2:
            open(os.path.join(FAILED, trial_id), "w").close()
            raise RuntimeError("fails while the first run lasts")
        while first_run and generation == 2 and os.path.exists(FIRST_RUN):
            time.sleep(0.2)  # the third trial runs generation 2 until the interrupt cuts it off
        if not first_run:
            time.sleep(1)  # a generation's work: long enough for trials started together to overlap
            interval = {"trial": trial_id, "start": started, "end": time.monotonic_ns()}  # so far: until this report
            open(os.path.join(INTERVALS, f"{trial_id}-{session}"), "w").write(json.dumps(interval))
        with tempfile.TemporaryDirectory() as folder:
            open(os.path.join(folder, "generation"), "w").write(str(generation))
            tune.report({METRIC: 0.5}, checkpoint=tune.Checkpoint.from_directory(folder))


def interrupt_when_the_third_reports(trial_id, result):
    # Ctrl-C once the third trial reported generation 1: the two before it have failed for good
    if os.path.exists(FIRST_RUN) and role(trial_id) == 2:  # numbered by its trainable already
        os.kill(os.getpid(), signal.SIGINT)
    return False


logging.basicConfig()
logging.getLogger("orchestrator").setLevel(logging.INFO)  # the cap's lines, as `relay tune` shows them
ray.init(address="local", num_cpus=4, include_dashboard=False, _temp_dir=sys.argv[2])
for folder in (ROLES, FAILED, INTERVALS):
    os.makedirs(folder)
open(FIRST_RUN, "w").close()
settings = TuneSettings(
    metric=METRIC, scheduler="asha", num_samples=1, max_concurrent_trials=1, seed=0,
    space={"train.lr": {"grid": [0.01, 0.02, 0.03]}},
)
run_config = tune.RunConfig(
    name="sweep",
    storage_path=os.path.join(FOLDER, "ray"),
    stop=interrupt_when_the_third_reports,
    failure_config=tune.FailureConfig(max_failures=1),
    checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
)
# room for 3 trials at once on the 4 CPUs: only the sweep's concurrency (1, as fit_concurrency gives it) limits them
tuner = tune.Tuner(
    trainable, param_space=param_space(settings.space), tune_config=tune_config(settings, 2, 1), run_config=run_config
)
first = tuner.fit()
print("FIRST", json.dumps(sorted([r.error is not None, (r.metrics or {}).get("training_iteration", 0)] for r in first)))
os.remove(FIRST_RUN)
# a sweep that hangs is ended by a Ctrl-C of its own, so Ray shuts down and the results say which trial waited
watchdog = threading.Timer(120, os.kill, (os.getpid(), signal.SIGINT))
watchdog.start()
path = os.path.join(FOLDER, "ray", "sweep")
grid = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True).fit()
watchdog.cancel()
print("RESUMED", json.dumps(sorted([r.error is not None, r.metrics["training_iteration"]] for r in grid)))
"""


def overlapping(intervals: list[dict]) -> list[tuple[str, str]]:
    """Pairs of trials whose recorded intervals overlap (one started before the other had reported)."""
    return [
        (a["trial"], b["trial"])
        for i, a in enumerate(intervals)
        for b in intervals[i + 1 :]
        if a["start"] < b["end"] and b["start"] < a["end"]
    ]


def test_a_resumed_sweep_of_one_trial_at_a_time_runs_its_restored_trials_one_at_a_time(tmp_path: Path) -> None:
    """Before the fix the resume started its 3 restored trials at once (2 failed, 1 cut off), in a sweep
    with tune.max_concurrent_trials=1; now each starts after the one before it has ended."""
    done, out = run_sweep_script(SCRIPT, tmp_path)
    first = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("FIRST "))[6:])
    assert first == [[False, 1], [True, 1], [True, 1]], out  # two failed, one cut off at generation 2
    resumed = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESUMED "))[8:])
    assert resumed == [[False, 2], [False, 2], [False, 2]], out  # every trial ran to the end
    intervals = [json.loads(path.read_text()) for path in (tmp_path / "intervals").iterdir()]
    assert {i["trial"] for i in intervals} == {path.name for path in (tmp_path / "roles").iterdir()}, out
    assert overlapping(intervals) == [], out
    assert out.count("waits until fewer than 1 trial(s) run") == 2, out
