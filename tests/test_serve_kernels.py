"""How the class server runs its kernels (flowedu.app.serve): at a lower CPU priority than the
web server, with one BLAS/OpenMP thread each, and a pre-heated pool that is refilled only
once the server has been quiet for a while."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from pathlib import Path

from voila_server import descendants, serve, wait_until_idle

from flowedu.app.serve import KERNEL_NICENESS, ONE_THREAD, QUIET_SECONDS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"


def kernel_pids(voila_pid: int) -> list[int]:
    pids = []
    for p in descendants(voila_pid):
        try:
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if re.search(r"kernel-[0-9a-f-]{36}\.json", cmdline):
            pids.append(p)
    return pids


def wait_for_kernels(voila_pid: int, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while len(kernel_pids(voila_pid)) < n:
        assert time.monotonic() < deadline, f"fewer than {n} kernels after {timeout:.0f} s"
        time.sleep(0.25)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def test_kernels_run_below_the_web_server_with_one_thread_each(monkeypatch):
    for name in ONE_THREAD:  # as on a machine where nobody set them
        monkeypatch.delenv(name, raising=False)
    with serve(NOTEBOOK, cwd=ROOT, args=["--pool_size=2"], timeout=120) as server:
        wait_for_kernels(server.process.pid, 2)
        assert os.getpriority(os.PRIO_PROCESS, server.process.pid) == os.getpriority(
            os.PRIO_PROCESS, 0
        )  # the web server keeps this test's priority
        for pid in kernel_pids(server.process.pid):
            assert os.getpriority(os.PRIO_PROCESS, pid) == KERNEL_NICENESS
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            for name in ONE_THREAD:
                assert f"{name}=1".encode() in environ, name


def test_a_taken_kernel_is_replaced_only_once_the_server_is_quiet():
    with serve(NOTEBOOK, cwd=ROOT, args=["--pool_size=2"], timeout=120) as server:
        pid = server.process.pid
        wait_for_kernels(pid, 2)
        wait_until_idle(pid)
        assert b"application/vnd.jupyter.widget-view+json" in get(server.url)  # takes one
        # Visitors keep asking for files: the pool waits (one taken kernel, one pooled).
        busy_until = time.monotonic() + 2 * QUIET_SECONDS + 2
        while time.monotonic() < busy_until:
            get(server.url + "voila/static/voila.js")
            assert len(kernel_pids(pid)) == 2
            time.sleep(0.3)
        # Quiet now: the taken kernel is replaced.
        wait_for_kernels(pid, 3, timeout=QUIET_SECONDS + 60)
