"""The class server's safety: XSRF checks on, malformed websocket frames, the kernel cap, the
class password (flowedu.app.serve, which scripts/serve_dashboard.sh and these tests run).

Browser tests are skipped only when /usr/bin/chromium is missing; the rest needs no browser.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from voila_server import (
    CHROMIUM,
    CHROMIUM_ARGS,
    WIDGET,
    cpu_seconds,
    descendants,
    play,
    serve,
    wait_for_version_after,
)

from flowedu.app.serve import V1_PROTOCOL, frame_problem

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"
TIMEOUT_MS = 60_000
KERNEL_ID = re.compile(r'"kernelId": "([0-9a-f-]{36})"')

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); "
    "Playwright cannot download its own browser here",
)


def v1_frame(parts: list[bytes], channel: str = "shell") -> bytes:
    from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

    return serialize_msg_to_ws_v1(parts, channel)


def kernel_info_parts(session: str) -> list[bytes]:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "kernel_info_request",
        "session": session,
        "username": "visitor",
        "version": "5.3",
        "date": "2025-01-01T00:00:00Z",
    }
    return [json.dumps(x).encode() for x in (header, {}, {}, {})]


GOOD = v1_frame(kernel_info_parts("s"))
# The frames a browser never sends, each with what it is.
MALFORMED = {
    "v1, 2^62 offsets announced in 16 bytes": struct.pack("<QQ", 2**62, 0),
    "v1, 2^40 offsets announced, frame of 4 KB": struct.pack("<Q", 2**40) + bytes(4096),
    "v1, truncated to half": GOOD[: len(GOOD) // 2],
    "v1, truncated inside its offsets": GOOD[:20],
    "v1, 3 bytes": b"\x01\x02\x03",
    "v1, offsets going backwards": GOOD[:16] + struct.pack("<Q", 10**6) + GOOD[24:],
    "v1, a text frame": "hello",
    "legacy, binary with 2^30 buffers": ("legacy", struct.pack("!I", 2**30) + bytes(64)),
    "legacy, binary, negative count": ("legacy", struct.pack("!i", -5) + bytes(16)),
    "legacy, truncated JSON": ("legacy", '{"header": {"msg_type": "kernel_info_req'),
}


# ----------------------------------------------------------------------------- no server


def test_frame_problem_accepts_what_the_browser_sends_and_names_each_fault():
    assert frame_problem(GOOD, V1_PROTOCOL) is None
    with_buffers = v1_frame([*kernel_info_parts("s"), b"\x00" * 100, b"\x01" * 3], "shell")
    assert frame_problem(with_buffers, V1_PROTOCOL) is None
    assert frame_problem('{"header": {}}', None) is None  # legacy JSON text: jupyter's own
    for name, frame in MALFORMED.items():
        protocol = None if isinstance(frame, tuple) else V1_PROTOCOL
        payload = frame[1] if isinstance(frame, tuple) else frame
        problem = frame_problem(payload, protocol)
        if name == "legacy, truncated JSON":
            assert problem is None  # text: left to the parser, whose error closes the socket
        else:
            assert problem, name


def test_the_frame_check_is_fast_on_a_huge_count():
    start = time.perf_counter()
    for _ in range(1000):
        frame_problem(MALFORMED["v1, 2^62 offsets announced in 16 bytes"], V1_PROTOCOL)
    assert time.perf_counter() - start < 1.0


def test_no_xsrf_switch_anywhere_in_the_served_configuration():
    for path in [ROOT / "voila.json", ROOT / "scripts" / "serve_dashboard.sh"]:
        assert "disable_check_xsrf" not in path.read_text(), path


def _launch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "flowedu.app.serve", str(NOTEBOOK), "--no-browser", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_serving_beyond_localhost_without_a_password_is_refused():
    out = _launch("--Voila.ip=0.0.0.0", "--port=1")
    assert out.returncode != 0
    assert "without a class password" in out.stderr + out.stdout


def test_disable_check_xsrf_is_refused():
    out = _launch("--Voila.tornado_settings={'disable_check_xsrf': True}", "--port=1")
    assert out.returncode != 0
    assert "disable_check_xsrf" in out.stderr + out.stdout


def test_a_bad_kernel_cap_says_what_to_set():
    out = _launch("--port=1", env={"FLOWEDU_MAX_KERNELS": "lots"})
    assert out.returncode != 0 and "FLOWEDU_MAX_KERNELS must be a positive integer" in (
        out.stderr + out.stdout
    )


# ----------------------------------------------------------------------------- HTTP only


class Visitor:
    """A browser-like HTTP client with its own cookies."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str = "") -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=120) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def post(self, path: str, form: dict) -> int:
        data = urllib.parse.urlencode(form).encode()
        try:
            with self.opener.open(self.base + path, data=data, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code


def kernel_ids(server) -> set[str]:
    """The kernels the server runs now: each kernel's command line names its id."""
    import psutil

    found = set()
    for p in descendants(server.process.pid):
        try:
            m = re.search(r"kernel-([0-9a-f-]{36})\.json", " ".join(psutil.Process(p).cmdline()))
        except psutil.Error:
            continue
        if m:
            found.add(m.group(1))
    return found


def wait_for(condition, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def test_class_password_cap_and_xsrf_checked_shutdown():
    """One server, --token and a cap of one kernel: no token, no page; the second visitor
    gets the class-full page; a shutdown without the XSRF token is refused, with it a place
    frees up and the next visitor gets in."""
    env = {"FLOWEDU_MAX_KERNELS": "1"}
    with serve(NOTEBOOK, env=env, cwd=ROOT, args=["--token=class-secret"]) as server:
        stranger = Visitor(server.url)
        status, body = stranger.get()
        assert status in (401, 403) or "login" in body.lower(), status
        assert KERNEL_ID.search(body) is None

        first = Visitor(server.url)
        status, body = first.get("?token=class-secret")
        assert status == 200, body[:300]
        kid = KERNEL_ID.search(body).group(1)
        xsrf = first.cookie("_xsrf")
        assert xsrf, "the page must set the _xsrf cookie (its unload beacon sends it)"

        second = Visitor(server.url)
        status, body = second.get("?token=class-secret")
        assert status == 503 and "The class is full" in body and "Try again in a minute" in body

        shutdown = f"voila/api/shutdown/{kid}"
        assert first.post(shutdown, {}) == 403  # XSRF checks are on
        assert kid in kernel_ids(server)
        assert first.post(shutdown, {"_xsrf": xsrf}) == 204  # what the page's beacon sends
        assert wait_for(lambda: kid not in kernel_ids(server), 10)

        status, body = second.get("?token=class-secret")
        assert status == 200 and KERNEL_ID.search(body), body[:300]

        # Content-hashed static files are cached for good; others are revalidated.
        from flowedu.app.serve import HASHED_NAME, IMMUTABLE

        share = Path(sys.prefix) / "share" / "jupyter" / "voila" / "labextensions"
        files = sorted(share.glob("@voila-dashboards/widgets-manager8/static/*.js"))
        hashed = next(f for f in files if HASHED_NAME.search(f.name))
        for path, cached in [
            (hashed, True),
            (share / "@voila-dashboards/widgets-manager8/package.json", False),
        ]:
            url = f"{server.url}voila/labextensions/{path.relative_to(share)}"
            with urllib.request.urlopen(url, timeout=30) as r:
                assert (r.headers.get("Cache-Control") == IMMUTABLE) == cached, (path, r.headers)


# ----------------------------------------------------------------------------- browser


async def _attack(url: str, frame, protocol: str | None, wait: float) -> str:
    """Send one frame on a kernel websocket; return what happened to the socket."""
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(url, subprotocols=[protocol] if protocol else None)
    await ws.write_message(frame, binary=isinstance(frame, bytes))
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(ws.read_message(), left)
        except asyncio.TimeoutError:
            break
        if message is None:
            return "closed"
    ws.close()
    return "open"


@pytest.fixture(scope="module")
def page_server():
    with serve(NOTEBOOK, cwd=ROOT) as server:
        yield server


@pytest.fixture(scope="module")
def browser(page_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, timeout=TIMEOUT_MS)
    page.locator(f"{WIDGET}[data-version]").wait_for()
    return page


def animating(page, frames: int = 10, timeout_ms: int = 10_000) -> None:
    play(page)
    drawn = page.evaluate("window.__flowedu_frames")
    page.wait_for_function(
        "(n) => window.__flowedu_frames > n", arg=drawn + frames, timeout=timeout_ms
    )


@needs_chromium
def test_reloading_five_times_leaves_no_kernel_behind(page_server, browser):
    page = open_page(browser, page_server.url)
    seen = [KERNEL_ID.search(page.content()).group(1)]
    for _ in range(5):
        page.reload()
        page.locator(f"{WIDGET}[data-version]").wait_for()
        seen.append(KERNEL_ID.search(page.content()).group(1))
    assert len(set(seen)) == 6  # a fresh kernel for each load
    old = set(seen[:-1])
    # Each unload's beacon shut its kernel down: none of the five is left after a few s.
    assert wait_for(lambda: not (old & kernel_ids(page_server)), 10), old & kernel_ids(page_server)
    assert seen[-1] in kernel_ids(page_server)
    animating(page)
    page.close()


@needs_chromium
def test_malformed_frames_close_their_socket_and_everybody_else_is_served(page_server, browser):
    victim = open_page(browser, page_server.url)
    animating(victim)
    kid = KERNEL_ID.search(victim.content()).group(1)
    url = f"ws://127.0.0.1:{page_server.port}/api/kernels/{kid}/channels?session_id=attacker"
    outcomes = {}
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's loop
        for name, frame in MALFORMED.items():
            protocol = None if isinstance(frame, tuple) else V1_PROTOCOL
            payload = frame[1] if isinstance(frame, tuple) else frame
            outcomes[name] = pool.submit(asyncio.run, _attack(url, payload, protocol, 5)).result()
    assert outcomes == dict.fromkeys(MALFORMED, "closed")

    # The server's CPU is idle again (no loop left spinning over a huge count) ...
    pids = [page_server.process.pid]
    before = cpu_seconds(pids)
    time.sleep(2.0)
    assert cpu_seconds(pids) - before < 0.5
    # ... the open page still animates and its kernel still answers ...
    animating(victim)
    version = int(victim.locator(WIDGET).get_attribute("data-version"))
    victim.locator("button", has_text="data \u2192 N(0,I)").click()
    wait_for_version_after(victim, version)
    # ... and a new visitor's page loads and animates within a few seconds.
    start = time.monotonic()
    other = open_page(browser, page_server.url)
    animating(other)
    assert time.monotonic() - start < 20
    assert "Closing a kernel websocket" in page_server.log()
    other.close()
    victim.close()
