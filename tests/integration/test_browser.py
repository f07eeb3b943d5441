"""A real browser over a real run: the MLflow UI's model-training view, per-generation plots, registered models.

smoke.yaml runs through the CLI (tiny steps), `mlflow server` starts on a free 127.0.0.1 port the
way `relay ui` starts it, and headless Chromium (Debian's package, driven by Playwright;
`playwright install` is never needed) opens the URL `relay ui` prints. It checks that the
experiment opens in the model-training view (not the GenAI one, where the pipeline run was filed
under "Evaluation runs"), that the pipeline run steps through a generation's per-class plot, that
it lists its registered models, and that a gen-NN child still previews its own plot.

Screenshots are kept in ``test-artifacts/browser/`` at the repository root (ignored by git;
``RELAY_TEST_ARTIFACTS`` moves it), named ``mlflow-*.png``; their paths are printed (pytest -s).
"""

from __future__ import annotations

import os
import re
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
from tests.integration.relay_cli import artifacts_folder
from tests.integration.test_crest_pipeline import SMOKE, relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

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
PAGE_S = 120_000  # ms: the UI's first load of a page, on 2 loaded cores
RUN_ID = "browse-1"


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


def wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
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
def screenshots() -> Path:
    """Where the screenshots stay after the test: test-artifacts/browser/ (git-ignored)."""
    return artifacts_folder("browser")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """(run URL as `relay ui` prints it, tracking URI) of an MLflow server over a finished smoke run."""
    chromium_or_skip()
    workspace = tmp_path_factory.mktemp("ws")
    result = relay(
        "run", str(SMOKE), "train.steps=20", "train.report_every=10", "--run-id", RUN_ID, workspace=workspace
    )
    assert result.returncode == 0, result.stderr[-4000:]
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    port = free_port()
    command, env = ui.server_command(uri, port)
    log = (workspace / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server)
        yield ui.latest_run_url(uri, "relay", port), uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def page(served):
    """A fresh page whose every wait (clicks, `expect`, waits for functions) allows PAGE_S, not Playwright's 5 s."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_or_skip(), args=CHROMIUM_ARGS)
        expect.set_options(timeout=PAGE_S)  # ms, as PAGE_S
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(PAGE_S)  # ms
            page.set_default_navigation_timeout(PAGE_S)
            yield page
        finally:
            expect.set_options(timeout=None)  # Playwright's default again
            browser.close()


def wait_until_loaded(page, image) -> None:
    """Wait (up to PAGE_S) until ``image`` has loaded and has pixels; fail saying so if it does not."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=PAGE_S
        )
    except PlaywrightTimeoutError:
        pytest.fail(f"the plot did not load within {PAGE_S / 1000:.0f} s")


def shot(page, folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path))
    print(f"\nscreenshot: {path}")
    return path


def test_the_experiment_opens_in_the_model_training_view(served, page, screenshots) -> None:
    from playwright.sync_api import expect

    run_url, uri = served
    client = MlflowClient(uri)
    assert client.get_experiment_by_name("relay").tags["mlflow.experimentKind"] == "custom_model_development"
    page.goto(run_url)  # what `relay ui` prints
    expect(page.get_by_role("heading", name=RUN_ID)).to_be_visible(timeout=PAGE_S)
    page.get_by_role("link", name="Runs", exact=True).first.click()  # the experiment's runs
    expect(page.get_by_role("link", name=RUN_ID)).to_be_visible(timeout=PAGE_S)  # in the runs table
    expect(page).to_have_url(re.compile(r"workflowType=machine_learning"))
    expect(page.get_by_role("link", name="Model registry")).to_be_visible()  # the training view's side bar
    expect(page.get_by_text("Evaluation runs", exact=True)).to_have_count(0)  # the GenAI view's
    assert shot(page, screenshots, "mlflow-experiment-training-view.png").stat().st_size > 10_000


def test_a_generations_per_class_plot_is_stepped_through_on_the_pipeline_run(served, page, screenshots) -> None:
    from playwright.sync_api import expect

    run_url, _ = served
    page.goto(run_url)
    expect(page.get_by_role("heading", name=RUN_ID)).to_be_visible(timeout=PAGE_S)
    page.get_by_role("tab", name="Model metrics").click()
    title = page.locator("h4[title='evaluate/per_class']")
    expect(title).to_be_visible(timeout=PAGE_S)
    card = title.locator("xpath=ancestor::*[.//*[@role='slider']][1]")
    # the card's one image: MLflow 3.17 sets its src to the artifact's URL (the step in it), 3.18 to a blob: URL
    image = card.locator("img")
    slider = card.get_by_role("slider")
    expect(slider).to_have_attribute("aria-valuemax", "1")  # one step per generation: gen-00, gen-01
    expect(image).to_have_attribute("src", re.compile(r"^(blob:|.*step%2B0%2B)"), timeout=PAGE_S)
    wait_until_loaded(page, image)
    gen_00 = image.get_attribute("src")
    slider.focus()
    slider.press("ArrowRight")
    expect(slider).to_have_attribute("aria-valuenow", "1")
    expect(image).not_to_have_attribute("src", gen_00, timeout=PAGE_S)  # gen-01's plot, fetched anew
    wait_until_loaded(page, image)
    # MLflow 3.17 lists every param of the run (~100: the whole config) above the plot, which pushed it a
    # thousand pixels below the card's fold; a user sees it after switching the list off, as the README says
    hide_run_parameters(page, card)
    expect(slider).to_have_attribute("aria-valuenow", "1")
    expect(image).not_to_have_attribute("src", gen_00, timeout=PAGE_S)
    wait_until_loaded(page, image)
    page.wait_for_function(
        "([img, box]) => { const i = img.getBoundingClientRect(), b = box.getBoundingClientRect();"
        " return i.top >= b.top && i.bottom <= b.bottom; }",
        arg=[image.element_handle(), card.element_handle()],
        timeout=PAGE_S,
    )
    assert shot(page, screenshots, "mlflow-pipeline-run-per-class-gen-01.png").stat().st_size > 10_000


def hide_run_parameters(page, card) -> None:
    """The image chart's menu, Configure, "Show run parameters" off, Save changes: what the README tells a user."""
    card.get_by_test_id("experiment-view-compare-runs-card-menu").click()
    page.get_by_role("menuitem", name="Configure").click()
    page.get_by_role("switch", name="Show run parameters").click()
    page.get_by_role("button", name="Save changes").click()


def test_the_pipeline_run_lists_its_registered_models(served, page, screenshots) -> None:
    from playwright.sync_api import expect

    run_url, uri = served
    page.goto(run_url)
    expect(page.get_by_role("heading", name=RUN_ID)).to_be_visible(timeout=PAGE_S)
    expect(page.get_by_text("Logged models (2)")).to_be_visible(timeout=PAGE_S)
    for model in ("g00-model", "g01-model"):
        expect(page.get_by_role("link", name=model).first).to_be_visible()
    for version in ("1", "2"):  # the models' registered versions, linked from the pipeline run
        expect(page.locator(f"a[href*='/models/smoke/versions/{version}']").first).to_be_visible(timeout=PAGE_S)
    expect(page.get_by_text("models:/smoke/1 (gen-00), models:/smoke/2 (gen-01)")).to_be_attached()
    page.get_by_text("Logged models (2)").scroll_into_view_if_needed()
    assert shot(page, screenshots, "mlflow-pipeline-run-registered-models.png").stat().st_size > 10_000
    versions = MlflowClient(uri).search_model_versions("name = 'smoke'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def test_a_generation_run_previews_its_own_plot(served, page, screenshots) -> None:
    from playwright.sync_api import expect

    run_url, uri = served
    page.goto(run_url)
    expect(page.get_by_role("heading", name=RUN_ID)).to_be_visible(timeout=PAGE_S)
    page.get_by_role("link", name=f"gen-00 of {RUN_ID}", exact=True).click()  # the name says whose it is
    expect(page.get_by_role("heading", name=f"gen-00 of {RUN_ID}")).to_be_visible(timeout=PAGE_S)
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("evaluate", exact=True).click()
    page.get_by_text("per_class.png", exact=True).click()
    image = page.get_by_role("img", name="evaluate/per_class.png")
    expect(image).to_be_visible(timeout=PAGE_S)
    wait_until_loaded(page, image)
    assert shot(page, screenshots, "mlflow-gen-00-per-class.png").stat().st_size > 10_000
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay")
    gens = client.search_runs([experiment.experiment_id], "tags.`relay.kind` = 'generation'")
    assert sorted(r.info.run_name for r in gens) == [f"gen-00 of {RUN_ID}", f"gen-01 of {RUN_ID}"]
