"""Serve the dashboard to a class: Voila with XSRF checks on, hardened kernel websockets, a
cap on kernels and a pre-heated pool that refills only when nobody is arriving.

    python -m flowedu.app.serve notebooks/dashboard.ipynb [--port=8866] [any Voila option]

scripts/serve_dashboard.sh (and `make dashboard`) run this. What it adds to plain Voila:

- The page sets the `_xsrf` cookie. Voila's page sends its kernel's shutdown request (the
  unload beacon) with that cookie's value; without it the request was refused, and the
  kernel of a closed or reloaded tab lived on until culled. With it, XSRF checks stay on
  (nothing here sets `disable_check_xsrf`, which also turns off the Origin check of every
  state-changing request).
- Each kernel websocket frame is checked before jupyter_server parses it. A v1 frame
  announces how many offsets follow in its first 8 bytes, and jupyter_server loops over
  that count before checking anything, so a 16-byte frame announcing 2^62 offsets kept
  the server at 100% CPU. A frame whose header does not describe the frame exactly, a
  binary frame on the legacy protocol (which the browser never sends), or any frame the
  parser rejects closes that one socket; every other visitor is served on.
- A cap on kernels (FLOWEDU_MAX_KERNELS, default from the machine's memory): beyond it a
  visitor gets a short "the class is full, try again in a minute" page (HTTP 503) instead
  of a server that runs out of memory.
- Static text files (scripts, styles) are sent gzip-compressed, each compressed once and
  kept in memory; content-hashed ones (the widget manager's webpack chunks) are cached by
  the browser for good, so a reload downloads and asks the server nothing for them.
- The loading screen stands still (templates/spinner.macro.html.j2): Voila's spinning
  logo kept every loading page redrawing itself 60 times a second.
- Voila's front end arrives as some 80 scripts, each asked for once the one before has run
  (webpack chunks); the page gets those it needs in one file before Voila's own script,
  which then finds them loaded (templates/voila_setup.macro.html.j2, page_chunks.txt). A
  chunk not in the file is still loaded on demand, as before.
- The pre-heated pool (--pool_size, CLASS_SIZE in the script): kernels are started one or
  two at a time, and a kernel taken by a visitor is replaced only once every page that took
  a kernel has connected to it, the server has then been quiet for a few seconds (no
  HTTP request, no message from a page to a kernel) and half a core is idle, so the refill
  never competes with the arrivals for CPU. (A kernel started on a saturated machine also
  ran its notebook so slowly that Voila gave up waiting for its output.)
- Kernels use one thread each (OMP/OPENBLAS/MKL_NUM_THREADS default to 1) and run at a
  lower CPU priority than the web server (nice +10): a kernel that trains,
  or the pool refilling, never slows the pages, static files and websockets of everybody
  else; when nothing else wants the CPU a kernel still gets all of it.

A class password is Voila's own token (--token=...; the script reads CLASS_TOKEN): visitors
open http://HOST:PORT/?token=... once and a cookie keeps them in. Binding beyond 127.0.0.1
without one is refused; docs/classroom.md shows a reverse proxy in front.
"""

from __future__ import annotations

import atexit
import gzip
import html
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.services.kernels.kernelmanager import ServerKernelManager
from tornado.ioloop import PeriodicCallback
from tornado.log import access_log

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
# A v1 frame: offsets for the channel, header, parent header, metadata, content, any
# buffers, and the end. A widget message carries a handful of buffers; 1,000 is generous.
MAX_V1_OFFSETS = 1_000
MIB = 1024 * 1024
# Memory a visitor's kernel may need (anonymous, benchmarks/load_test.py --footprint): about
# 50 MiB showing flows (NumPy only), 260 MiB after Train has imported torch, 364 MiB at the
# peak of a training run. The default cap keeps every kernel training at once within three
# quarters of the machine's memory.
KERNEL_BUDGET_MIB = 370
QUIET_SECONDS = 3.0  # refill the pool only after the server has been quiet this long
# A visitor is still arriving from taking a kernel until their page opens its websocket
# (while the browser loads and runs the page's scripts, the server hears nothing from it);
# a page that has not connected within this long is taken as gone.
ARRIVAL_SECONDS = 60.0
SPARE_CORES = 0.5  # ... and only while at least this much of the CPU is idle
KERNEL_NICENESS = 10  # kernels yield the CPU to the web server (and to each other's pages)
MAX_PARALLEL_STARTS = 2  # kernels started at once while filling the pool
# Templates searched before Voila's: a loading screen that stands still, and the page's
# scripts with Voila's chunks in one file (see each file).
TEMPLATES = Path(__file__).with_name("templates")
# The chunks of Voila's front end that the dashboard's page loads (scripts/
# record_page_chunks.py writes the list; FLOWEDU_PAGE_CHUNKS names another, "" none).
PAGE_CHUNKS = Path(__file__).with_name("page_chunks.txt")
CHUNKS_FILE = "flowedu-chunks.js"  # in voila/static/; templates/voila_setup.macro.html.j2 names it
CHUNK_NAME = re.compile(r"[0-9]+\.voila\.js")  # how Voila names its chunks (e.g. 7155.voila.js)

FULL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="60">
<title>The class is full</title>
<style>body{{font:18px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}}
</style></head><body>
<h1>The class is full</h1>
<p>All {cap} places of this dashboard server are taken right now. Try again in a minute:
this page reloads itself every minute, and a place frees up as soon as somebody closes
their tab.</p>
<p class="flowedu-full" data-cap="{cap}">(The teacher can raise the limit with
FLOWEDU_MAX_KERNELS.)</p>
</body></html>
"""


def default_max_kernels() -> int:
    """Kernels that fit in three quarters of this machine's memory, each training (>= 2)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 30
    return max(2, int(0.75 * total / (KERNEL_BUDGET_MIB * MIB)))


def max_kernels() -> int:
    """The cap: $FLOWEDU_MAX_KERNELS if set (a positive integer), else default_max_kernels()."""
    raw = os.environ.get("FLOWEDU_MAX_KERNELS", "").strip()
    if not raw:
        return default_max_kernels()
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"FLOWEDU_MAX_KERNELS must be a positive integer, got {raw!r}")
    return int(raw)


class Activity:
    """When the server last heard from a visitor: any HTTP request, any websocket message."""

    def __init__(self) -> None:
        self.last = float("-inf")

    def note(self) -> None:
        self.last = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since the last request or message (infinite if none yet)."""
        return time.monotonic() - self.last


def _log_request(activity: Activity):
    """Tornado's log_function: note the request, then log it as tornado does by default."""

    def log_request(handler) -> None:
        activity.note()
        status = handler.get_status()
        if status < 400:
            log = access_log.info
        elif status < 500:
            log = access_log.warning
        else:
            log = access_log.error
        ms = 1000.0 * handler.request.request_time()
        log("%d %s %.2fms", status, handler._request_summary(), ms)

    return log_request


class IdleCPU:
    """How many cores were idle since the last call, from /proc/stat (Linux); None elsewhere
    or on the first call."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def cores(self) -> float | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle, total = fields[3] + fields[4], sum(fields[:8])  # idle + iowait; up to steal
        last, self._last = self._last, (idle, total)
        if last is None or total <= last[1]:
            return None
        return (os.cpu_count() or 1) * (idle - last[0]) / (total - last[1])


class NicedKernelManager(ServerKernelManager):
    """jupyter_server's manager of one kernel, starting the kernel at a lower CPU priority.

    Raising a child's niceness needs no privilege; its own children (e.g. torch's worker
    threads) inherit it. Where the system refuses, the kernel runs at normal priority.
    """

    async def _async_launch_kernel(self, kernel_cmd, **kw) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        pid = getattr(self.provisioner, "pid", None)
        if pid is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, pid, KERNEL_NICENESS)
            except (OSError, AttributeError) as err:
                self.log.warning("Kernel %s keeps its CPU priority: %s", pid, err)


# ------------------------------------------------------------------------- websocket frames


def frame_problem(message: bytes | str, subprotocol: str | None) -> str | None:
    """Why a kernel-websocket frame from a browser must be refused, or None if it is sound.

    v1 protocol (what browsers speak): 8 bytes n, then n offsets of 8 bytes each
    (little-endian), then the channel name and the message parts; the offsets must start
    right after themselves, never decrease, and end exactly at the end of the frame.
    Legacy protocol: JSON text only (its binary form has the same kind of count).
    """
    if subprotocol == V1_PROTOCOL:
        if not isinstance(message, bytes):
            return "a text frame on the binary v1 protocol"
        if len(message) < 8:
            return f"a truncated v1 frame ({len(message)} bytes)"
        n = int.from_bytes(message[:8], "little")
        if not 6 <= n <= MAX_V1_OFFSETS:  # channel, 4 parts, end: at least 6 offsets
            return f"a v1 frame announcing {n} offsets (allowed: 6 to {MAX_V1_OFFSETS})"
        start = 8 * (n + 1)
        if len(message) < start:
            return f"a truncated v1 frame ({len(message)} bytes, its offsets need {start})"
        offsets = struct.unpack(f"<{n}Q", message[8:start])
        if offsets[0] != start or offsets[-1] != len(message):
            return "a v1 frame whose offsets do not span it"
        if any(b < a for a, b in zip(offsets, offsets[1:], strict=False)):
            return "a v1 frame whose offsets go backwards"
        try:
            message[offsets[0] : offsets[1]].decode("ascii")
        except UnicodeDecodeError:
            return "a v1 frame whose channel name is not text"
        return None
    if isinstance(message, bytes):
        return "a binary frame on the legacy protocol"
    return None


class SafeKernelConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, closing the socket of a bad frame."""

    def handle_incoming_message(self, incoming_msg) -> None:
        self.multi_kernel_manager.activity.note()  # ClassVoila gives every manager one
        problem = frame_problem(incoming_msg, self.subprotocol)
        if problem is None:
            try:
                return super().handle_incoming_message(incoming_msg)
            except Exception as err:  # a frame that parses but is not a kernel message
                problem = f"a malformed message ({type(err).__name__}: {str(err)[:80]})"
        self.log.warning("Closing a kernel websocket of %s: %s", self.kernel_id, problem)
        self.websocket_handler.close(1007, "malformed kernel message")


# ------------------------------------------------------------------------- the page


def _page_handler(base):
    """The dashboard page's handler: the class-full page beyond the cap; the _xsrf cookie."""

    class ClassPageHandler(base):
        async def get(self, path=None):
            manager = self.kernel_manager
            cap = getattr(manager, "max_kernels", None)
            if cap is not None and not manager.has_room():
                self.set_status(503)
                self.set_header("Retry-After", "60")
                self.set_header("Cache-Control", "no-store")
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.log.warning("Class full: %d kernels running, cap %d", manager.count(), cap)
                return self.finish(FULL_PAGE.format(cap=html.escape(str(cap))))
            self.xsrf_token  # noqa: B018  (reading it sets the _xsrf cookie if missing)
            return await super().get(path)

    ClassPageHandler.__name__ = ClassPageHandler.__qualname__ = "ClassPageHandler"
    return ClassPageHandler


# ------------------------------------------------------------------------- static files

# A webpack chunk named by its content's hash (e.g. 496.ad7666673ba278088e95.js) never
# changes under that name: a browser may keep it, and a reload then asks the server nothing.
HASHED_NAME = re.compile(r"[./-][0-9a-f]{16,}\.(js|css|woff2?|ttf|svg|png)$")
IMMUTABLE = "public, max-age=31536000, immutable"


# Text files are sent gzip-compressed to browsers that accept it (all do): a first visit
# downloads 5.1 MiB of scripts and styles, and about a third of that compressed, which is
# what thirty students share of a classroom's network. Each file is compressed once, when
# first asked for, and kept in memory (about 1.5 MiB for all of them).
COMPRESSIBLE = re.compile(r"\.(js|mjs|css|json|svg|map|html|txt)$")
MIN_COMPRESSED_BYTES = 1024  # smaller files gain less than the header costs
_gzipped: dict[str, tuple[int, int, bytes | None]] = {}  # path -> (mtime_ns, size, body)


def gzipped(path: str) -> bytes | None:
    """The gzip-compressed content of a text file (cached), or None if not worth it."""
    stat = os.stat(path)
    cached = _gzipped.get(path)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    body = None
    if COMPRESSIBLE.search(path) and stat.st_size >= MIN_COMPRESSED_BYTES:
        with open(path, "rb") as f:
            body = gzip.compress(f.read(), compresslevel=6, mtime=0)
    _gzipped[path] = (stat.st_mtime_ns, stat.st_size, body)
    return body


def _static_handler(base, cache_hashed: bool):
    """One of Voila's static file handlers, sending text files gzip-compressed and, with
    cache_hashed, letting browsers keep content-hashed files for good."""

    class ClassStaticHandler(base):
        _gzip = False

        def set_headers(self):
            super().set_headers()
            if cache_hashed and HASHED_NAME.search(self.request.path):
                self.set_header("Cache-Control", IMMUTABLE)

        def compute_etag(self):
            etag = super().compute_etag()
            # The compressed bytes are another representation: they need their own tag.
            return etag[:-1] + '-gzip"' if etag and self._gzip else etag

        async def get(self, path, include_body=True):
            accepts = "gzip" in self.request.headers.get("Accept-Encoding", "")
            if not accepts or "Range" in self.request.headers:
                return await super().get(path, include_body)
            # Tornado's own steps, up to the file's path, checked as it checks it ...
            self.path = self.parse_url_path(path)
            found = self.get_absolute_path(self.root, self.path)  # may set self.root
            absolute = self.validate_absolute_path(self.root, found)
            if absolute is None:
                return None
            body = gzipped(absolute)
            if body is None:
                return await super().get(path, include_body)
            # ... then the compressed bytes in place of the file's.
            self.absolute_path, self._gzip = absolute, True
            self.modified = self.get_modified_time()
            self.set_headers()
            self.set_header("Content-Encoding", "gzip")
            self.add_header("Vary", "Accept-Encoding")
            if self.should_return_304():
                self.set_status(304)
                return None
            self.set_header("Content-Length", len(body))
            if include_body:
                self.write(body)
            return None

    # jupyter_server marks which methods may be used without the class password (static
    # files may: the login page needs them); the new get keeps its base's mark.
    mark = "__allow_unauthenticated"
    if hasattr(base.get, mark):
        setattr(ClassStaticHandler.get, mark, getattr(base.get, mark))
    ClassStaticHandler.__name__ = ClassStaticHandler.__qualname__ = "ClassStaticHandler"
    return ClassStaticHandler


def page_chunk_names(listing: Path) -> list[str]:
    """The chunk file names in a page_chunks.txt (one a line; # starts a comment)."""
    lines = (line.split("#")[0].strip() for line in listing.read_text().splitlines())
    return [line for line in lines if line]


def chunk_bundle(names: list[str], static_paths: list[str]) -> bytes:
    """Voila's chunk files of these names, found in its static folders, as one script.

    Each chunk hands its modules to webpack's list of loaded chunks (`self.webpackChunk...
    .push(...)`), which Voila's runtime reads when it starts: run before it, the file
    leaves nothing for the page to fetch. A name not found is left out (that chunk is
    loaded on demand), so a list from another Voila version costs speed, not correctness.
    """
    parts = [b"/* Voila's chunks for the flowedu dashboard (flowedu.app.serve) */"]
    for name in filter(CHUNK_NAME.fullmatch, names):
        found = next((Path(d) / name for d in static_paths if (Path(d) / name).is_file()), None)
        if found is not None:
            parts.append(found.read_bytes())
    return b";\n".join(parts) + b"\n"


# ------------------------------------------------------------------------- kernels


def _class_kernel_manager(cls, cap: int):
    """Voila's kernel manager class, with the cap and a pool refilled when it is quiet."""

    class ClassKernelManager(cls):
        max_kernels = cap

        def __init__(self, **kwargs):
            self._wanted: dict[str, dict] = {}  # notebook -> fill_if_needed's arguments
            self.activity = Activity()
            self._taken: dict[str, float] = {}  # kernel id -> when a visitor took it
            self._idle_cpu = IdleCPU()
            self._refiller = None
            super().__init__(**kwargs)

        # Voila calls this at start-up (delay 0) and after each visitor takes a kernel;
        # here it only records what to keep filled, and _refill does the work.
        def fill_if_needed(self, delay=None, notebook_name=None, **kwargs):
            self._wanted[notebook_name] = kwargs
            self._pools.setdefault(notebook_name, [])
            if self._refiller is None:
                self._refiller = PeriodicCallback(self._refill, 500)
                self._refiller.start()

        def target_size(self, notebook_name) -> int:
            config = self.kernel_pools_config
            default = config.get("default", {})
            return int(config.get(notebook_name, default).get("pool_size", 1))

        def starting(self) -> int:
            return sum(not task.done() for pool in self._pools.values() for task in pool)

        def count(self) -> int:
            """Kernels running or starting (pooled ones included)."""
            return len(self.list_kernel_ids()) + self.starting()

        def has_room(self) -> bool:
            """Whether a new visitor can get a kernel: a ready pooled one, or room for one."""
            pooled = sum(len(pool) for pool in self._pools.values())  # ready or starting
            return pooled > 0 or self.count() < self.max_kernels

        async def get_rendered_notebook(self, *args, **kwargs):
            # Voila hands a visitor a pooled kernel here.
            result = await super().get_rendered_notebook(*args, **kwargs)
            self._taken[result[2]] = time.monotonic()
            return result

        def arriving(self) -> int:
            """Visitors whose page has a kernel but has not connected to it yet."""
            now, connections = time.monotonic(), self._kernel_connections
            for kernel_id, taken in list(self._taken.items()):
                gone = kernel_id not in connections  # shut down (a closed tab)
                if gone or connections[kernel_id] > 0 or now - taken > ARRIVAL_SECONDS:
                    del self._taken[kernel_id]  # connected, gone, or given up on
            return len(self._taken)

        async def start_kernel(self, *args, **kwargs):
            if len(self.list_kernel_ids()) >= self.max_kernels:
                raise RuntimeError(f"the class is full ({self.max_kernels} kernels)")
            return await super().start_kernel(*args, **kwargs)

        async def cull_kernel_if_idle(self, kernel_id: str):
            # A kernel still starting has no last activity yet, and jupyter_server's culler
            # logged a traceback for it on a busy server: it is not idle, so it stays.
            km = self._kernels.get(kernel_id)
            if km is not None and not km.trait_has_value("last_activity"):
                return
            return await super().cull_kernel_if_idle(kernel_id)

        def _refill(self) -> None:
            idle = self._idle_cpu.cores()  # sampled every tick: idle since the last one
            if self.activity.quiet_for() < QUIET_SECONDS or self.arriving():
                return  # visitors are arriving or using the dashboard: they get the CPU
            if idle is not None and idle < SPARE_CORES:
                return  # the machine is busy: a kernel started now would starve, and slow it
            for name, kwargs in self._wanted.items():
                pool = self._pools.setdefault(name, [])
                room = self.max_kernels - self.count()
                parallel = MAX_PARALLEL_STARTS - self.starting()
                if len(pool) >= self.target_size(name) or room < 1 or parallel < 1:
                    continue
                config = dict(self.kernel_pools_config)
                saved = config.get(name)
                entry = dict(saved or config.get("default", {}))
                entry["pool_size"] = len(pool) + 1  # one more kernel, no more
                self.kernel_pools_config = {**config, name: entry}
                try:
                    cls.fill_if_needed(self, delay=0, notebook_name=name, **kwargs)
                finally:
                    if saved is None:
                        config.pop(name, None)
                    self.kernel_pools_config = config

    ClassKernelManager.__name__ = ClassKernelManager.__qualname__ = "ClassKernelManager"
    return ClassKernelManager


def _voila_class():
    import voila.app as voila_app

    class ClassVoila(voila_app.Voila):
        """Voila with the class's safety and capacity settings (see the module's docs)."""

        def init_settings(self):
            cap = max_kernels()
            original = voila_app.voila_kernel_manager_factory

            def factory(base, preheat, pool_size, **kwargs):
                cls = original(base, preheat, pool_size, **kwargs)
                return _class_kernel_manager(cls, cap) if preheat else cls

            voila_app.voila_kernel_manager_factory = factory
            try:
                settings = super().init_settings()
            finally:
                voila_app.voila_kernel_manager_factory = original
            if not hasattr(self.kernel_manager, "max_kernels"):
                self.kernel_manager.max_kernels = cap  # no pool: the cap still holds
                manager = self.kernel_manager
                manager.count = lambda: len(manager.list_kernel_ids())
                manager.has_room = lambda: manager.count() < cap
            settings["kernel_websocket_connection_class"] = SafeKernelConnection
            manager = self.kernel_manager
            manager.kernel_manager_class = f"{__name__}.{NicedKernelManager.__name__}"
            if not hasattr(manager, "activity"):
                manager.activity = Activity()
            settings["log_function"] = _log_request(manager.activity)
            self.log.info("At most %d kernels (FLOWEDU_MAX_KERNELS)", cap)
            return settings

        def setup_template_dirs(self):
            super().setup_template_dirs()
            self.template_paths = [str(TEMPLATES), *self.template_paths]  # ours first
            listed = os.environ.get("FLOWEDU_PAGE_CHUNKS", str(PAGE_CHUNKS))
            try:
                names = page_chunk_names(Path(listed)) if listed else []
            except OSError as err:
                raise SystemExit(
                    f"FLOWEDU_PAGE_CHUNKS={listed}: cannot read that list of Voila's chunks "
                    f"({err.strerror}). Point it at a file like {PAGE_CHUNKS}, or set it to "
                    '"" to send no chunks in one file'
                ) from None
            folder = Path(tempfile.mkdtemp(prefix="flowedu-chunks-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            (folder / CHUNKS_FILE).write_bytes(chunk_bundle(names, self.static_paths))
            self.static_paths = [str(folder), *self.static_paths]

        def init_handlers(self):
            handlers = super().init_handlers()
            out = []
            for spec in handlers:
                if len(spec) >= 2 and spec[1] is voila_app.TornadoVoilaHandler:
                    spec = (spec[0], _page_handler(spec[1]), *spec[2:])
                elif len(spec) >= 2 and "labextensions" in spec[0]:
                    spec = (spec[0], _static_handler(spec[1], cache_hashed=True), *spec[2:])
                elif len(spec) >= 2 and re.search(r"/voila/(static|templates)/", spec[0]):
                    spec = (spec[0], _static_handler(spec[1], cache_hashed=False), *spec[2:])
                out.append(spec)
            return out

        def start(self):
            local = self.ip in ("127.0.0.1", "localhost", "::1")
            has_token = bool(self.token) or bool(self.auto_token)
            if not local and not has_token and os.environ.get("FLOWEDU_OPEN") != "1":
                raise SystemExit(
                    f"refusing to serve on {self.ip} without a class password: anybody who "
                    "can reach this machine would get a kernel. Set one with --token=SECRET "
                    "(CLASS_TOKEN=SECRET for scripts/serve_dashboard.sh), or serve on "
                    "127.0.0.1 behind a reverse proxy (docs/classroom.md), or set "
                    "FLOWEDU_OPEN=1 if the network is private to the class"
                )
            if self.tornado_settings.get("disable_check_xsrf"):
                raise SystemExit(
                    "disable_check_xsrf is set (voila.json or the command line): it turns off "
                    "the XSRF and Origin checks of every request. Remove it; the dashboard's "
                    "page carries a valid XSRF token"
                )
            return super().start()

    return ClassVoila


# One kernel per visitor: one thread each keeps the machine's cores from being
# oversubscribed. With NumPy's default (a BLAS thread per core), thirty kernels recomputing
# their frames at once used 6.6 s of CPU where one thread each used 2.0 s (benchmarks/
# load_test.py, N = 30): idle BLAS threads spin while they wait for work.
ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv: list[str] | None = None) -> None:
    for name in ONE_THREAD:  # kernels inherit the server's environment
        os.environ.setdefault(name, "1")
    _voila_class().launch_instance(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
