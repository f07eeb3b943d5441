"""`relay run|resume|validate`: one pipeline run, from the checks before it writes to the lines it ends with.

Apart from ``records`` (reading runs back) and ``jobs`` (sending them to a cluster) because these modules
start a run on this machine's driver: where it writes and whether that outlives the cluster, the Ray it
joins and whether its stages fit there, whether a resume may take a run over, then the run executed.
``sweeps`` and ``jobs`` check a cluster and the stores with the same modules.
"""
