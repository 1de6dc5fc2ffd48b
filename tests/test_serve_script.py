"""scripts/serve_dashboard.sh (what `make dashboard` runs): CLASS_SIZE pre-heats that many
kernels, each having run the notebook, and a bad value says what to pass."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from voila_server import descendants, free_port, stop

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "serve_dashboard.sh"


def kernels(pid: int) -> int:
    count = 0
    for p in descendants(pid):
        try:
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        count += bool(re.search(r"kernel-[0-9a-f-]{36}\.json", cmdline))
    return count


def test_class_size_preheats_that_many_kernels_and_no_more():
    env = {**os.environ, "CLASS_SIZE": "3", "PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    process = subprocess.Popen(
        [str(SCRIPT), str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while kernels(process.pid) < 3 and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.5)
        assert kernels(process.pid) == 3
        time.sleep(3)  # the pool stays at its size
        assert kernels(process.pid) == 3
    finally:
        with_group = os.getpgid(process.pid)
        stop(process)
        try:
            os.killpg(with_group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_bad_class_size_says_what_to_pass():
    env = {**os.environ, "CLASS_SIZE": "thirty"}
    out = subprocess.run([str(SCRIPT), "1"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "CLASS_SIZE must be a whole number of students, got 'thirty'" in out.stderr
