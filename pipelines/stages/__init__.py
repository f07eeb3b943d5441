"""Stage bodies, one module per DAG role (split, train, evaluate, pseudo_label, rebalance, filter, masks).

Deliberately empty and torch-free: builders import `pipelines.stages.refs` only, and importing a
submodule runs this file first.
"""
