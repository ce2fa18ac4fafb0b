"""The UI in a real browser: ``tjctl ui`` serves it on loopback and Debian's headless
Chromium, driven by Playwright, loads it and clicks in it as a user would.

Needs ``/usr/bin/chromium`` (``scripts/install-chromium.sh`` installs it); Playwright
drives that browser and downloads none. Screenshots
and the page's HTML are saved in the test's temporary folder; with
``UI_SCREENSHOT_TO=docs/ui-job-view.png`` the job view's screenshot is also copied there
(that is how the README's picture is made).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import add_job, running_progress
from playwright.sync_api import Page, expect, sync_playwright

from tjcore.store import JobStore
from tjtrainer.progress import RunState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PROGRESS = '[data-testid="stProgress"] [role="progressbar"]'
CHART_DOTS = '[data-testid="stVegaLiteChart"] svg .mark-symbol.role-mark path'
CHROMIUM = Path("/usr/bin/chromium")
# Nothing but the page under test: no update checks, no sync, no QUIC (network rule).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
TIMEOUT_MS = 45_000
TRIALS_FIELD = 'input[aria-label="Trials per model"]'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"`tjctl ui` exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the UI did not answer on {url}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser") / "shared"


@pytest.fixture(scope="module")
def db(shared: Path) -> Iterator[JobStore]:
    store = JobStore(f"sqlite:///{shared / 'training_jobs.db'}")
    yield store
    store.close()


@pytest.fixture(scope="module")
def ui_url(shared: Path, db: JobStore) -> Iterator[str]:
    """``tjctl ui`` on a free loopback port, stopped (with its Streamlit child) at the end."""
    port = _free_port()
    env = os.environ | {"SHARED_DATA_PATH": str(shared), "DATABASE_URL": db.url}
    server = subprocess.Popen(
        [sys.executable, "-m", "tjctl", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    """One page of Debian's headless Chromium, driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-chromium.sh (as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        yield page
        browser.close()


def _text(page: Page) -> str:
    return page.inner_text("body")


def _wait(page: Page, expression: str, timeout_ms: int = TIMEOUT_MS) -> None:
    page.wait_for_function(expression, timeout=timeout_ms)


def test_the_job_view_shows_progress_scores_and_the_chart(
    db: JobStore, ui_url: str, page: Page, tmp_path: Path
) -> None:
    progress = running_progress(n_trials=10, done=14)
    job_id = add_job(db, progress)
    scored = sum(1 for t in progress.trials if t.spearman is not None)

    page.goto(f"{ui_url}/?job={job_id}")
    expect(page.locator(CHART_DOTS)).to_have_count(scored)
    time.sleep(0.5)  # let the last fonts and transitions settle for the picture

    expect(page.locator(PROGRESS)).to_have_attribute("aria-valuenow", "70")
    text = _text(page)
    assert "70% · trial 14/20 · training SHORT" in text
    assert f"Best LONG (Spearman)\n\n{progress.best_score_long:+.4f}" in text
    assert f"Best SHORT (Spearman)\n\n{progress.best_score_short:+.4f}" in text
    assert "Traceback" not in text
    shot = tmp_path / "job-view.png"
    page.screenshot(path=shot, full_page=True)
    (tmp_path / "job-view.html").write_text(page.content())
    assert shot.stat().st_size > 20_000  # a blank page is a few KB
    if target := os.environ.get("UI_SCREENSHOT_TO"):
        shutil.copyfile(shot, target)


def test_the_job_view_follows_the_job_to_its_end_without_reloading_the_page(
    db: JobStore, ui_url: str, page: Page
) -> None:
    job_id = add_job(db, running_progress(n_trials=10, done=4))
    page.goto(f"{ui_url}/?job={job_id}")
    expect(page.locator(PROGRESS)).to_have_attribute("aria-valuenow", "20")
    page.evaluate("window.notReloaded = true")

    db.apply_progress(job_id, running_progress(n_trials=10, done=16))

    expect(page.locator(PROGRESS)).to_have_attribute("aria-valuenow", "80", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    assert "trial 16/20 · training SHORT" in _text(page)

    # When the job ends, the whole page follows (badge, history) and the Cancel goes.
    done = running_progress(n_trials=10, done=20, state=RunState.COMPLETED)
    done.model_version = "15m_20261126_140000"
    db.apply_progress(job_id, done)
    _wait(
        page,
        f"document.querySelectorAll('{PROGRESS}').length === 1"
        f" && document.querySelector('{PROGRESS}').ariaValueNow === '100'"
        " && !document.body.innerText.includes('Cancel')",
        timeout_ms=15_000,
    )
    assert "Model version 15m_20261126_140000" in _text(page)
    assert page.evaluate("window.notReloaded") is True


def test_an_out_of_range_input_is_refused_with_a_message(
    db: JobStore, ui_url: str, page: Page
) -> None:
    before = len(db.list_jobs())
    page.goto(ui_url)
    page.locator(TRIALS_FIELD).fill("20000")
    page.locator(TRIALS_FIELD).blur()
    page.get_by_role("button", name="Start Training").click()

    expect(page.get_by_text("outside the allowed range")).to_be_visible()
    time.sleep(1.0)  # a submitted form would have inserted its row by now
    assert "between 1 and 10000" in _text(page)
    assert len(db.list_jobs()) == before


def test_start_training_inserts_a_pending_row_and_cancel_ends_it(
    db: JobStore, ui_url: str, page: Page
) -> None:
    before = {job.id for job in db.list_jobs()}
    page.goto(ui_url)
    page.locator(TRIALS_FIELD).fill("7")
    page.locator(TRIALS_FIELD).blur()
    page.get_by_role("button", name="Start Training").click()

    expect(page.get_by_text("queued: 15m, 7 trials per model")).to_be_visible()
    new = [job for job in db.list_jobs() if job.id not in before]
    assert len(new) == 1, new
    row = new[0]
    assert (row.status, row.timeframe, row.n_trials, row.source) == ("pending", "15m", 7, "ui")
    page.goto(f"{ui_url}/?job={row.id}")
    page.get_by_role("button", name="Cancel", exact=True).click()

    expect(page.get_by_text(f"Job {row.id} was cancelled before it started.")).to_be_visible()
    cancelled = db.get(row.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)


def test_cancel_of_a_running_job_asks_the_trainer_to_stop(
    db: JobStore, ui_url: str, page: Page
) -> None:
    job_id = add_job(db, running_progress(n_trials=10, done=6))
    page.goto(f"{ui_url}/?job={job_id}")
    page.get_by_role("button", name="Cancel", exact=True).click()

    expect(page.get_by_text(f"Cancel requested: job {job_id} stops after")).to_be_visible()
    row = db.get(job_id)
    assert row is not None and row.cancel_requested and row.status == "running"
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)


def test_selecting_a_history_line_opens_its_job(db: JobStore, ui_url: str, page: Page) -> None:
    older = add_job(db)
    newer = add_job(db)
    page.goto(f"{ui_url}/?job={newer}")
    expect(page.get_by_text(f"Job {newer} · 15m")).to_be_visible()
    table = page.locator('[data-testid="stDataFrame"]').last
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    assert box is not None
    position = [j.id for j in db.list_jobs()].index(older)
    # The row marker column (a checkbox) is left; rows are 35 px under a 35 px header.
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 35 * position + 17)

    expect(page.get_by_text(f"Job {older} · 15m")).to_be_visible(timeout=15_000)
    assert page.evaluate("location.search") == f"?job={older}"
