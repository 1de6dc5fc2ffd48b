"""The class server's page before the dashboard is up: a loading screen that stands still.

Voila's own spins its logo with a CSS animation, and an animation makes the browser draw and
compose the page 60 times a second for as long as it loads; with a class's pages loading at
once that was CPU taken from the loading itself (flowedu/app/templates/spinner.macro.html.j2).
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from voila_server import serve

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"


def test_the_loading_screen_says_what_is_loading_and_does_not_move():
    with serve(NOTEBOOK, cwd=ROOT, args=["--pool_size=1"], timeout=120) as server:
        with urllib.request.urlopen(server.url, timeout=120) as response:
            page = response.read().decode()
    screen = re.search(r'<div id="loading".*?</h2>', page, re.S)
    assert screen, "the page has no loading screen"
    assert "flowedu-loading-mark" in screen.group(0)
    assert "Loading the dashboard" in screen.group(0)
    assert "@keyframes" not in page and not re.search(r"\banimation\s*:", page)


def test_a_chunk_list_that_cannot_be_read_stops_the_server_with_what_to_do(tmp_path):
    missing = tmp_path / "no_such_list.txt"
    with pytest.raises(RuntimeError) as stopped:
        with serve(NOTEBOOK, cwd=ROOT, env={"FLOWEDU_PAGE_CHUNKS": str(missing)}, timeout=60):
            pass
    assert f"FLOWEDU_PAGE_CHUNKS={missing}: cannot read" in str(stopped.value)
    assert 'set it to "" to send no chunks' in str(stopped.value)
