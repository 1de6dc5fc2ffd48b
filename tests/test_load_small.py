"""A small class on the real server: benchmarks/load_test.py with N = 4 (one real page, three
websocket sessions), bounded in time. The full benchmark (N = 10 and 30) prints the README's
table; this checks that its measurement works and that four arrivals all get a working page.
Speed figures are printed by the benchmark, not asserted here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from voila_server import CHROMIUM

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_four_visitors_at_once_all_get_an_animating_page():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "load_test.py"), "--sessions", "4"]
    cmd += ["--pages", "1", "--play-seconds", "3", "--timeout", "240"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "| 4 (1 pages) | 4/4 |" in text, text[-3000:]
    assert "FAILED" not in text and "Voila log: 0 error/timeout lines" in text, text[-3000:]
    fps = re.search(r"\| (\d+) / (\d+) \| [\d.]+ / [\d.]+ \|\n", text)
    assert fps and int(fps.group(2)) > 0, text[-3000:]  # the real page drew frames
    assert re.search(r"[\d.]+ s per session", text), text[-3000:]
