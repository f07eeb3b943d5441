"""`relay tune`: Ray Tune over pipeline runs; a trial is one pipeline run with sampled overrides.

Why it is shaped this way (space.py; plan.py and its checks, sweep_checks.py, trial_fit.py and
trial_work.py; trial.py; schedulers.py; sweep.py and its trials, trial_rows.py and trials_table.py):

- The search space is a map of dotted config keys, applied with
  ``apply_overrides``, the CLI's own function: a key means the same thing in
  `relay run a.b=1` and in a sweep. Every key is checked against the base
  config (and the DAG's shape) before any trial starts.
- A trial runs its pipeline one generation at a time (``Runner.run`` with
  ``stop_after`` = the metric's stage of generation k) and reports after each,
  so ASHA stops and PBT perturbs at generation boundaries
  (``time_attr="training_iteration"`` = generations reported). Completed
  stages are cached by fingerprint, so each call only runs the new generation.
- A trial's state is its *schedule*: which values it used from which
  generation on. Its checkpoint is that schedule, not a model: the artifact
  store is keyed by fingerprint, so a pipeline whose generations < k come from
  the old values and >= k from the new ones finds the old generations in the
  cache. A PBT-mutated trial therefore continues at the next generation with
  the new values, from the models and picks of the trial it cloned (exploit
  copies the better trial's checkpoint, i.e. its schedule). A resumed trial
  continues after its last reported generation the same way.
- ``--resume`` is ``Tuner.restore``: finished trials keep their results and are
  not rerun; unfinished ones continue after their last reported generation.
  Ray Tune does not save scheduler state, so a resumed ASHA starts with empty
  rungs and compares only the trials it runs after the restore.
- Trial drivers hold ``trial_cpus`` (0.1): their stages are Ray tasks that ask
  for the stage resources, so the number of concurrent trials comes from the
  cluster's CPUs/GPUs divided by what one trial's largest stage needs.
"""
