"""Stage bodies: a module per shared DAG role, a module per method for a method's own stages.

Roles: split, pseudo_label, rebalance, filter, split_masks (masks.py), and train and evaluate in two
modules each (train / evaluate for CReST, train_network / evaluate_network for KE, Noisy Student and
distillation, kept apart so that one's edits leave the other's cache keys alone). A method's own
stages: lwf, hint (FitNets), domain (source selection), pretext (self-supervised pretraining and
probes); pretrained is the `init/import` stage. Not stages: common and augmentation (shared by the
bodies), refs (the bodies by name) and mlflow_model (MLflow's loader of Relay's checkpoints).

Deliberately empty and torch-free: builders import `pipelines.stages.refs` only, and importing a
submodule runs this file first.
"""
