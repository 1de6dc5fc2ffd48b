"""Faults a class will meet: a kernel that dies, a visitor who tries to run code or read
files, a training run stopped half-way. Nothing may be lost, and the page must say so.

One Voila server (and one browser) serves the whole module, as in test_dashboard_browser.py;
the browser tests are skipped only when /usr/bin/chromium is missing. The checkpoint writes
are atomic: that is tests/test_checkpoint.py's subject, not repeated here. The last tests
keep each visitor's kernel small (a class runs one kernel per student).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from voila_server import CHROMIUM, CHROMIUM_ARGS, WIDGET, play, wait_for_version_after

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"
TIMEOUT_MS = 60_000

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); "
    "Playwright cannot download its own browser here",
)


@pytest.fixture(scope="module")
def server():
    from voila_server import serve

    with serve(NOTEBOOK, cwd=ROOT) as server:
        yield server


@pytest.fixture(scope="module")
def page(server):
    """The dashboard, opened once; tests that break it reload it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url, timeout=TIMEOUT_MS)
            wait_until_animating(page)
            yield page
        finally:
            browser.close()


def wait_until_animating(page) -> None:
    """Wait for the frames to arrive and for the canvas to draw new ones, playing."""
    page.locator(f"{WIDGET}[data-version]").wait_for()
    play(page)
    drawn = page.evaluate("window.__flowedu_frames")
    page.wait_for_function("(n) => window.__flowedu_frames > n + 10", arg=drawn)


def kernel_id(page) -> str:
    """The id of the page's kernel: Voila writes it into the page's configuration."""
    return re.search(r'"kernelId": "([0-9a-f-]{36})"', page.content()).group(1)


def kernel_process(server, kid: str):
    """The kernel process of kernel `kid`: its command line names its connection file."""
    import psutil

    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if f"kernel-{kid}.json" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise LookupError(f"no process for kernel {kid}")


# ----------------------------------------------------------------------------- kernel death


@needs_chromium
def test_a_dead_kernel_is_reported_and_a_reload_brings_the_page_back(server, page):
    old = kernel_id(page)
    assert page.evaluate("window.__flowedu_connection") == "ok"
    assert page.evaluate("window.__flowedu_watch") == "comm+kernel"  # also a lost server
    assert page.locator(".flowedu-lost").count() == 0
    kernel_process(server, old).kill()  # SIGKILL: no goodbye from the kernel

    banner = page.locator(".flowedu-lost")
    banner.wait_for(state="visible", timeout=30_000)
    assert "reload the page" in banner.inner_text().lower()
    assert banner.locator("button", has_text="Reload").is_visible()
    assert page.evaluate("window.__flowedu_connection") == "lost"

    page.locator(".flowedu-reload").click()  # the banner's own button
    page.wait_for_load_state()
    wait_until_animating(page)
    assert kernel_id(page) != old  # a fresh kernel, not the killed one restarted blank
    assert page.locator(".flowedu-lost").count() == 0
    assert page.evaluate("window.__flowedu_connection") == "ok"
    # The controls reach the new kernel: a new dataset gives new frames.
    version = int(page.locator(WIDGET).get_attribute("data-version"))
    page.locator(".flowedu-app select").first.select_option("8gaussians")
    wait_for_version_after(page, version)


# ----------------------------------------------------------------------------- no code, no files


async def _send_on_kernel_websocket(url: str, messages: list[dict], wait: float) -> list[dict]:
    """Send messages on a kernel's websocket as a page does (Jupyter's binary "v1" protocol,
    the one browsers use); return the messages that came back within `wait` seconds."""
    from jupyter_server.services.kernels.connection.base import (
        deserialize_msg_from_ws_v1,
        serialize_msg_to_ws_v1,
    )
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(url, subprotocols=["v1.kernel.websocket.jupyter.org"])
    for msg in messages:
        parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata")]
        parts.append(json.dumps(msg["content"]).encode())
        await ws.write_message(serialize_msg_to_ws_v1(parts, "shell"), binary=True)
    received, deadline = [], time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            raw = await asyncio.wait_for(ws.read_message(), left)
        except asyncio.TimeoutError:
            break
        if raw is None:
            break
        _, parts = deserialize_msg_from_ws_v1(raw)
        header, parent = json.loads(parts[0]), json.loads(parts[1])
        received.append({"msg_type": header["msg_type"], "parent_header": parent})
    ws.close()
    return received


def _message(msg_type: str, content: dict, session: str) -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": session,
            "username": "visitor",
            "version": "5.3",
            "date": "2025-01-01T00:00:00Z",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
    }


@needs_chromium
def test_the_kernel_ignores_code_sent_from_a_visitors_browser(server, page, tmp_path):
    """Voila passes only widget (comm) and kernel-info messages to a kernel: an
    execute_request written by hand on the page's own websocket is dropped unread."""
    marker = tmp_path / "ran.txt"
    session = uuid.uuid4().hex
    code = f"open({str(marker)!r}, 'w').write('visitor code ran')"
    execute = _message("execute_request", {"code": code, "silent": False}, session)
    info = _message("kernel_info_request", {}, session)
    url = (
        f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id(page)}/channels?session_id={session}"
    )
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's loop
        coro = _send_on_kernel_websocket(url, [execute, info], wait=4.0)
        replies = pool.submit(asyncio.run, coro).result()
    types = [m["msg_type"] for m in replies if m["parent_header"].get("session") == session]
    assert "kernel_info_reply" in types  # the websocket works: allowed messages get answers
    assert "execute_reply" not in types and "execute_input" not in types
    assert not marker.exists()
    assert '"execute_request", which is not allowed' in server.log()


@pytest.mark.parametrize(
    "path",
    [
        "voila/files/notebooks/dashboard.ipynb",  # the notebook's source
        "voila/files/flowedu/checkpoint.py",  # the package's source
        "voila/files/voila.json",
        "voila/files/flowedu/pretrained/realnvp/moons.safetensors",
        "voila/files/../pyproject.toml",
        "voila/files/%2e%2e/%2e%2e/etc/passwd",
        "api/contents/notebooks",  # Voila has no contents API
        "api/kernels",  # nor a list of every visitor's kernel
    ],
)
def test_the_server_serves_no_source_and_no_file_outside_its_allowlist(server, path):
    request = urllib.request.Request(server.url + path, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, b""
    assert status in (403, 404), (path, status, body[:200])


# ----------------------------------------------------------------------------- training


def test_a_training_run_stopped_half_way_leaves_the_shown_flow_bit_for_bit(tmp_path, monkeypatch):
    """test_dashboard_frames checks that the same flow object stays; here its weights, the
    frames on screen and the checkpoint on disk are compared byte for byte."""
    import torch

    from flowedu import checkpoint, datasets, pretrained_flows
    from flowedu.app import Dashboard
    from flowedu.realnvp import realnvp

    torch.manual_seed(0)
    x = datasets.sample("moons", 2000, seed=1)
    flow = realnvp(n_layers=4, hidden=(16, 16), standardize=(x.mean(0).tolist(), x.std(0).tolist()))
    path = tmp_path / "realnvp" / "moons.safetensors"
    checkpoint.save(path, flow, {"dataset": "moons"})
    on_disk = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv(pretrained_flows.ENV_VAR, str(tmp_path))

    d = Dashboard(n_points=500, train_steps=1000)
    shown = d.flow_for("moons")[0]
    weights = _weights(shown)
    points, version = bytes(d.canvas.points), d.canvas.version
    trainer = d.train(device="cpu", wait=True)
    deadline = time.monotonic() + 60
    while d.progress.value < trainer.report_every and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d.progress.value >= trainer.report_every, "training made no progress in 60 s"
    d.train()  # the Stop button
    result = trainer.join(timeout=60)
    assert result.status == "stopped" and 0 < d.progress.value < trainer.steps

    now, _, source = d.flow_for("moons")
    assert now is shown and source == "shipped"
    for before, after in zip(weights, _weights(now), strict=True):
        np.testing.assert_array_equal(before, after)
    assert d.canvas.version == version and bytes(d.canvas.points) == points
    assert hashlib.sha256(path.read_bytes()).hexdigest() == on_disk
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "moons.safetensors"
    ]  # no stray temp file


def _weights(flow) -> list:
    """Copies of every weight of a shown flow (a NumPy flow: its layers' MLPs, mean, std)."""
    out = []
    for layer in flow.layers:
        out += [np.array(a) for a in vars(layer).values() if isinstance(a, np.ndarray)]
        if hasattr(layer, "net"):
            out += [np.array(a) for pair in layer.net.layers for a in pair]
    return out


# ----------------------------------------------------------------------------- small kernels


def test_the_written_out_palette_is_the_computed_one():
    """frames.LOGDET_PALETTE spares each visitor's kernel the import of matplotlib."""
    from flowedu.app import frames as fr

    assert fr.LOGDET_PALETTE == fr.logdet_palette(fr.LOGDET_BINS)


def test_a_dashboards_kernel_does_not_import_matplotlib(tmp_path):
    """One kernel per visitor: matplotlib (and PIL with it) cost each one about 10 MB of its
    own memory and 0.3 s of start-up, for nothing the dashboard draws."""
    import subprocess
    import sys

    code = (
        "import sys; from flowedu.app import Dashboard; d = Dashboard(n_points=500); "
        "d.heatmap.value = True; d.colour.value = 'logdet'; "
        "print(sorted(m for m in ('matplotlib', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
