"""How the class server runs its kernels (flowedu.app.serve): at a lower CPU priority than the
web server, with one BLAS/OpenMP thread each, and a pre-heated pool that is refilled only
once every visitor has connected, the server has been quiet for a while and the CPU is not
saturated."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from voila_server import descendants, serve, wait_until_idle

from flowedu.app.serve import KERNEL_NICENESS, ONE_THREAD, QUIET_SECONDS, V1_PROTOCOL, IdleCPU

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


def take_a_kernel(server) -> str:
    """GET the page as a visitor does (it takes a pooled kernel); the kernel's id."""
    page = get(server.url).decode()
    assert "application/vnd.jupyter.widget-view+json" in page
    return re.search(r'"kernelId": "([0-9a-f-]{36})"', page).group(1)


@contextlib.contextmanager
def pooled_server(size: int):
    """A class server whose pool of `size` kernels is full and idle."""
    with serve(NOTEBOOK, cwd=ROOT, args=[f"--pool_size={size}"], timeout=120) as server:
        wait_for_kernels(server.process.pid, size)
        wait_until_idle(server.process.pid)
        yield server


@contextlib.asynccontextmanager
async def connected(server, kernel_id: str):
    """The kernel's websocket, open as the page's scripts open it, for the block."""
    from tornado.websocket import websocket_connect

    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?session_id=test"
    ws = await websocket_connect(url, subprotocols=[V1_PROTOCOL])
    try:
        yield ws
    finally:
        ws.close()


async def wait_for_kernels_async(voila_pid: int, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(kernel_pids(voila_pid)) < n:
        assert time.monotonic() < deadline, f"fewer than {n} kernels after {timeout:.0f} s"
        await asyncio.sleep(0.25)


def test_a_taken_kernel_is_replaced_only_once_the_server_is_quiet():
    with pooled_server(2) as server:
        pid = server.process.pid
        kernel_id = take_a_kernel(server)

        async def visit() -> None:
            async with connected(server, kernel_id):
                # Visitors keep asking for files: the pool waits (one taken, one pooled).
                busy_until = time.monotonic() + 2 * QUIET_SECONDS + 2
                while time.monotonic() < busy_until:
                    await asyncio.to_thread(get, server.url + "voila/static/voila.js")
                    assert len(kernel_pids(pid)) == 2
                    await asyncio.sleep(0.3)
                # Quiet now: the taken kernel is replaced.
                await wait_for_kernels_async(pid, 3, timeout=QUIET_SECONDS + 60)

        asyncio.run(visit())


def test_the_pool_waits_for_a_page_that_has_not_connected_to_its_kernel_yet():
    """A browser that is still loading the page's scripts sends nothing for a while; the
    kernel it took is not connected yet, and the refill waits for it."""
    with pooled_server(1) as server:
        pid = server.process.pid
        kernel_id = take_a_kernel(server)
        time.sleep(2 * QUIET_SECONDS + 2)  # quiet, but the visitor has not connected
        assert len(kernel_pids(pid)) == 1

        async def visit() -> None:
            async with connected(server, kernel_id):  # connected: the pool refills
                await wait_for_kernels_async(pid, 2, timeout=QUIET_SECONDS + 60)

        asyncio.run(visit())


def test_idle_cpu_is_measured_between_calls():
    idle = IdleCPU()
    assert idle.cores() is None  # nothing to compare with yet
    time.sleep(0.3)
    cores = idle.cores()
    assert cores is not None and 0 <= cores <= os.cpu_count()


def test_the_pool_is_not_refilled_while_the_cpu_is_busy():
    with pooled_server(1) as server:
        pid = server.process.pid
        kernel_id = take_a_kernel(server)

        async def visit() -> None:
            async with connected(server, kernel_id):
                burn = "while True: pass"
                burners = [
                    subprocess.Popen([sys.executable, "-c", burn]) for _ in range(os.cpu_count())
                ]
                try:  # connected and quiet, but no core is idle: the pool waits
                    await asyncio.sleep(2 * QUIET_SECONDS + 2)
                    assert len(kernel_pids(pid)) == 1
                finally:
                    for b in burners:
                        b.kill()
                        b.wait()
                # idle again: the pool refills
                await wait_for_kernels_async(pid, 2, timeout=QUIET_SECONDS + 60)

        asyncio.run(visit())
