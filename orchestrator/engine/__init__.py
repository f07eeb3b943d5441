"""The engine: fingerprints, the runner loop, executors, the artifact store; it knows no algorithm.

Modules here import only the orchestrator base (dag, config, errors, registry) and each
other; tracking/ implements the ``Tracker`` protocol of ``records`` and never the reverse.
"""
