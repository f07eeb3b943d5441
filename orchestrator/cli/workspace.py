"""`relay ui`: an MLflow UI over the workspace's tracking store."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator import ui
from orchestrator.cli.common import add_workspace
from orchestrator.config import RunSettings, TrackingSettings, tracking_uri


def cmd_ui(args: argparse.Namespace) -> int:
    """Check first (port, runs), then serve the workspace's default tracking store until Ctrl-C."""
    uri = tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    url = ui.check(uri, args.experiment, args.port)
    print(f"MLflow UI: {url}  (Ctrl-C to stop)", flush=True)
    return ui.run_server(uri, args.port)


def register(commands: Any) -> None:
    parser = commands.add_parser("ui", help="start an MLflow UI on 127.0.0.1 for the workspace")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--experiment", default="relay")
    add_workspace(parser)
    parser.set_defaults(handler=cmd_ui)
