"""Load test: a whole class opening the dashboard at once on ONE Voila server.

    python benchmarks/load_test.py                          # N = 10, then N = 30
    python benchmarks/load_test.py --sessions 30 --pages 30 # the class, all real pages
    python benchmarks/load_test.py --footprint              # one kernel's memory, step by step

The server is the one `CLASS_SIZE=N make dashboard` runs (python -m flowedu.app.serve and
./voila.json), with N kernels pre-heated (--pool, default N) as a class's teacher would.

N sessions arrive at the same moment, each gets its own kernel, the page comes up, the
animation plays, and every session clicks once (a new direction: the kernel recomputes the
frames and sends them again) at a random moment of the play window. Printed, as markdown:
sessions that rendered (k/N), time to interactive (median, p95), memory of every kernel
(RSS; PSS, which shares torch's libraries fairly between kernels; anonymous memory, what
one more kernel costs) and in total (Voila + kernels), frames/s per real page (median,
min), the click's round trip, each kernel's CPU time and the server's CPU time per session.

Why most sessions are kernel-websocket clients and only a few (--pages, default 3) real
pages: in a class each student's browser runs on the student's own machine; what the
server carries is the page's HTTP requests, one kernel per visitor and that kernel's
websocket traffic. A websocket session does exactly that server-side work: it GETs the page
(which makes Voila start a kernel and run the notebook), then downloads the same static
files a browser downloaded on a first visit (recorded from a warm-up page) over six
kept-alive connections, as a browser does, opens the kernel's
websocket as the page does, asks for the widgets' state (comm "jupyter.widget.control",
"request_states": the frames arrive as binary buffers, as in the browser) and clicks by
sending the same comm "update" a ToggleButtons sends. Thirty real chromium pages, each a
large JupyterLab document animating at 60 frames/s, would instead measure this 2-core
machine's browser, not the server: they would take the CPU the kernels need and report a
frame rate no student sees. The real pages run alongside, so their time to interactive and
frames/s are measured under the full server load (and with the browser sharing its cores).
Time to interactive: for a page, navigation start to the first frame drawn
(window.__flowedu_first_frame_ms); for a websocket session, the GET to the frames received;
that leaves out the browser's own parsing, about 1 s on an idle core.

Bounded: every session has a hard timeout (--session-timeout, from the common start), the
whole run an alarm (--timeout); Voila, its kernels and the browser are always stopped.
Voila listens on 127.0.0.1 only and reads ./voila.json (the shipped configuration);
--voila-arg adds or overrides options, e.g. --voila-arg=--pool_size=4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import signal
import statistics
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # voila_server.py
from voila_server import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    FIRST_FRAME,
    FRAMES_AND_MOVING_MS,
    LOOP,
    NEWER_VERSION,
    PLAY_UNLESS_PLAYING,
    PLAYING,
    POLL_MS,
    WIDGET,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"
KERNEL_ID = re.compile(r'"kernelId": "([0-9a-f-]{36})"')
GENERATE, NORMALIZE = "N(0,I) \u2192 data", "data \u2192 N(0,I)"
MB = 2**20


@dataclass
class Session:
    index: int
    kind: str  # "page" (real chromium page) or "ws" (HTTP + kernel websocket client)
    ok: bool = False
    error: str = ""
    tti: float | None = None  # seconds
    kernel_id: str | None = None
    click: float | None = None  # seconds from the click to the new frames
    fps: float | None = None
    draw_ms: float | None = None
    page: object = None
    context: object = None
    socket: object = None
    states: dict | None = None
    step: str = "start"  # what it was doing: a failure names it
    phases: dict = field(default_factory=dict)  # step -> seconds from the start, when done


# ----------------------------------------------------------------------------- kernel socket


class KernelSocket:
    """A kernel's websocket spoken to as Voila's page speaks to it: Jupyter's binary "v1"
    websocket protocol (jupyter_server's own serializers). Not the older JSON protocol: with
    it, Voila 0.5.13 misreads every kernel message that carries binary buffers (such as
    the canvas's frames) and its server process spins at 100% CPU, growing, for good."""

    PROTOCOL = "v1.kernel.websocket.jupyter.org"

    def __init__(self, port: int, kernel_id: str):
        self.session = uuid.uuid4().hex
        self.url = (
            f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?session_id={self.session}"
        )
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.ws = None

    async def connect(self, timeout: float) -> None:
        from tornado.websocket import websocket_connect

        self.ws = await asyncio.wait_for(
            websocket_connect(
                self.url,
                on_message_callback=self._on_message,
                max_message_size=256 * MB,
                subprotocols=[self.PROTOCOL],
            ),
            timeout,
        )
        if self.ws.selected_subprotocol != self.PROTOCOL:
            raise ConnectionError(f"the server did not accept {self.PROTOCOL}")

    def _on_message(self, raw) -> None:
        from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

        if raw is None:
            self.inbox.put_nowait(None)  # closed
            return
        channel, parts = deserialize_msg_from_ws_v1(raw)
        header, parent, metadata, content = (json.loads(p) for p in parts[:4])
        self.inbox.put_nowait(
            {
                "channel": channel,
                "header": header,
                "msg_type": header.get("msg_type"),
                "parent_header": parent,
                "metadata": metadata,
                "content": content,
                "buffers": parts[4:],
            }
        )

    async def send(self, msg_type: str, content: dict, metadata: dict | None = None) -> str:
        from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self.session,
            "username": "student",
            "version": "5.3",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        parts = [json.dumps(part).encode() for part in (header, {}, metadata or {}, content)]
        await self.ws.write_message(serialize_msg_to_ws_v1(parts, "shell"), binary=True)
        return msg_id

    async def wait_for(self, match, timeout: float) -> dict:
        """The next message for which match(msg) is true; others are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise ConnectionError("the kernel's websocket closed")
            if match(msg):
                return msg

    async def widget_states(self, timeout: float) -> tuple[dict, dict, list]:
        """Every widget's state, as the widget manager of a page gets it on connecting:
        (states, where the binary buffers go, the buffers)."""
        comm_id, meta = uuid.uuid4().hex, {"version": "1.0.0"}  # the control protocol
        opened = await self.send(
            "comm_open",
            {"comm_id": comm_id, "target_name": "jupyter.widget.control", "data": {}},
            meta,
        )
        # The kernel may handle shell messages out of order: wait until the comm is open.
        await self.wait_for(
            lambda m: (
                m["msg_type"] == "status"
                and m["content"].get("execution_state") == "idle"
                and m["parent_header"].get("msg_id") == opened
            ),
            timeout,
        )
        await self.send(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "request_states"}}, meta
        )
        msg = await self.wait_for(
            lambda m: (
                m["msg_type"] == "comm_msg"
                and m["content"].get("comm_id") == comm_id
                and m["content"]["data"].get("method") == "update_states"
            ),
            timeout,
        )
        data = msg["content"]["data"]
        return data["states"], data.get("buffer_paths", []), msg["buffers"]

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


def find_model(states: dict, match) -> str:
    for model_id, model in states.items():
        if match(model):
            return model_id
    raise LookupError("no such widget on the page")


def is_canvas(model: dict) -> bool:
    return "n_frames" in (model["state"].get("meta") or {})


def is_direction(model: dict) -> bool:
    return NORMALIZE in (model["state"].get("_options_labels") or [])


# ----------------------------------------------------------------------------- sessions


async def arrive_page(s: Session, browser, url: str, timeout: float) -> None:
    s.context = await browser.new_context(viewport={"width": 1280, "height": 860})
    s.page = page = await s.context.new_page()
    page.set_default_timeout(timeout * 1000)
    s.step = "load the page"
    await page.goto(url, timeout=timeout * 1000)
    s.step = "the first frame"
    await page.wait_for_function(FIRST_FRAME, polling=POLL_MS)
    s.tti = await page.evaluate("window.__flowedu_first_frame_ms") / 1000
    s.kernel_id = KERNEL_ID.search(await page.content()).group(1)
    await page.locator(f"{WIDGET}[data-version]").wait_for()


class KeepAliveHTTP:
    """One HTTP/1.1 connection that GETs one file after another, as a browser's does.

    tornado's own client opens a new connection for every request; a browser keeps up to six
    open per server and sends its requests over them. Content-Length and chunked bodies,
    gzip-encoded or not."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def get(self, path: str, timeout: float) -> bytes:
        return await asyncio.wait_for(self._get(path), timeout)

    async def _get(self, path: str) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Accept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n".encode()
        )
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if headers.get("transfer-encoding") == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readuntil(b"\r\n")  # after the last, empty chunk
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        if status != 200:
            raise ConnectionError(f"GET /{path}: HTTP {status}")
        if headers.get("content-encoding") == "gzip":
            body = zlib.decompress(body, wbits=31)
        return body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def arrive_ws(s: Session, port: int, assets: list[str], timeout: float) -> None:
    start = time.perf_counter()
    connections = [KeepAliveHTTP(port) for _ in range(6)]  # a browser's, per server
    s.step = "GET the page"
    html = (await connections[0].get("", timeout)).decode()
    s.phases["page"] = time.perf_counter() - start
    s.step = "GET the static files"
    todo = list(reversed(assets))

    async def fetch_on(connection: KeepAliveHTTP) -> None:
        while todo:
            await connection.get(todo.pop(), timeout)

    try:
        await asyncio.gather(*(fetch_on(c) for c in connections))
    finally:
        for c in connections:
            c.close()
    s.phases["static files"] = time.perf_counter() - start
    if "application/vnd.jupyter.widget-view+json" not in html:
        raise RuntimeError("the page came without the dashboard's widget")
    s.kernel_id = KERNEL_ID.search(html).group(1)
    s.socket = sock = KernelSocket(port, s.kernel_id)
    s.step = "open the kernel's websocket"
    await sock.connect(timeout)
    s.phases["websocket"] = time.perf_counter() - start
    s.step = "kernel_info"
    await sock.send("kernel_info_request", {})
    await sock.wait_for(lambda m: m["msg_type"] == "kernel_info_reply", timeout)
    s.phases["kernel_info"] = time.perf_counter() - start
    s.step = "the widgets' state"
    s.states, paths, buffers = await sock.widget_states(timeout)
    canvas = find_model(s.states, is_canvas)
    n = s.states[canvas]["state"]["meta"]
    expected = 4 * n["n_frames"] * n["n_points"] * 2  # float32 (frames, points, 2)
    # ipywidgets sends the buffers of all widgets in one list, each with its path.
    sizes = [len(b) for p, b in zip(paths, buffers, strict=True) if p[0] == canvas]
    if expected not in sizes:
        raise RuntimeError(f"the canvas came without its frames ({sizes} bytes)")
    s.tti = time.perf_counter() - start
    s.phases["frames"] = s.tti


async def play_page(s: Session, seconds: float, click_at: float, timeout: float) -> None:
    page = s.page
    await page.locator(LOOP).check()  # opened, a page plays once; this measures it looping
    await page.evaluate(PLAY_UNLESS_PLAYING)
    await page.wait_for_function(PLAYING)
    f0, t0 = await page.evaluate(FRAMES_AND_MOVING_MS)  # frames/s of motion, not of rest
    await asyncio.sleep(click_at)
    version = int(await page.locator(WIDGET).get_attribute("data-version"))
    normalize = page.locator("button", has_text=NORMALIZE)
    label = (
        GENERATE if "mod-active" in (await normalize.get_attribute("class") or "") else NORMALIZE
    )
    clicked = time.perf_counter()
    await page.locator("button", has_text=label).click()
    await page.wait_for_function(NEWER_VERSION, arg=version, timeout=timeout * 1000)
    s.click = time.perf_counter() - clicked
    await asyncio.sleep(max(0.0, seconds - (time.perf_counter() - clicked) - click_at))
    f1, t1 = await page.evaluate(FRAMES_AND_MOVING_MS)
    s.fps = (f1 - f0) / ((t1 - t0) / 1000)
    s.draw_ms = float(await page.locator(WIDGET).get_attribute("data-draw-ms"))


async def click_ws(s: Session, click_at: float, timeout: float) -> None:
    await asyncio.sleep(click_at)
    sock, states = s.socket, s.states
    direction, canvas = find_model(states, is_direction), find_model(states, is_canvas)
    index = 1 - (states[direction]["state"].get("index") or 0)
    clicked = time.perf_counter()
    update = {"method": "update", "state": {"index": index}, "buffer_paths": []}
    await sock.send("comm_msg", {"comm_id": direction, "data": update}, {"version": "2.1.0"})
    await sock.wait_for(
        lambda m: (
            m["msg_type"] == "comm_msg"
            and m["content"].get("comm_id") == canvas
            and "version" in m["content"]["data"].get("state", {})
        ),
        timeout,
    )
    s.click = time.perf_counter() - clicked


async def guarded(s: Session, coro, deadline: float, what: str) -> None:
    """Run one session's step until the deadline; a failure is recorded, never raised."""
    try:
        await asyncio.wait_for(coro, max(0.1, deadline - time.monotonic()))
        s.ok = True
    except Exception as err:  # every failure is a result here
        s.ok = False
        kind = type(err).__name__
        detail = str(err).splitlines()[0][:160] if str(err) else ""
        s.error = s.error or f"{what} ({s.step}): {kind}: {detail}"


# ----------------------------------------------------------------------------- processes


def kernel_processes(voila_pid: int) -> dict[str, object]:
    """kernel id -> psutil.Process of every kernel Voila started."""
    import psutil

    out = {}
    for child in psutil.Process(voila_pid).children(recursive=True):
        try:
            match = re.search(r"kernel-([0-9a-f-]{36})\.json", " ".join(child.cmdline()))
        except psutil.Error:
            continue
        if match:
            out[match.group(1)] = child
    return out


def memory(process) -> dict[str, float]:
    """RSS, PSS, USS and anonymous memory of a process, in MiB (and its CPU seconds).

    PSS shares each shared page among the processes that map it; USS counts only pages no
    other process maps, including torch's code pages that only this kernel touched (e.g.
    those of backward passes, after Train). Anonymous memory (heap, tensors, Python objects)
    is what each additional kernel costs; the libraries' pages are in memory once per
    machine.
    """
    info, cpu = process.memory_full_info(), process.cpu_times()
    out = {"rss": info.rss / MB, "pss": info.pss / MB, "uss": info.uss / MB, "anon": 0.0}
    out["cpu"] = cpu.user + cpu.system  # seconds of CPU used so far
    try:
        with open(f"/proc/{process.pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Anonymous:"):
                    out["anon"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def cpu_split(voila_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the Voila process, its kernels, this load test's own
    process (the websocket clients) and the browser (Playwright's driver and chromium)."""
    from voila_server import cpu_seconds, descendants

    server = descendants(voila_pid)
    ours = [p for p in descendants(os.getpid()) if p not in server and p != os.getpid()]
    own = os.times()
    return {
        "Voila": cpu_seconds([voila_pid]),
        "kernels": cpu_seconds([p for p in server if p != voila_pid]),
        "load-test client": own.user + own.system,
        "browser": cpu_seconds(ours),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# ----------------------------------------------------------------------------- the class


async def warm_up(browser, url: str) -> list[str]:
    """Open one page as the first visitor would; return the static files it downloaded."""
    paths: list[str] = []
    context = await browser.new_context()
    page = await context.new_page()
    page.on(
        "request",
        lambda r: (
            paths.append(r.url[len(url) :])
            if r.url.startswith(url) and r.resource_type not in ("document", "websocket")
            else None
        ),
    )
    await page.goto(url, timeout=120_000)
    await page.wait_for_function(FIRST_FRAME, polling=POLL_MS, timeout=120_000)
    kernel_id = KERNEL_ID.search(await page.content()).group(1)
    # Leave the page as a visitor does: Voila's page then asks the server to shut its kernel
    # down (POST voila/api/shutdown/<kernel id> on "beforeunload").
    await page.goto("about:blank")
    await asyncio.sleep(1)
    await context.close()
    return [p for p in dict.fromkeys(paths) if kernel_id not in p]


async def run_class(server, args) -> tuple[list[Session], dict]:
    from playwright.async_api import async_playwright
    from tornado.httpclient import AsyncHTTPClient
    from voila_server import cpu_seconds, descendants, wait_until_idle

    AsyncHTTPClient.configure(None, max_clients=10 * args.sessions_n + 10)
    http = AsyncHTTPClient()
    facts: dict = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            assets = await warm_up(browser, server.url)
            facts["assets"] = len(assets)
            plain = [(await http.fetch(server.url + a)).body for a in assets]
            sent = [
                await http.fetch(
                    server.url + a, headers={"Accept-Encoding": "gzip"}, decompress_response=False
                )
                for a in assets
            ]
            facts["asset_mb"] = sum(map(len, plain)) / MB
            facts["asset_sent_mb"] = sum(len(r.body) for r in sent) / MB  # as sent: compressed
            await asyncio.to_thread(time.sleep, args.fill_delay + 1)  # the pool refills
            facts["idle_wait_s"] = await asyncio.to_thread(wait_until_idle, server.process.pid)
            facts["voila_before"] = memory(__import__("psutil").Process(server.process.pid))
            cpu_before = cpu_seconds(descendants(server.process.pid))
            facts["pool_before"] = len(kernel_processes(server.process.pid))

            sessions = [
                Session(i, "page" if i < args.pages else "ws") for i in range(args.sessions_n)
            ]
            print(f"{args.sessions_n} sessions arrive ({args.pages} real pages)...", flush=True)
            cpu_at_start = cpu_split(server.process.pid)
            start = time.monotonic()
            deadline = start + args.session_timeout
            await asyncio.gather(
                *(
                    guarded(
                        s,
                        arrive_page(s, browser, server.url, args.session_timeout)
                        if s.kind == "page"
                        else arrive_ws(s, server.port, assets, args.session_timeout),
                        deadline,
                        "arrive",
                    )
                    for s in sessions
                )
            )
            facts["arrival_s"] = time.monotonic() - start
            after = cpu_split(server.process.pid)
            facts["arrival_cpu"] = {k: after[k] - cpu_at_start[k] for k in after}
            print(f"arrived in {facts['arrival_s']:.0f} s; the class plays...", flush=True)

            rng = random.Random(0)
            play_deadline = time.monotonic() + args.play_seconds + args.click_timeout
            steps = []
            for s in sessions:
                if not s.ok:
                    continue
                click_at = rng.uniform(0, args.play_seconds / 2)
                coro = (
                    play_page(s, args.play_seconds, click_at, args.click_timeout)
                    if s.kind == "page"
                    else click_ws(s, click_at, args.click_timeout)
                )
                steps.append(guarded(s, coro, play_deadline, "play/click"))
            played = time.monotonic()
            await asyncio.gather(*steps)
            facts["play_s"] = time.monotonic() - played
            end = cpu_split(server.process.pid)
            facts["play_cpu"] = {k: end[k] - after[k] for k in end}

            kernels = kernel_processes(server.process.pid)
            used = {s.kernel_id for s in sessions if s.kernel_id}
            facts["kernels"] = {
                kid: {**memory(p), "session": kid in used} for kid, p in kernels.items()
            }
            facts["voila"] = memory(__import__("psutil").Process(server.process.pid))
            # Server CPU of the class (Voila and every kernel): from the arrivals to the end.
            facts["server_cpu_s"] = cpu_seconds(descendants(server.process.pid)) - cpu_before
            for s in sessions:
                if s.kernel_id and s.kernel_id not in kernels and s.ok:
                    s.ok, s.error = False, "its kernel is gone"
            for s in sessions:
                if s.socket is not None:
                    s.socket.close()
                if s.context is not None:
                    await s.context.close()
        finally:
            await browser.close()
            http.close()
    return sessions, facts


# ----------------------------------------------------------------------------- footprint


async def footprint(server, args) -> list[tuple[str, dict]]:
    """One visitor's kernel, step by step: RSS, PSS and USS after each thing they do."""
    import psutil
    from playwright.async_api import async_playwright

    rows = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(120_000)
            await page.goto(server.url, timeout=120_000)
            await page.locator(f"{WIDGET}[data-version]").wait_for()
            kid = KERNEL_ID.search(await page.content()).group(1)
            proc = kernel_processes(server.process.pid)[kid]
            modules = await kernel_modules(server, kid)
            rows.append(("page up (moons, 2,000 points)", memory(proc)))
            await asyncio.sleep(args.play_seconds)
            rows.append((f"after {args.play_seconds:.0f} s of play", memory(proc)))

            async def choose(action) -> None:
                version = int(await page.locator(WIDGET).get_attribute("data-version"))
                await action()
                await page.wait_for_function(NEWER_VERSION, arg=version)

            selects = page.locator(".flowedu-app select")
            await choose(lambda: selects.nth(1).select_option(label="10,000"))
            rows.append(("10,000 points", memory(proc)))
            await choose(lambda: page.get_by_label("density heatmap").click())
            rows.append(("+ density heatmap", memory(proc)))
            from flowedu.datasets import NAMES

            for name in NAMES:
                await choose(lambda n=name: selects.first.select_option(n))
            rows.append(("+ every dataset shown once (heatmaps on)", memory(proc)))
            await page.locator("button", has_text="Train").click()
            await page.locator("button", has_text="Stop").wait_for()
            peak, end = memory(proc), time.monotonic() + args.train_timeout
            while time.monotonic() < end:
                peak = {k: max(v, memory(proc)[k]) for k, v in peak.items()}
                if await page.locator("button", has_text="Stop").count() == 0:
                    break
                await asyncio.sleep(0.5)
            else:
                await page.locator("button", has_text="Stop").click()
            await page.locator("button", has_text="Train").wait_for()
            message = (await page.inner_text(".flowedu-msg")).strip()
            rows.append(("peak while training", peak))
            rows.append((f"after Train ({message[:60]})", memory(proc)))
            rows.append(("Voila server process", memory(psutil.Process(server.process.pid))))
            rows.append(("kernel modules: " + modules, {}))
        finally:
            await browser.close()
    return rows


async def kernel_modules(server, kid: str) -> str:
    """Which heavy libraries the kernel imported (read from its memory maps)."""
    import psutil

    proc = psutil.Process(kernel_processes(server.process.pid)[kid].pid)
    maps = " ".join(m.path for m in proc.memory_maps(grouped=True))
    found = [lib for lib in ("torch", "matplotlib", "PIL", "scipy", "pandas") if f"/{lib}/" in maps]
    return ", ".join(found) or "none of torch, matplotlib, PIL, scipy, pandas"


# ----------------------------------------------------------------------------- report


def report(sessions: list[Session], facts: dict, args) -> None:
    n = len(sessions)
    ok = [s for s in sessions if s.ok]
    tti = [s.tti for s in sessions if s.tti is not None]
    clicks = [s.click for s in sessions if s.click is not None]
    fps = [s.fps for s in sessions if s.fps is not None]
    kernels = [k for k in facts["kernels"].values() if k["session"]]
    others = [k for k in facts["kernels"].values() if not k["session"]]
    voila = facts["voila"]
    total_rss = voila["rss"] + sum(k["rss"] for k in facts["kernels"].values())
    total_pss = voila["pss"] + sum(k["pss"] for k in facts["kernels"].values())

    def mid(values, fmt=".1f"):
        return format(statistics.median(values), fmt) if values else "\u2014"

    def p95(values, fmt=".1f"):
        return format(percentile(values, 0.95), fmt) if values else "\u2014"

    rss = [k["rss"] for k in kernels]
    pss = [k["pss"] for k in kernels]
    anon = [k["anon"] for k in kernels]
    print(
        "\n| sessions | rendered | time to interactive, median / p95 (s) "
        "| RSS per kernel, median / max (MiB) | PSS / anonymous per kernel, median (MiB) "
        "| total Voila + kernels, RSS / PSS (GiB) | frames/s per page, median / min "
        "| click to new frames, median / p95 (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {n} ({args.pages} pages) | {len(ok)}/{n} | {mid(tti)} / {p95(tti)} "
        f"| {mid(rss, '.0f')} / {max(rss, default=0):.0f} | {mid(pss, '.0f')} / {mid(anon, '.0f')} "
        f"| {total_rss / 1024:.2f} / {total_pss / 1024:.2f} "
        f"| {mid(fps, '.0f')} / {min(fps, default=0):.0f} | {mid(clicks)} / {p95(clicks)} |"
    )
    print("\n| kind | sessions | rendered | time to interactive, median / p95 / max (s) |")
    print("| --- | --- | --- | --- |")
    for kind, name in (("page", "real chromium pages"), ("ws", "websocket sessions")):
        group = [s for s in sessions if s.kind == kind]
        t = [s.tti for s in group if s.tti is not None]
        if group:
            print(
                f"| {name} | {len(group)} | {sum(s.ok for s in group)}/{len(group)} "
                f"| {mid(t)} / {p95(t)} / {max(t, default=0):.1f} |"
            )
    print(
        f"\nVoila process: RSS {voila['rss']:.0f} MiB (before the class: "
        f"{facts['voila_before']['rss']:.0f}, with {facts['pool_before']} pre-heated "
        f"kernel(s)); kernels alive: {len(facts['kernels'])} ({len(kernels)} of sessions, "
        f"{len(others)} pre-heated for the next visitors"
        + (f", RSS {mid([k['rss'] for k in others], '.0f')} MiB each" if others else "")
        + f"). USS per session kernel, median: {mid([k['uss'] for k in kernels], '.0f')} MiB. "
        f"CPU time per session kernel (start, notebook, one click), median / max: "
        f"{mid([k['cpu'] for k in kernels])} / "
        f"{max([k['cpu'] for k in kernels], default=0):.1f} s. "
        f"Server CPU (Voila and kernels) during the class: {facts['server_cpu_s']:.1f} s, "
        f"{facts['server_cpu_s'] / n:.2f} s per session."
    )
    draw = [s.draw_ms for s in sessions if s.draw_ms is not None]
    print(
        f"All arrived (or timed out) in {facts['arrival_s']:.0f} s. Static files per first "
        f"visit: {facts['assets']} ({facts['asset_mb']:.1f} MiB, "
        f"{facts['asset_sent_mb']:.1f} MiB as sent). JavaScript per frame, median: "
        f"{mid(draw, '.1f')} ms."
    )
    for what, key in (("the arrivals", "arrival"), ("the play", "play")):
        print(
            f"CPU during {what} ({facts[key + '_s']:.0f} s on {os.cpu_count()} cores), s: "
            + ", ".join(f"{k} {v:.1f}" for k, v in facts[key + "_cpu"].items())
            + "."
        )
    steps = [s.phases for s in sessions if s.kind == "ws" and "frames" in s.phases]
    if steps:
        print(
            "Websocket sessions, each step done at (median s from the GET): "
            + ", ".join(f"{k} {statistics.median(p[k] for p in steps):.1f}" for k in steps[0])
            + "."
        )
    ordered = sorted(sessions, key=lambda s: (s.tti is None, s.tti or 0))
    print(
        "Times to interactive, s: "
        + ", ".join(f"{s.tti:.1f}{'p' if s.kind == 'page' else ''}" for s in ordered if s.tti)
        + " (p: a real page)"
    )
    failures = [s for s in sessions if not s.ok]
    for s in failures:
        print(f"FAILED session {s.index} ({s.kind}): {s.error}")
    log = facts.get("log", "")
    bad = [
        line
        for line in log.splitlines()
        if re.search(r"ERROR|Traceback|Timeout|timed out|refused|Exception", line)
    ]
    print(f"Voila log: {len(bad)} error/timeout lines" + (":" if bad else "."))
    for line in bad[:12]:
        print("   ", line[:200])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 30], help="N, each run")
    parser.add_argument("--pool", type=int, default=None, help="pre-heated kernels (default N)")
    parser.add_argument("--pages", type=int, default=3, help="of the sessions, real pages")
    parser.add_argument("--play-seconds", type=float, default=8.0)
    parser.add_argument("--session-timeout", type=float, default=240.0, help="s, per session")
    parser.add_argument("--click-timeout", type=float, default=60.0)
    parser.add_argument("--timeout", type=int, default=360, help="s, the whole run")
    parser.add_argument("--fill-delay", type=float, default=5.0, help="voila.json's fill_delay")
    parser.add_argument("--voila-arg", action="append", default=[], help="extra Voila option")
    parser.add_argument("--footprint", action="store_true", help="one kernel, step by step")
    parser.add_argument("--train-timeout", type=float, default=150.0)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")

    def give_up(*_):
        raise TimeoutError(f"the load test ran past {args.timeout} s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(args.timeout)  # Voila and the browser are stopped on the way out
    pages, extra = args.pages, list(args.voila_arg)
    for n in args.sessions if not args.footprint else [1]:
        args.sessions_n, args.pages = n, min(pages, n)
        pool = args.pool if args.pool is not None else n
        args.voila_arg = [f"--pool_size={pool}", *extra]
        run_one(args)


def run_one(args) -> None:
    from voila_server import serve, wait_until_idle

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"\n## N = {args.sessions_n}\n\n{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) "
        f"before; server options: voila.json {' '.join(args.voila_arg)}",
        flush=True,
    )
    began = time.monotonic()
    with serve(NOTEBOOK, cwd=ROOT, args=args.voila_arg, timeout=120) as server:
        waited = wait_until_idle(server.process.pid, timeout=args.timeout)
        print(f"pool pre-heated in {waited:.0f} s", flush=True)
        if args.footprint:
            rows = asyncio.run(footprint(server, args))
            print("\n| kernel after | RSS | PSS | USS | anonymous |  (MiB)")
            print("| --- | --- | --- | --- | --- |")
            for name, m in rows:
                keys = ("rss", "pss", "uss", "anon")
                cells = " | ".join(f"{m[k]:.0f}" for k in keys) if m else " | | |"
                print(f"| {name} | {cells} |")
        else:
            sessions, facts = asyncio.run(run_class(server, args))
            facts["log"] = server.log()
            report(sessions, facts, args)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nwhole run {time.monotonic() - began:.0f} s; load average after: {load}", flush=True)


if __name__ == "__main__":
    main()
