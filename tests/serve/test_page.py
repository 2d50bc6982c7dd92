"""The page at ``/`` in a real browser: Debian's chromium driven by Playwright (headless).

No browser is downloaded: Playwright launches ``/usr/bin/chromium`` (``apt-get install
chromium``; ``.ci/run`` installs it). Skipped where either is missing.
"""

from __future__ import annotations

import shutil

import pytest

from siamtext.serve import create_app
from tests.serve.process import ThreadedServer

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def test_duplicates_and_intents_in_the_page(browser, tiny_model, intents, tmp_path):
    app = create_app(tiny_model, index=tmp_path / "idx", intents=intents)
    with ThreadedServer(app) as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("#info:has-text('server ready')")

        # store a question, then check it: the nearest stored question is itself, score 1
        page.fill("#dup-text", "How do I reset my password?")
        page.click("#dup-store")
        page.wait_for_selector("#dup-result:has-text('Stored as id 0')")
        page.click("#dup-check")
        verdict = page.wait_for_selector("#dup-verdict")
        assert verdict.inner_text().startswith("Duplicate")
        row = page.inner_text("#dup-result table tr:nth-child(2)")
        assert "How do I reset my password?" in row and "1.000" in row

        # a new class changes the prediction at once
        page.fill("#intent-text", "quantum flux capacitor")
        page.click("#intent-predict")
        before = page.wait_for_selector("#intent-label").inner_text()
        assert "physics" not in before
        page.fill("#example-text", "quantum flux capacitor")
        page.fill("#example-label", "physics")
        page.click("#example-add")
        page.wait_for_selector("#example-result:has-text('Added to physics')")
        page.click("#intent-predict")
        page.wait_for_selector("#intent-label:has-text('Intent: physics')")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

        # an error is shown as the server's message, not a blank
        page.fill("#example-label", "unknown")
        page.click("#example-add")
        page.wait_for_selector("#example-result .error:has-text('422')")
        page.close()
