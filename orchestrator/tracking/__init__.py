"""Experiment tracking in MLflow: the ``Tracker`` the runner reports to, and what reads it back.

Implements ``orchestrator.engine.records.Tracker``; imports the engine, never the reverse.
"""
