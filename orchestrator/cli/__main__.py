"""`python -m orchestrator.cli`: the `relay` command, run as a module (tests, Ray job entry points)."""

import sys

from orchestrator.cli import main

if __name__ == "__main__":
    sys.exit(main())
