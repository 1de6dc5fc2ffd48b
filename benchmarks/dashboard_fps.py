"""Measure the dashboard: frames/s in the browser, time to interactive, frame-data time.

    python benchmarks/dashboard_fps.py [--points 5000] [--seconds 6] [--dataset rings]
                                       [--family spline]

Targets (from the issue; printed, never asserted):
- >= 50 frames/s with 5,000 points plus the grid (headless chromium caps
  requestAnimationFrame at the display rate, 60/s);
- frame data for a new setting (one pass of the flow, every intermediate kept) < 100 ms
  on the CPU;
- the page interactive (first frame drawn) < 3 s after opening, with a pre-heated kernel.

Flows come from $FLOWEDU_PRETRAINED_DIR or flowedu/pretrained/, loaded as the dashboard loads
them (with NumPy where every layer has a NumPy twin, else with torch); a missing one is
replaced by an untrained flow of the shipped recipe, which costs the same to run. Voila
listens on 127.0.0.1 only and is stopped at the end, whatever happens; the whole run is
bounded.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # voila_server.py
from voila_server import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    FIRST_FRAME,
    FRAMES_AND_MOVING_MS,
    LOOP,
    WIDGET,
    play,
    wait_for_version_after,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"


def frame_data_times(dataset: str, family: str, n_points: int, repeats: int) -> dict[str, float]:
    """Median milliseconds to compute the frames of a new setting, in this process."""
    import torch

    from flowedu import pretrained_flows
    from flowedu.app import frames as fr
    from flowedu.app.dashboard import _untrained_flow, load_shipped_flow

    torch.set_num_threads(1)  # as the dashboard's kernel does (Dashboard(torch_threads=1))
    try:
        flow, _ = load_shipped_flow(dataset, family)
    except pretrained_flows.MissingCheckpointError:
        flow = _untrained_flow(dataset, family)
    print(f"{family} flow on {dataset}: {type(flow).__name__}")
    fr.compute_frames(flow, dataset, "generate", n_points)  # warm up
    out = {}

    def timed(fn) -> tuple[float, float]:
        """(wall, CPU) milliseconds. With one thread, CPU time is what the work takes on a
        core of its own: on a machine busy with other jobs, wall time can be far longer."""
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return 1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)

    for direction in fr.DIRECTIONS:
        runs = [
            timed(lambda d=direction: fr.compute_frames(flow, dataset, d, n_points, grid=True))
            for _ in range(repeats)
        ]
        what = f"frame data, {direction}, {n_points:,} points + grid"
        out[f"{what}, wall ms"] = statistics.median(r[0] for r in runs)
        out[f"{what}, CPU ms"] = statistics.median(r[1] for r in runs)
    half = fr.view_half_width(dataset)
    runs = [timed(lambda: fr.density_heatmaps(flow, half)) for _ in range(max(3, repeats // 3))]
    what = f"density heatmaps, {len(flow.layers) + 1} images (once per flow)"
    out[f"{what}, wall ms"] = statistics.median(r[0] for r in runs)
    out[f"{what}, CPU ms"] = statistics.median(r[1] for r in runs)
    out["layers in the flow"] = len(flow.layers)
    return out


def measure_fps(page, seconds: float) -> tuple[float, float]:
    """Frames drawn per second of motion, and the JavaScript ms per frame.

    The page rests 1.2 s on the last layer before it loops and draws nothing then, so the
    time counted is the time the animation was moving (canvas.js keeps it).
    """
    page.locator(LOOP).check()  # opened, the page plays once; this measures it looping
    play(page)
    page.wait_for_timeout(500)  # let the first frames after a change settle
    f0, t0 = page.evaluate(FRAMES_AND_MOVING_MS)
    page.wait_for_timeout(1000 * seconds)
    f1, t1 = page.evaluate(FRAMES_AND_MOVING_MS)
    draw_ms = float(page.locator(WIDGET).get_attribute("data-draw-ms"))
    return (f1 - f0) / ((t1 - t0) / 1000), draw_ms


def show_setting(page, dataset: str, family: str) -> None:
    """Switch the page to `dataset` and `family`, waiting for each one's frames."""
    from flowedu.app.dashboard import FAMILY_LABELS

    def then_wait(act) -> None:
        version = int(page.locator(WIDGET).get_attribute("data-version"))
        act()
        wait_for_version_after(page, version)

    select = page.locator(".flowedu-app select").first
    if select.input_value() != dataset:
        then_wait(lambda: select.select_option(dataset))
    button = page.locator(".flowedu-family button", has_text=FAMILY_LABELS.get(family, family))
    if "mod-active" not in (button.get_attribute("class") or ""):
        then_wait(button.click)


def browser_numbers(
    n_points: int, seconds: float, loads: int, dataset: str, family: str
) -> dict[str, float]:
    from playwright.sync_api import sync_playwright
    from voila_server import serve, wait_until_idle

    out = {}
    with serve(NOTEBOOK, cwd=ROOT) as server:
        out["pre-heating the kernel (server start to idle), s"] = wait_until_idle(
            server.process.pid
        )
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = None
                for visit in range(1, loads + 1):  # each visit uses a fresh pre-heated kernel
                    if page is not None:
                        page.close()
                        # Voila refills the pool fill_delay (5 s, voila.json) after a kernel
                        # is taken; then the new kernel runs the notebook until idle.
                        time.sleep(6)
                        wait_until_idle(server.process.pid)
                    page = browser.new_page(viewport={"width": 1280, "height": 860})
                    page.set_default_timeout(60_000)
                    page.goto(server.url)
                    page.locator(f"{WIDGET}[data-version]").wait_for()
                    page.wait_for_function(FIRST_FRAME)
                    out[f"navigation to first frame drawn (interactive), visit {visit}, s"] = (
                        page.evaluate("window.__flowedu_first_frame_ms") / 1000
                    )
                show_setting(page, dataset, family)
                version = int(page.locator(WIDGET).get_attribute("data-version"))
                page.locator(".flowedu-app select").nth(1).select_option(label=f"{n_points:,}")
                wait_for_version_after(page, version)
                fps, draw_ms = measure_fps(page, seconds)
                out[f"frames/s, {n_points:,} points + grid"] = fps
                out[f"JavaScript per frame, {n_points:,} points + grid, ms"] = draw_ms
                page.get_by_label("density heatmap").click()
                page.locator("button", has_text="area change").click()
                page.wait_for_function(
                    f"() => document.querySelector('{WIDGET}').dataset.version > {version + 1}"
                )
                fps, draw_ms = measure_fps(page, seconds)
                out[f"frames/s, {n_points:,} points + grid + heatmap + area colours"] = fps
                out["JavaScript per frame, + heatmap + area colours, ms"] = draw_ms
            finally:
                browser.close()
    return out


def main() -> None:
    from flowedu.pretrained_flows import MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=6.0, help="of play per fps reading")
    parser.add_argument("--dataset", default="moons")
    parser.add_argument("--family", default="realnvp", choices=MODELS)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--loads", type=int, default=2, help="page visits (one kernel each)")
    parser.add_argument("--timeout", type=int, default=300, help="give up after this many s")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")

    def give_up(*_):
        raise TimeoutError(f"the benchmark ran past {args.timeout} s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(args.timeout)  # the Voila server is stopped on the way out
    source = os.environ.get("FLOWEDU_PRETRAINED_DIR") or "flowedu/pretrained/"
    print(f"pretrained flows from: {source}")
    print(f"CPU load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = frame_data_times(args.dataset, args.family, args.points, args.repeats)
    rows |= browser_numbers(args.points, args.seconds, args.loads, args.dataset, args.family)
    targets = {"frames/s": ">= 50", "frame data": "< 100 ms", "first frame": "< 3 s"}
    print("\n| measure | value | target |\n| --- | --- | --- |")
    for name, value in rows.items():
        target = next((t for key, t in targets.items() if name.startswith(key) or key in name), "")
        shown = str(value) if isinstance(value, int) else f"{value:.1f}"
        print(f"| {name} | {shown} | {target} |")
    print(f"\nCPU load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
