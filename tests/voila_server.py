"""Start and stop the dashboard's server for the browser tests and the benchmarks.

    with serve("notebooks/dashboard.ipynb") as server:
        ...  # open server.url in a browser

Test and benchmark tooling (it drives chromium and reads /proc), kept beside the tests and
out of the package. The server is the one a class gets: python -m flowedu.app.serve (Voila
with XSRF checks on, checked websocket frames, a kernel cap). It listens on 127.0.0.1 only,
on a free port, and is always stopped at the end of the block together with every kernel
it started. Linux only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# How the tests and benchmarks drive a browser: Debian's chromium (Playwright cannot
# download its own here), headless, with no background traffic to the outside.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WIDGET = ".flowedu-canvas-widget"  # the dashboard canvas, once it is on the page
LOOP = ".flowedu-loop input"  # its loop checkbox (off when the page opens)

# Press Play unless the canvas is playing, in one step in the page: its autoplay starts
# whenever the browser keeps time, and a click just after it would pause it again.
PLAY_UNLESS_PLAYING = f"""() => {{
  if (document.querySelector('{WIDGET}').dataset.playing !== '1')
    document.querySelector('.flowedu-play').click(); }}"""
PLAYING = f"() => document.querySelector('{WIDGET}').dataset.playing === '1'"


def play(page) -> None:
    """Make the canvas play (Playwright, sync); return once it does."""
    page.evaluate(PLAY_UNLESS_PLAYING)
    page.wait_for_function(PLAYING)


# True in the page once the canvas shows frames newer than version v (page.wait_for_function's
# argument, for the sync and the async Playwright alike).
NEWER_VERSION = f"(v) => Number(document.querySelector('{WIDGET}').dataset.version) > v"


def wait_for_version_after(page, old: int) -> None:
    """Wait (Playwright, sync) until the canvas shows frames newer than version `old`."""
    page.wait_for_function(NEWER_VERSION, arg=old)


# True in the page once the canvas has drawn its first frame (window.__flowedu_first_frame_ms,
# on the page's own clock, is then the time to interactive). Wait for a loading page with
# polling=POLL_MS: Playwright's default polls on every animation frame, which makes a waiting
# page draw itself 60 times a second as no student's browser does (with 30 pages loading in
# benchmarks/load_test.py, that was most of the GPU process's CPU).
FIRST_FRAME = "window.__flowedu_first_frame_ms !== undefined"
POLL_MS = 100

# What the benchmarks read to get frames/s: frames drawn so far, and milliseconds of play
# spent moving (canvas.js keeps both; the rest at the end of a pass draws nothing).
FRAMES_AND_MOVING_MS = "[window.__flowedu_frames, window.__flowedu_moving_ms]"


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    """pid and every process below it."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += tree.get(p, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def wait_until_idle(pid: int, window: float = 1.5, busy: float = 0.15, timeout: float = 120):
    """Wait until the process tree of `pid` uses under `busy` CPU-seconds per `window`
    (e.g. until a pre-heated kernel has run the notebook); return the seconds waited."""
    start = time.perf_counter()
    before = cpu_seconds(descendants(pid))
    while time.perf_counter() - start < timeout:
        time.sleep(window)
        now = cpu_seconds(descendants(pid))
        if now - before < busy and len(descendants(pid)) > 1:
            return time.perf_counter() - start
        before = now
    raise TimeoutError(f"the Voila server stayed busy for {timeout:.0f} s")


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop Voila and every process it started (its kernels run in their own sessions)."""
    pids = descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    for p in pids:  # kernels still alive after Voila's own shutdown
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


@contextlib.contextmanager
def serve(
    notebook: str | os.PathLike,
    port: int | None = None,
    env: dict[str, str] | None = None,
    preheat: bool = True,
    timeout: float = 60.0,
    cwd: str | os.PathLike | None = None,
    args: Sequence[str] = (),
) -> Iterator[Server]:
    """Run `voila notebook` on 127.0.0.1:port until the block ends; yield a Server.

    Waits only until the port accepts connections: asking for a page would use up the
    pre-heated kernel. `env` adds environment variables (kernels inherit them); `args` adds
    command-line options (e.g. "--pool_size=4"), which override ./voila.json in `cwd`.
    """
    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook}")
    port = port or free_port()
    log = Path(tempfile.mkstemp(prefix="voila-", suffix=".log")[1])
    cmd = [
        sys.executable, "-m", "flowedu.app.serve", str(notebook),
        "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}", "--Voila.port_retries=0",
        f"--preheat_kernel={preheat}", "--strip_sources=True", *args,
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd,
            cwd=cwd or notebook.parent.parent,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}/", port, process, log)
    try:
        deadline = time.perf_counter() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Voila exited with code {process.returncode}:\n{server.log()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"Voila did not listen within {timeout:.0f} s:\n{server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        stop(process)
