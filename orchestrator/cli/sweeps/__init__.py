"""`relay tune`: a hyperparameter sweep on Ray Tune, from its checked file to the results it writes.

Apart from ``run`` (one pipeline run) because a sweep owns a folder of its own (trials.csv, best.yaml,
Ray Tune's state) and a resume of its own; ``jobs.sweep_job`` submits the same sweep as a Ray job.
"""
