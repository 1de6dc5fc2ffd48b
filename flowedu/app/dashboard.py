"""The dashboard: controls, the animated canvas, the numbers of the flow, and live training.

    from flowedu.app import Dashboard
    Dashboard().show()

Compute in the kernel, animate in the browser: a change of family, dataset, direction or
number of points runs one pass of the flow here (frames.compute_frames) and sends all of
its frames once; playing, scrubbing, the grid and the colouring then happen in the browser
alone. Nothing here can run a visitor's code: there are no text inputs, only choices.

The shipped flows are shown with NumPy alone (numpy_flow: one visitor's kernel then needs no
torch); torch is imported in the background the first time Train is pressed.
"""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets

from .. import pretrained_flows
from . import frames as fr
from . import numpy_flow
from .canvas import FlowCanvas, LossCurve

POINT_CHOICES = [("500", 500), ("1,000", 1000), ("2,000", 2000), ("5,000", 5000), ("10,000", 10000)]
DIRECTION_CHOICES = [("N(0,I) \u2192 data", "generate"), ("data \u2192 N(0,I)", "normalize")]
COLOUR_CHOICES = [("base \u2192 data", "flow"), ("area change", "logdet")]
# How each family of shipped flows is named on the page (pretrained_flows.MODELS).
FAMILY_LABELS = {"realnvp": "RealNVP", "spline": "spline"}
INTRO = (
    "A normalizing flow is a chain of invertible layers. Watch it carry "
    '<b class="flowedu-base">samples of N(0, I)</b> and a grid, layer by layer, onto '
    '<b class="flowedu-data">the data</b>, or run it backwards from data to N(0, I).'
)


class Dashboard:
    """The app served by Voila from notebooks/dashboard.ipynb.

    dataset, direction, n_points, ...: the setting shown first; family: which shipped
        family (pretrained_flows.MODELS) is shown first; the page offers those that ship.
    train_steps: steps of the Train button (None: 1500 on a CPU, 4000 on a GPU).
    torch_threads: CPU threads for torch once Train imports it (None: torch's default).
        Voila starts one kernel per visitor, so one thread each keeps a shared server's
        cores from being oversubscribed: on a busy 2-core machine a pass of the flow took
        0.2 s with 1 thread and 1.2 s with 2.
    """

    def __init__(
        self,
        dataset: str = "moons",
        direction: str = "generate",
        n_points: int = 2000,
        show_grid: bool = True,
        show_heatmap: bool = False,
        colour_by: str = "flow",
        autoplay: bool = True,
        canvas_size: int = 600,
        train_steps: int | None = None,
        torch_threads: int | None = 1,
        family: str | None = None,
    ):
        from flowedu.datasets import NAMES

        fr.check_setting(dataset, direction, n_points)
        families = shipped_families()
        family = families[0] if family is None else family
        if family not in pretrained_flows.MODELS:
            raise ValueError(
                f"unknown family {family!r}; choose one of {', '.join(pretrained_flows.MODELS)}"
            )
        if family not in families:
            families.append(family)
        if colour_by not in ("flow", "logdet"):
            raise ValueError(f"colour_by must be 'flow' or 'logdet', got {colour_by!r}")
        self.train_steps = train_steps
        self.torch_threads = torch_threads
        self.trainer = None  # the BackgroundTrainer of the current run, if any
        self._starting = False  # Train pressed, torch still being imported
        self._flows: dict[tuple, tuple] = {}  # (family, dataset) -> (flow, metadata, source)
        self._heatmaps: dict[tuple, object] = {}  # (family, dataset) -> its density images
        self._frames = None  # the Frames now shown
        self._lock = threading.RLock()  # the training thread also refreshes the view
        self._train_count = 0

        self.canvas = FlowCanvas(
            size=canvas_size,
            show_grid=show_grid,
            show_heatmap=False,
            colour_by=colour_by,
            autoplay=autoplay,
        )
        self.dataset = widgets.Dropdown(options=list(NAMES), value=dataset, description="data")
        self.family = widgets.ToggleButtons(
            options=[(FAMILY_LABELS.get(m, m), m) for m in families],
            value=family,
            tooltips=[f"the shipped {FAMILY_LABELS.get(m, m)} flows" for m in families],
            style={"button_width": "118px"},
        )
        self.family.add_class("flowedu-family")
        self.direction = widgets.ToggleButtons(
            options=DIRECTION_CHOICES,
            value=direction,
            tooltips=["generate: x = f(z)", "normalize: z = f\u207b\u00b9(x)"],
            style={"button_width": "118px"},
        )
        self.n_points = widgets.Dropdown(
            options=POINT_CHOICES
            + ([] if n_points in dict(POINT_CHOICES).values() else [(f"{n_points:,}", n_points)]),
            value=n_points,
            description="points",
        )
        self.grid = widgets.Checkbox(value=show_grid, description="grid lines", indent=False)
        self.heatmap = widgets.Checkbox(
            value=show_heatmap, description="density heatmap", indent=False
        )
        self.colour = widgets.ToggleButtons(
            options=COLOUR_CHOICES,
            value=colour_by,
            tooltips=[
                "blue N(0, I) turning orange as it becomes data",
                "red: this layer spreads points apart; blue: it squeezes them",
            ],
            style={"button_width": "118px"},
        )
        # The grid never needs the kernel: linked in the browser. (A selection's value does
        # not sync to the browser, only its index, so the colouring is linked here.)
        widgets.jslink((self.grid, "value"), (self.canvas, "show_grid"))
        widgets.dlink((self.colour, "value"), (self.canvas, "colour_by"))

        self.stats = widgets.HTML()
        self.message = widgets.HTML()
        self.train_button = widgets.Button(
            description="Train",
            icon="play",
            button_style="primary",
            tooltip="train a new flow for this dataset, live",
        )
        self.restore_button = widgets.Button(
            description="Shipped flow",
            icon="undo",
            disabled=True,
            tooltip="show the pretrained flow again",
        )
        self.progress = widgets.IntProgress(value=0, min=0, max=1)
        self.loss_curve = LossCurve(width=250, height=130)
        for w in (self.progress, self.loss_curve):
            w.layout.display = "none"  # shown from the first training run on

        self.dataset.observe(self._on_dataset, "value")
        self.family.observe(self._on_dataset, "value")
        self.direction.observe(self._on_setting, "value")
        self.n_points.observe(self._on_setting, "value")
        self.heatmap.observe(self._on_heatmap, "value")
        self.train_button.on_click(self._on_train)
        self.restore_button.on_click(self._on_restore)

        self.widget = self._layout()
        self.refresh()  # also computes the density images if show_heatmap

    # ---------------------------------------------------------------- layout

    def _layout(self) -> widgets.Widget:
        def section(title: str, *children) -> widgets.VBox:
            head = widgets.HTML(f"<h3 class='flowedu-h'>{html.escape(title)}</h3>")
            return widgets.VBox([head, *children], layout={"margin": "0 0 10px 0"})

        for w in (self.dataset, self.n_points):
            w.style.description_width = "52px"
            w.layout.width = "250px"
        for w in (self.train_button, self.restore_button):
            w.layout.width = "124px"
        self.progress.layout.width = "250px"
        controls = widgets.VBox(
            [
                section("Flow", self.family, self.dataset, self.direction),
                section("Show", self.n_points, self.grid, self.heatmap, self.colour),
                section(
                    "Train it here",
                    widgets.HBox([self.train_button, self.restore_button]),
                    self.progress,
                    self.loss_curve,
                    self.message,
                ),
            ],
            layout={"width": "260px", "margin": "0 16px 0 0"},
        )
        side = widgets.VBox(
            [
                section("This flow", self.stats),
                widgets.HTML(
                    "<p class='flowedu-help'>\u25b6 plays the pass (tick loop to keep it "
                    "going); drag the slider to scrub layer by layer (keys: space, \u2190, "
                    "\u2192 with the picture focused).</p>"
                ),
            ],
            layout={"width": "320px", "margin": "0 0 0 16px"},
        )
        intro = widgets.HTML(f"<p class='flowedu-intro'>{INTRO}</p>")
        body = widgets.HBox([controls, self.canvas, side], layout={"align_items": "flex-start"})
        app = widgets.VBox([intro, body])
        app.add_class("flowedu-app")
        return app

    def show(self) -> None:
        """Display the dashboard in the notebook (or the Voila page)."""
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.show()

    # ---------------------------------------------------------------- flows

    def flow_for(self, dataset: str, family: str | None = None):
        """(flow, metadata, source) for `dataset` in `family` (None: the family shown):
        loaded on first use, then kept."""
        key = (family or self.family.value, dataset)
        with self._lock:
            if key not in self._flows:
                self._flows[key] = self._load(*key)
            return self._flows[key]

    def _load(self, family: str, dataset: str) -> tuple:
        """The shipped flow as load_shipped_flow gives it, or an untrained one if it is missing."""
        try:
            return (*load_shipped_flow(dataset, family), "shipped")
        except pretrained_flows.MissingCheckpointError as err:
            self._say(f"\u26a0 {html.escape(str(err))}. Showing an untrained flow.")
            return _untrained_flow(dataset, family), {}, "untrained"

    # ---------------------------------------------------------------- view

    def refresh(self) -> None:
        """Compute the frames of the current setting and send them to the canvas."""
        with self._lock:
            dataset, key = self.dataset.value, (self.family.value, self.dataset.value)
            flow, metadata, source = self.flow_for(dataset)
            try:
                frames = fr.compute_frames(
                    flow, dataset, self.direction.value, self.n_points.value, grid=True
                )
            except (ValueError, FloatingPointError) as err:
                self._say(f"\u26a0 could not run this flow: {html.escape(str(err))}")
                return
            heat = self._heatmaps.get(key) if self.heatmap.value else None
            if self.heatmap.value and heat is None:
                heat = self._heatmaps[key] = fr.density_heatmaps(flow, frames.half)
            self._frames = frames
            self.canvas.show_frames(frames, heat)
            self.canvas.show_heatmap = self.heatmap.value
            self.stats.value = _stats_html(flow, metadata, source, frames) + self._families_html(
                dataset
            )
            self.restore_button.disabled = source != "trained" or self.busy
            fr.release_freed_memory()  # one kernel per visitor: keep each one small

    def _on_dataset(self, change) -> None:
        self.refresh()

    def _on_setting(self, change) -> None:
        self.refresh()

    def _on_heatmap(self, change) -> None:
        with self._lock:
            if change["new"] and self._frames is not None:
                key = (self.family.value, self.dataset.value)
                if key not in self._heatmaps:
                    flow = self.flow_for(key[1])[0]
                    self._heatmaps[key] = fr.density_heatmaps(flow, self._frames.half)
                    fr.release_freed_memory()
                self.canvas.show_heatmaps(self._heatmaps[key])
            self.canvas.show_heatmap = bool(change["new"])

    def _say(self, text: str) -> None:
        self.message.value = f"<p class='flowedu-msg'>{text}</p>"

    # ---------------------------------------------------------------- training

    @property
    def training(self) -> bool:
        return self.trainer is not None and self.trainer.running

    @property
    def busy(self) -> bool:
        """Training, or about to (torch being imported)."""
        return self._starting or self.training

    def train(self, steps: int | None = None, device=None, wait: bool = False):
        """Train a new flow for the current family and dataset in the background.

        The first time, torch is imported first, in the background too (the button says so);
        the BackgroundTrainer starts once it is loaded. Returns the BackgroundTrainer, or
        None while torch is still loading (wait=True: wait for it and return the trainer).
        A call while a run is going stops it instead.
        """
        with self._lock:
            if self.training:
                self.stop_training()
                return self.trainer
            if self._starting:
                return None
            self._starting = True
            self.train_button.disabled = True
            self.restore_button.disabled = True
            self.train_button.description, self.train_button.icon = "Loading torch\u2026", "spinner"
            self._say("Loading PyTorch to train (a few seconds, the first time only)\u2026")
            family, dataset = self.family.value, self.dataset.value
        ready = threading.Event()

        def start():
            try:
                self._start_training(family, dataset, steps, device)
            except Exception as err:  # torch missing or broken: say so, keep the page working
                self._say(f"\u26a0 could not start training: {html.escape(str(err))}")
                self._reset_train_button()
            finally:
                self._starting = False
                ready.set()

        threading.Thread(target=start, name="flowedu-import-torch", daemon=True).start()
        if wait:
            ready.wait(300)
            return self.trainer
        return None

    def _start_training(self, family: str, dataset: str, steps, device) -> None:
        from .training import BackgroundTrainer, import_torch

        seconds = import_torch(self.torch_threads)
        with self._lock:
            flow = self.flow_for(dataset, family)[0]
            self._train_count += 1
            self.trainer = BackgroundTrainer(
                flow,
                dataset,
                steps=steps if steps is not None else self.train_steps,
                device=device,
                seed=self._train_count,
                on_progress=self._on_progress,
                on_done=lambda result, key=(family, dataset): self._on_trained(key, result),
            )
            from flowedu.datasets import entropy

            self.progress.layout.display = self.loss_curve.layout.display = None
            self.progress.max, self.progress.value = self.trainer.steps, 0
            self.progress.bar_style = "info"
            label = f"{FAMILY_LABELS.get(family, family)}, {dataset}"
            self.loss_curve.reset(self.trainer.steps, entropy(dataset), label=label)
            self.train_button.description, self.train_button.icon = "Stop", "stop"
            self.train_button.button_style = "danger"
            self.train_button.disabled = False
            device_name = _device_label(self.trainer.device)
            loaded = f" (PyTorch loaded in {seconds:.1f} s)" if seconds > 0.05 else ""
            self._say(
                f"Training a new {html.escape(label)} flow from scratch on {device_name}: "
                f"{self.trainer.steps:,} steps{loaded}. The old flow stays on screen until it "
                "is done."
            )
            self.trainer.start()

    def stop_training(self) -> None:
        """Stop the running training; the flow on screen is kept."""
        if self.training:
            self.trainer.stop()
            self.train_button.disabled = True
            self._say("Stopping\u2026")

    def _on_train(self, _button) -> None:
        self.train()

    def _on_progress(self, step: int, loss: float) -> None:
        self.progress.value = step
        self.loss_curve.add(step, loss)

    def _reset_train_button(self) -> None:
        self.train_button.description, self.train_button.icon = "Train", "play"
        self.train_button.button_style = "primary"
        self.train_button.disabled = False

    def _on_trained(self, key: tuple, result) -> None:
        with self._lock:
            if result.status == "done":
                self._flows[key] = (result.flow, result.metadata, "trained")
                self._heatmaps.pop(key, None)
                if (self.family.value, self.dataset.value) == key:
                    self.refresh()
                self.progress.bar_style = "success"
            else:
                self.progress.bar_style = "warning" if result.status == "stopped" else "danger"
            self._say(html.escape(result.message))
            self._reset_train_button()
            self.restore_button.disabled = self.flow_for(self.dataset.value)[2] != "trained"

    def _on_restore(self, _button) -> None:
        with self._lock:
            key = (self.family.value, self.dataset.value)
            self._flows[key] = self._load(*key)
            self._heatmaps.pop(key, None)
            label = f"{FAMILY_LABELS.get(key[0], key[0])} {key[1]}"
            self._say(f"Showing the shipped {html.escape(label)} flow again.")
            self.refresh()

    def _families_html(self, dataset: str) -> str:
        """The shipped families side by side on this dataset: test NLL, gap, size, cost."""
        families = [value for _, value in self.family.options]
        if len(families) < 2:
            return ""
        rows = []
        for family in families:
            meta = self._shipped_metadata(family, dataset)
            label = html.escape(FAMILY_LABELS.get(family, family))
            if meta is None:
                rows.append(f"<tr><th>{label}</th><td colspan='3'>not shipped</td></tr>")
                continue
            nll = _fmt(meta.get("test_nll"), ".3f")
            if meta.get("test_nll_stderr") is not None:
                nll += f" \u00b1 {meta['test_nll_stderr']:.3f}"
            params = _fmt(meta.get("n_params"), ",")
            rows.append(
                f"<tr><th>{label}</th><td>{nll}</td><td>{_fmt(meta.get('gap'), '.3f')}</td>"
                f"<td>{params}</td></tr>"
            )
        head = "<tr><th></th><th>test NLL</th><th>gap</th><th>parameters</th></tr>"
        return (
            f"<h3 class='flowedu-h'>Shipped families on {html.escape(dataset)}</h3>"
            f"<table class='flowedu-stats flowedu-families'>{head}{''.join(rows)}</table>"
        )

    def _shipped_metadata(self, family: str, dataset: str) -> dict | None:
        key = (family, dataset)
        shown = self._flows.get(key)
        if shown is not None and shown[2] == "shipped":
            return shown[1]
        try:
            return numpy_flow.metadata(dataset, family)
        except (OSError, ValueError):
            return None


def shipped_families() -> list[str]:
    """The families the page offers: the default one, and every other that ships files."""
    models = list(pretrained_flows.MODELS)
    return [m for i, m in enumerate(models) if i == 0 or pretrained_flows.available(m)]


def _fmt(value, fmt: str) -> str:
    return "\u2014" if value is None else format(value, fmt)


def load_shipped_flow(dataset: str, family: str) -> tuple:
    """(flow, metadata) of a shipped flow as the dashboard shows it: with NumPy where every
    layer has a NumPy twin (no torch needed), else with torch. Raises MissingCheckpointError."""
    try:
        return numpy_flow.load_shipped(dataset, family)
    except numpy_flow.UnsupportedFlow:
        return pretrained_flows.load_pretrained(dataset, family)


def _untrained_flow(dataset: str, family: str = "realnvp"):
    """A new flow (the identity after standardising the data), for a missing checkpoint."""
    from flowedu.recipes import new_flow

    return new_flow(dataset, model=family).eval()


def _device_label(device) -> str:
    from flowedu.train import device_name

    return html.escape(device_name(device))


def _stats_html(flow, metadata: dict, source: str, frames) -> str:
    """The numbers of the flow shown, as an HTML table."""
    from flowedu.datasets import entropy

    n_couplings = sum(layer.kind == "coupling" for layer in flow.layers)
    has_std = any(layer.kind == "standardize" for layer in flow.layers)
    n_params = (
        flow.n_params if fr.is_numpy_flow(flow) else sum(p.numel() for p in flow.parameters())
    )
    H = metadata.get("entropy", entropy(frames.dataset))

    def num(key, fmt):
        value = metadata.get(key)
        return "\u2014" if value is None else format(value, fmt)

    nll = num("test_nll", ".3f")
    if metadata.get("test_nll_stderr") is not None:
        nll += f" \u00b1 {metadata['test_nll_stderr']:.3f}"
    steps = "\u2014"
    if metadata.get("steps") is not None:
        batch = metadata.get("batch_size")
        steps = f"{metadata['steps']:,}" + (f" \u00d7 batch {batch:,}" if batch else "")
    took = "\u2014" if metadata.get("seconds") is None else _duration(metadata["seconds"])
    where = html.escape(str(metadata.get("device_name", "\u2014")))
    origin = {
        "shipped": "shipped checkpoint",
        "trained": "trained here, just now",
        "untrained": "untrained: no checkpoint",
    }[source]
    rows = [
        ("test NLL", f"{nll} nats"),
        ("true entropy H", f"{H:.3f} nats"),
        ("gap NLL \u2212 H", f"{num('gap', '.3f')} nats"),
        ("layers", f"{n_couplings} couplings" + (" + standardise" if has_std else "")),
        ("parameters", f"{n_params:,}"),
        ("trained on", where),
        ("training steps", steps),
        ("training time", took),
        ("this flow", origin),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    note = (
        "The gap is KL(data \u2016 flow): 0 would be a perfect model. "
        f"This view: {frames.n_layers + 1} frames computed in {1000 * frames.seconds:.0f} ms."
    )
    return f"<table class='flowedu-stats'>{body}</table><p class='flowedu-note'>{note}</p>"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"
