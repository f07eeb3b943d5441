"""`relay submit|status|logs|stop|jobs`: runs and sweeps sent to a Ray cluster as jobs, and followed there.

Apart from ``run`` and ``sweeps`` because these commands drive a run from outside it: they check and
send the job (through ``orchestrator.jobs``, the Ray Jobs client), then name it, follow it and stop it
by the run's id; the run itself is `relay run` or `relay tune` started by the job on the cluster.
"""
