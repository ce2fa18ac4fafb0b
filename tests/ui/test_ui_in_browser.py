"""The UI in a real browser: ``tjctl ui`` serves it on loopback and Debian's headless
Chromium loads it, as a user's browser would.

Needs ``/usr/bin/chromium`` (``scripts/install-chromium.sh`` installs it). Screenshots
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
from headless_chromium import CHROMIUM, Chromium

from tjcore.store import JobStore
from tjtrainer.progress import RunState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PROGRESS = '[data-testid="stProgress"] [role="progressbar"]'
CHART_DOTS = '[data-testid="stVegaLiteChart"] svg .mark-symbol.role-mark path'


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
        [sys.executable, "-m", "tjcore.cli", "ui", "--port", str(port)],
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
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-chromium.sh (as root)")
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def _text(browser: Chromium) -> str:
    return str(browser.evaluate("document.body.innerText"))


def test_the_job_view_shows_progress_scores_and_the_chart(
    db: JobStore, ui_url: str, browser: Chromium, tmp_path: Path
) -> None:
    progress = running_progress(n_trials=10, done=14)
    job_id = add_job(db, progress)
    scored = sum(1 for t in progress.trials if t.spearman is not None)

    browser.open(f"{ui_url}/?job={job_id}")
    browser.wait_for(f"document.querySelectorAll('{CHART_DOTS}').length === {scored}")
    time.sleep(0.5)  # let the last fonts and transitions settle for the picture

    assert browser.evaluate(f"document.querySelector('{PROGRESS}').ariaValueNow") == "70"
    text = _text(browser)
    assert "70% · trial 14/20 · training SHORT" in text
    assert f"Best LONG (Spearman)\n\n{progress.best_score_long:+.4f}" in text
    assert f"Best SHORT (Spearman)\n\n{progress.best_score_short:+.4f}" in text
    assert "Traceback" not in text
    shot = browser.screenshot(tmp_path / "job-view.png")
    (tmp_path / "job-view.html").write_text(
        str(browser.evaluate("document.documentElement.outerHTML"))
    )
    assert shot.stat().st_size > 20_000  # a blank page is a few KB
    if target := os.environ.get("UI_SCREENSHOT_TO"):
        shutil.copyfile(shot, target)


def test_the_job_view_follows_the_job_to_its_end_without_reloading_the_page(
    db: JobStore, ui_url: str, browser: Chromium
) -> None:
    job_id = add_job(db, running_progress(n_trials=10, done=4))
    browser.open(f"{ui_url}/?job={job_id}")
    browser.wait_for(f"document.querySelector('{PROGRESS}')?.ariaValueNow === '20'")
    browser.evaluate("window.notReloaded = true")

    db.apply_progress(job_id, running_progress(n_trials=10, done=16))

    browser.wait_for(f"document.querySelector('{PROGRESS}')?.ariaValueNow === '80'", timeout=15)
    assert browser.evaluate("window.notReloaded") is True
    assert "trial 16/20 · training SHORT" in _text(browser)

    # When the job ends, the whole page follows (badge, history) and the Cancel goes.
    done = running_progress(n_trials=10, done=20, state=RunState.COMPLETED)
    done.model_version = "15m_20261126_140000"
    db.apply_progress(job_id, done)
    browser.wait_for(
        f"document.querySelectorAll('{PROGRESS}').length === 1"
        f" && document.querySelector('{PROGRESS}').ariaValueNow === '100'"
        " && !document.body.innerText.includes('Cancel')",
        timeout=15,
    )
    assert "Model version 15m_20261126_140000" in _text(browser)
    assert browser.evaluate("window.notReloaded") is True


def test_an_out_of_range_input_is_refused_with_a_message(
    db: JobStore, ui_url: str, browser: Chromium
) -> None:
    before = len(db.list_jobs())
    browser.open(ui_url)
    field = "document.querySelector('[aria-label=\"Trials per model\"]')"
    browser.wait_for(field)
    browser.evaluate(f"{field}.focus(); {field}.select()")
    browser.call("Input.insertText", text="20000")
    browser.evaluate(f"{field}.blur()")
    browser.evaluate(
        "document.querySelector('[data-testid=\"stBaseButton-primaryFormSubmit\"]').click()"
    )

    browser.wait_for("document.body.innerText.includes('outside the allowed range')")
    time.sleep(1.0)  # a submitted form would have inserted its row by now
    assert "between 1 and 10000" in _text(browser)
    assert len(db.list_jobs()) == before


def _click(browser: Chromium, x: float, y: float) -> None:
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def test_selecting_a_history_line_opens_its_job(
    db: JobStore, ui_url: str, browser: Chromium
) -> None:
    older = add_job(db)
    newer = add_job(db)
    browser.open(f"{ui_url}/?job={newer}")
    browser.wait_for(f"document.body.innerText.includes('Job {newer} · 15m')")
    table = "[...document.querySelectorAll('[data-testid=\"stDataFrame\"]')].at(-1)"
    browser.wait_for(table)
    box = browser.evaluate(
        f"(() => {{ const t = {table}; t.scrollIntoView({{block: 'center'}});"
        " const r = t.getBoundingClientRect(); return [r.left, r.top]; })()"
    )
    position = [j.id for j in db.list_jobs()].index(older)
    # The row marker column (a checkbox) is left; rows are 35 px under a 35 px header.
    _click(browser, box[0] + 15, box[1] + 35 + 35 * position + 17)

    browser.wait_for(f"document.body.innerText.includes('Job {older} · 15m')", timeout=15)
    assert str(browser.evaluate("location.search")) == f"?job={older}"
