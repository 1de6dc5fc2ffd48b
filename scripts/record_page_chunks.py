"""Write flowedu/app/page_chunks.txt: the chunks of Voila's front end the dashboard loads.

    .venv/bin/python scripts/record_page_chunks.py

Opens the dashboard once in Debian's chromium, served with no chunks bundled
(FLOWEDU_PAGE_CHUNKS=""), and lists the voila/static/NNNN.voila.js files the page asked for,
in order. Run it again after Voila is upgraded: tests/test_dashboard_browser.py fails when
the page asks for a chunk the list lacks (the page still works; it only loads slower).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # voila_server.py

from voila_server import CHROMIUM, CHROMIUM_ARGS, WIDGET, serve  # noqa: E402

from flowedu.app.serve import CHUNK_NAME, PAGE_CHUNKS  # noqa: E402

CHUNK = re.compile(rf"/voila/static/({CHUNK_NAME.pattern})(\?|$)")
HEADER = """\
# The chunks of Voila's front end (voila/static/NNNN.voila.js) that the dashboard's page
# loads, in the order it asked for them. flowedu.app.serve sends them as one file before
# Voila's own script. Written by scripts/record_page_chunks.py (Voila {version}); run it
# again after Voila is upgraded (tests/test_dashboard_browser.py fails when the page asks
# for a chunk not here).
"""


def record() -> list[str]:
    from playwright.sync_api import sync_playwright

    names: list[str] = []
    notebook = ROOT / "notebooks" / "dashboard.ipynb"
    with serve(notebook, cwd=ROOT, env={"FLOWEDU_PAGE_CHUNKS": ""}) as server:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.on("request", lambda r: names.append(m[1]) if (m := CHUNK.search(r.url)) else 0)
            page.goto(server.url, timeout=120_000)
            page.locator(f"{WIDGET}[data-version]").wait_for(timeout=120_000)
            page.wait_for_timeout(2000)  # anything asked for after the first frames
            browser.close()
    return list(dict.fromkeys(names))


def main() -> None:
    import voila

    if not CHROMIUM.exists():
        sys.exit(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    names = record()
    if not names:
        sys.exit("the page asked for no Voila chunks: is this still Voila's lab template?")
    PAGE_CHUNKS.write_text(HEADER.format(version=voila.__version__) + "\n".join(names) + "\n")
    print(f"{len(names)} chunks written to {PAGE_CHUNKS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
