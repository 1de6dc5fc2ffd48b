"""canvas.js's wait before the autoplay, run in Debian's headless chromium on a blank page.

whenTheBrowserKeepsTime(start, options) calls start() once timers fire on time again: a
page still busy (its own scripts, other tabs on the same cores) shows no animation yet. The
busy page here is a loop that holds the page's only thread 200 ms at a time.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from voila_server import CHROMIUM, CHROMIUM_ARGS

CANVAS_JS = Path(__file__).resolve().parents[1] / "flowedu" / "app" / "canvas.js"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)

# Resolves to the ms after which start() was called, or null if it was not within `within`.
RUN = """async ([source, options, busyMs, within]) => {
  const { whenTheBrowserKeepsTime } = await import(source);
  let busy = busyMs > 0;
  const spin = () => {
    if (!busy) return;
    const until = performance.now() + busyMs;
    while (performance.now() < until) {}
    setTimeout(spin, 0);
  };
  spin();
  setTimeout(() => { busy = false; }, busyMs > 0 ? 2000 : 0);  // busy for the first 2 s
  const began = performance.now();
  return await new Promise((resolve) => {
    const cancel = whenTheBrowserKeepsTime(() => resolve(performance.now() - began), options);
    setTimeout(() => { cancel(); resolve(null); }, within);
  });
}"""
OPTIONS = {"probeMs": 50, "onTimeMs": 5, "probes": 3, "maxWaitMs": 60_000}


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    source = "data:text/javascript;base64," + base64.b64encode(CANVAS_JS.read_bytes()).decode()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            blank = browser.new_page()
            blank.source = source
            yield blank
        finally:
            browser.close()


def test_an_idle_page_starts_at_once(page):
    waited = page.evaluate(RUN, [page.source, OPTIONS, 0, 5000])
    assert waited is not None and waited < 1000  # three probes of 50 ms, and some slack


def test_a_busy_page_starts_only_once_it_is_free_again(page):
    waited = page.evaluate(RUN, [page.source, OPTIONS, 200, 10_000])
    assert waited is not None and 2000 <= waited < 4000


def test_a_page_busy_for_longer_than_the_longest_wait_starts_anyway(page):
    waited = page.evaluate(RUN, [page.source, {**OPTIONS, "maxWaitMs": 1000}, 200, 10_000])
    assert waited is not None and 1000 <= waited < 2000
