"""The dashboard as a visitor sees it: a real Voila server and Debian's headless chromium.

One Voila server and one page serve the whole module (opening the page is what costs time);
each test first puts the page in the state it needs. Skipped only when /usr/bin/chromium is
missing (CI installs it: apt-get install chromium).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from voila_server import CHROMIUM, CHROMIUM_ARGS, LOOP, WIDGET, play, wait_for_version_after

from flowedu.app.serve import CHUNK_NAME, CHUNKS_FILE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"
SCREENSHOT = ROOT / "artifacts" / "dashboard.png"
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); "
    "Playwright cannot download its own browser here",
)

# A hash of the canvas pixels: two drawings differ if and only if (almost surely) it does.
CANVAS_HASH = """() => {
  const c = document.querySelector('.flowedu-canvas');
  const px = new Uint32Array(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.buffer);
  let h = 2166136261;
  for (let i = 0; i < px.length; i++) h = Math.imul(h ^ px[i], 16777619);
  return h >>> 0;
}"""


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    """The shipped checkpoint of each dataset where it exists, a quickly trained one where not.

    The shipped flows are what a class sees, so they are preferred; but they are trained
    separately (python -m flowedu.pretrain, minutes each), and this test checks the page,
    not the flows' quality, so it must not depend on whether or when they were made. A small
    flow trained for 40 steps per dataset (about a second each) stands in for a missing one.
    """
    import torch

    from flowedu import checkpoint, datasets, pretrained_flows
    from flowedu.pretrained_flows import SHIPPED_DIR
    from flowedu.realnvp import realnvp
    from flowedu.train import fit

    out = tmp_path_factory.mktemp("pretrained") / "realnvp"
    out.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: extra threads only wait for each other
    for name in datasets.NAMES:
        shipped = SHIPPED_DIR / "realnvp" / f"{name}.safetensors"
        if shipped.is_file():
            shutil.copy(shipped, out / shipped.name)
            continue
        x = datasets.sample(name, 5000, seed=1)
        flow = realnvp(
            n_layers=6, hidden=(32, 32), standardize=(x.mean(0).tolist(), x.std(0).tolist())
        )
        history = fit(flow, x, steps=40, batch_size=256, device="cpu", progress=False)
        meta = {"dataset": name, "device_name": history.device_name, "steps": history.steps}
        checkpoint.save(out / f"{name}.safetensors", flow, meta)
    torch.set_num_threads(threads)
    for model in pretrained_flows.MODELS[1:]:  # the other families, where they ship
        for name in pretrained_flows.available(model):
            (out.parent / model).mkdir(exist_ok=True)
            shutil.copy(pretrained_flows.checkpoint_path(name, model), out.parent / model)
    return out.parent


@pytest.fixture(scope="module")
def app(pretrained_dir):
    """The dashboard page, opened once, with every page error and console error recorded."""
    from playwright.sync_api import sync_playwright
    from voila_server import serve

    env = {"FLOWEDU_PRETRAINED_DIR": str(pretrained_dir)}
    with serve(NOTEBOOK, env=env, cwd=ROOT) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(TIMEOUT_MS)
            page.errors = []
            page.on("pageerror", lambda err: page.errors.append(f"page error: {err}"))
            page.requests = []
            page.on("request", lambda request: page.requests.append(request.url))

            def on_console(msg):
                # This machine has no internet: the Voila template's font CDN cannot load.
                external = not msg.location.get("url", "").startswith(server.url)
                if msg.type == "error" and not (external and "Failed to load" in msg.text):
                    page.errors.append(f"console error: {msg.text}")

            page.on("console", on_console)
            page.add_init_script(RAF_COUNTER)
            page.goto(server.url, timeout=TIMEOUT_MS)
            page.locator(f"{WIDGET}[data-version]").wait_for()
            yield page
        finally:
            browser.close()


# Counts the page's requestAnimationFrame calls (the canvas's and anybody else's).
RAF_COUNTER = """
window.__raf_calls = 0;
const original = window.requestAnimationFrame.bind(window);
window.requestAnimationFrame = (callback) => {
  window.__raf_calls += 1;
  return original(callback);
};
"""


def version(page) -> int:
    return int(page.locator(WIDGET).get_attribute("data-version"))


def pause_at(page, position: float) -> None:
    """Pause the animation and scrub to `position` (in layers)."""
    if page.locator(WIDGET).get_attribute("data-playing") == "1":
        page.locator(".flowedu-play").click()
    page.evaluate(
        """(p) => { const s = document.querySelector('.flowedu-scrub');
                    s.value = p; s.dispatchEvent(new Event('input')); }""",
        position,
    )
    page.wait_for_function(
        f"(p) => Math.abs(document.querySelector('{WIDGET}').dataset.position - p) < 1e-3",
        arg=position,
    )


def drawing(page) -> int:
    return page.evaluate(CANVAS_HASH)


def wait_for_new_drawing(page, before: int) -> int:
    page.wait_for_function(f"(h) => ({CANVAS_HASH})() !== h", arg=before, polling=100)
    return drawing(page)


def assert_no_errors(page) -> None:
    assert page.errors == []
    text = page.inner_text("body")
    assert "Traceback" not in text and "Error" not in text


def test_page_renders_the_app_without_code_or_errors(app):
    assert app.get_by_text("Normalizing flows, layer by layer").is_visible()
    assert app.locator(".flowedu-canvas").is_visible()
    assert "test NLL" in app.inner_text(".flowedu-stats")
    assert "Dashboard()" not in app.content()  # sources are stripped: no code on the page
    assert app.locator("textarea, input[type=text]").count() == 0  # nothing to type code into
    assert app.evaluate("window.__flowedu_first_frame_ms") > 0
    assert_no_errors(app)


def test_voilas_chunks_arrive_in_one_file(app):
    # flowedu.app.serve sends the chunks in flowedu/app/page_chunks.txt as one script; a
    # chunk asked for on its own is missing from that list (the page works, only slower).
    alone = [url for url in app.requests if re.search(rf"/voila/static/{CHUNK_NAME.pattern}", url)]
    assert not alone, (
        f"the page asked for {len(alone)} of Voila's chunks on their own ({alone[:3]}...): "
        "run scripts/record_page_chunks.py to list them again"
    )
    bundle = f"/voila/static/{CHUNKS_FILE}"
    assert sum(url.split("?")[0].endswith(bundle) for url in app.requests) == 1


# True once the animation has stopped at position p.
RESTING_AT = f"""(p) => {{ const w = document.querySelector('{WIDGET}');
                         return w.dataset.playing === '0' && Number(w.dataset.position) === p; }}"""


def test_opened_it_plays_the_flow_once_and_loops_only_when_asked(app):
    # Opened, the page plays the pass through once and rests on its last layer (a page
    # looping on while nobody watches keeps a core busy); with loop ticked it starts over.
    layers = float(app.locator(".flowedu-scrub").get_attribute("max"))
    assert not app.locator(LOOP).is_checked()
    app.wait_for_function(RESTING_AT, arg=layers)
    app.locator(LOOP).check()
    pause_at(app, layers - 0.3)
    app.locator(".flowedu-play").click()
    app.wait_for_function(f"() => document.querySelector('{WIDGET}').dataset.position < 0.5")
    assert app.locator(WIDGET).get_attribute("data-playing") == "1"  # looped, still playing
    app.locator(LOOP).uncheck()
    pause_at(app, 0)
    assert_no_errors(app)


def test_each_dataset_can_be_chosen_and_is_redrawn(app):
    from flowedu.datasets import NAMES

    select = app.locator(".flowedu-app select").first
    pause_at(app, 0)
    for name in [*NAMES[1:], NAMES[0]]:
        old, before = version(app), drawing(app)
        select.select_option(name)
        wait_for_version_after(app, old)
        pause_at(app, 3)  # mid-flow, where every dataset looks different
        assert drawing(app) != before, name
    assert_no_errors(app)


def test_each_shipped_family_is_offered_beside_the_dataset_and_animates(app):
    """RealNVP, and the spline flows once they ship: each is drawn, plays, and the stats
    panel compares the families on the dataset shown."""
    from flowedu.app.dashboard import FAMILY_LABELS, shipped_families

    families = [FAMILY_LABELS.get(m, m) for m in shipped_families()]
    buttons = app.locator(".flowedu-family button")
    assert [b.strip() for b in buttons.all_inner_texts()] == families
    dataset = app.locator(".flowedu-app select").first
    if dataset.input_value() != "rings":
        before = version(app)
        dataset.select_option("rings")
        # Rings' frames must have arrived first, or they would pass for the next family's.
        wait_for_version_after(app, before)
    drawings = {}
    for label in [*families[1:], families[0]]:
        old = version(app)
        app.locator(".flowedu-family button", has_text=label).click()
        if label != families[0] or len(families) > 1:
            wait_for_version_after(app, old)
        pause_at(app, 2.5)
        drawings[label] = drawing(app)
        frames = app.evaluate("window.__flowedu_frames")
        app.locator(".flowedu-play").click()
        app.wait_for_function("(n) => window.__flowedu_frames > n + 10", arg=frames)
        if len(families) > 1:
            table = app.inner_text(".flowedu-families")
            assert all(f in table for f in families) and "test NLL" in table
    assert len(set(drawings.values())) == len(families)  # each family bends differently
    assert_no_errors(app)


def test_the_families_table_reads_as_columns(app):
    """Each number on one line, a gap between neighbouring columns, all inside the panel."""
    if app.locator(".flowedu-families").count() == 0:
        pytest.skip("only one family ships")
    layout = app.evaluate(
        """() => {
        const table = document.querySelector('.flowedu-families');
        const panel = table.parentElement.getBoundingClientRect();
        const rows = [...table.rows].map((row) => [...row.cells].map((c) => {
            const r = c.getBoundingClientRect();
            const lines = Math.round(r.height / parseFloat(getComputedStyle(c).lineHeight));
            return {left: r.left, right: r.right, lines, text: c.innerText};
        }));
        return {rows, right: table.getBoundingClientRect().right, panelRight: panel.right};
    }"""
    )
    assert layout["right"] <= layout["panelRight"] + 0.5
    for row in layout["rows"]:
        texts = [c["text"] for c in row]
        for a, b in zip(row, row[1:], strict=False):
            assert b["left"] - a["right"] >= -0.5, texts  # cells do not overlap
        numbers = [c for c in row[1:] if c["text"].strip()]
        for c in numbers:
            assert c["lines"] <= 1, texts
        contents = app.evaluate(
            """(i) => [...document.querySelector('.flowedu-families').rows[i].cells]
                      .map((c) => { const r = document.createRange(); r.selectNodeContents(c);
                                    const b = r.getBoundingClientRect();
                                    return [b.left, b.right]; })""",
            layout["rows"].index(row),
        )
        for (_, right), (left, _) in zip(contents, contents[1:], strict=False):
            assert left - right >= 6, texts  # the texts of neighbouring columns stand apart


def test_play_moves_the_points(app):
    pause_at(app, 0)
    before = drawing(app)
    app.locator(".flowedu-play").click()
    assert app.locator(WIDGET).get_attribute("data-playing") == "1"
    app.wait_for_function(f"() => document.querySelector('{WIDGET}').dataset.position > 0.5")
    assert drawing(app) != before
    frames = int(app.locator(WIDGET).get_attribute("data-frames"))
    app.wait_for_timeout(500)
    assert int(app.locator(WIDGET).get_attribute("data-frames")) > frames + 5  # still drawing
    assert_no_errors(app)


def test_a_paused_canvas_asks_the_browser_for_no_frames(app):
    # A loop of animation frames that runs on while nothing moves makes the browser compose
    # the page 60 times a second; paused, the canvas asks for a frame only to redraw.
    pause_at(app, 0)
    app.locator(".flowedu-play").click()
    assert app.locator(WIDGET).get_attribute("data-playing") == "1"
    app.wait_for_timeout(500)
    playing = app.evaluate("window.__raf_calls")
    app.wait_for_timeout(1000)
    assert app.evaluate("window.__raf_calls") - playing > 20  # about 60 a second
    pause_at(app, 1.5)
    app.wait_for_timeout(300)
    paused = app.evaluate("window.__raf_calls")
    app.wait_for_timeout(1000)
    assert app.evaluate("window.__raf_calls") - paused <= 2
    before = drawing(app)
    app.locator("button", has_text="Play").click()  # and it still moves when asked to
    wait_for_new_drawing(app, before)
    assert_no_errors(app)


@pytest.mark.parametrize(
    "control",
    ["data \u2192 N(0,I)", "grid lines", "density heatmap", "area change"],
)
def test_each_toggle_changes_the_drawing(app, control):
    pause_at(app, 2.5)
    before = drawing(app)
    if control in ("grid lines", "density heatmap"):
        app.get_by_label(control).click()
    else:
        app.locator("button", has_text=control).click()
    after = wait_for_new_drawing(app, before)
    assert after != before
    assert_no_errors(app)


def test_train_runs_in_the_background_and_a_second_click_stops_it(app):
    before = version(app)
    play(app)
    app.locator("button", has_text="Train").click()
    stop = app.locator("button", has_text="Stop")
    stop.wait_for()
    assert app.locator(".flowedu-loss").is_visible()
    frames = app.evaluate("window.__flowedu_frames")
    app.wait_for_timeout(500)
    assert app.evaluate("window.__flowedu_frames") > frames + 5  # the page never blocks
    stop.click()
    app.get_by_text("kept the previous flow").wait_for()
    assert app.locator("button", has_text="Train").is_enabled()
    assert version(app) == before  # the flow on screen was not replaced
    assert_no_errors(app)


def test_screenshot_of_the_page(app):
    app.locator(".flowedu-app select").first.select_option("moons")
    app.locator("button", has_text="N(0,I) \u2192 data").click()
    app.locator("button", has_text="base \u2192 data").click()
    for label, on in (("grid lines", True), ("density heatmap", False)):
        if app.get_by_label(label).is_checked() != on:
            app.get_by_label(label).click()
    app.locator(".flowedu-play").click()  # play a little, then stop mid-flow
    app.wait_for_timeout(1500)
    pause_at(app, 5.5)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    app.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    assert_no_errors(app)
