"""Reading a bad-input message in tests: the problem lines under `relay: N problem(s) in WHERE:`."""

from __future__ import annotations


def problem_lines(err: str) -> list[str]:
    """Each problem of ``err`` (the `  - ` lines), without its list marker."""
    return [line.strip().removeprefix("- ") for line in err.splitlines() if line.startswith("  - ")]
