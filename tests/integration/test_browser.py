"""A real browser over a real run: the MLflow UI shows the gen-NN runs and a generation's plot.

smoke.yaml runs through the CLI (tiny steps), `mlflow server` starts on a free
127.0.0.1 port the way `relay ui` starts it, and headless Chromium (Debian's
package, driven by Playwright; `playwright install` is never needed) opens the
pipeline run, follows its gen-00 child and previews evaluate/per_class.png.
The screenshot stays in the test's tmp dir; its path is printed (pytest -s).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator import ui
from tests.integration.test_crest_pipeline import SMOKE, relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CHROMIUM = os.environ.get("RELAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> str:
    """The Chromium binary, or a skip that says why (the only reason this test skips)."""
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        pytest.skip(f"Chromium not found at {CHROMIUM} or on PATH: apt-get install -y chromium chromium-driver")
    pytest.importorskip("playwright", reason="playwright missing: pip install -e '.[test]'")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server at {url} not healthy after {timeout_s} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """(url, workspace) of an MLflow server over a workspace where a tiny smoke run finished."""
    chromium_or_skip()
    workspace = tmp_path_factory.mktemp("ws")
    result = relay(
        "run", str(SMOKE), "train.steps=20", "train.report_every=10", "--run-id", "browse-1", workspace=workspace
    )
    assert result.returncode == 0, result.stderr[-4000:]
    port = free_port()
    command, env = ui.server_command(f"sqlite:///{workspace / 'mlflow.db'}", port)
    log = (workspace / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url, workspace
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        server.wait(timeout=30)
        log.close()


def test_pipeline_run_shows_generation_runs_and_a_plot(served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, workspace = served
    run_url = ui.latest_run_url(f"sqlite:///{workspace / 'mlflow.db'}", "relay", int(url.rsplit(":", 1)[1]))
    shot = tmp_path / "mlflow-gen-00.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_or_skip(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(run_url)
            expect(page.get_by_role("heading", name="browse-1")).to_be_visible(timeout=60_000)
            for name in ("gen-00", "gen-01"):
                expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
            page.screenshot(path=str(tmp_path / "mlflow-pipeline-run.png"))
            page.get_by_role("link", name="gen-00", exact=True).click()
            expect(page.get_by_role("heading", name="gen-00")).to_be_visible(timeout=30_000)
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("evaluate", exact=True).click()
            page.get_by_text("per_class.png", exact=True).click()
            image = page.get_by_role("img", name="evaluate/per_class.png")
            expect(image).to_be_visible(timeout=30_000)
            assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the plot did not load"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    print(f"\nscreenshots: {shot} and {tmp_path / 'mlflow-pipeline-run.png'}")
    assert shot.stat().st_size > 10_000


def test_gen_runs_in_the_store_match_what_the_page_linked(served) -> None:
    _, workspace = served
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("relay")
    gens = client.search_runs([experiment.experiment_id], "tags.`relay.kind` = 'generation'")
    assert sorted(r.info.run_name for r in gens) == ["gen-00", "gen-01"]
