"""Builders: one module per pipeline, each with its Config model, build(), preflight() and SPEC."""
