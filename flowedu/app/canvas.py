"""The two browser-drawn widgets of the dashboard.

FlowCanvas receives all frames of a setting once, as binary buffers, and animates them in
the browser (canvas.js): play, pause, scrub and speed never wait for the kernel, which is
what keeps the motion at the display's frame rate (FACTS.md section 3: anything driven from
the kernel tops out near 20 frames/s).
LossCurve draws the training loss against the data's true entropy (loss_curve.js).
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import numpy as np
import traitlets as t

# flowedu.style is the one place the course's colours are defined: blue is the base
# N(0, I), orange the data, in every notebook and here.
from flowedu.style import BASE_COLOR, DATA_COLOR, GRID_COLOR, MODEL_COLOR

from .frames import LOGDET_PALETTE, Frames

HERE = Path(__file__).parent


class FlowCanvas(anywidget.AnyWidget):
    """Points and grid lines moving through a flow's layers, drawn on an HTML canvas."""

    _esm = HERE / "canvas.js"
    _css = HERE / "canvas.css"

    # The frames of one setting (see frames.Frames), sent once as little-endian bytes.
    points = t.Bytes(b"").tag(sync=True)  # float32 (L + 1, n, 2)
    grid = t.Bytes(b"").tag(sync=True)  # float32 (L + 1, lines * samples, 2)
    colours = t.Bytes(b"").tag(sync=True)  # uint8 (L, n): log|det J| colour bin of each step
    heatmaps = t.Bytes(b"").tag(sync=True)  # uint8 (L + 1, s, s) in the order shown
    meta = t.Dict().tag(sync=True)  # shapes, labels, colours: what the bytes mean
    version = t.Int(0).tag(sync=True)  # +1 for each new set of frames; the browser shows it

    # What is drawn: the browser reads these on every frame.
    show_grid = t.Bool(True).tag(sync=True)
    show_heatmap = t.Bool(False).tag(sync=True)
    colour_by = t.Unicode("flow").tag(sync=True)  # "flow" (blue -> orange) or "logdet"
    autoplay = t.Bool(True).tag(sync=True)  # play once through when the first frames arrive
    size = t.Int(600).tag(sync=True)  # CSS pixels per side of the square canvas
    seconds_per_layer = t.Float(0.8).tag(sync=True)  # at speed 1x

    def show_frames(self, frames: Frames, heatmaps: np.ndarray | None = None) -> None:
        """Send one setting's frames; the browser swaps them in whole, at one version."""
        n_frames, n_points, _ = frames.points.shape
        is_generate = frames.direction == "generate"
        meta = {
            "dataset": frames.dataset,
            "direction": frames.direction,
            "n_frames": n_frames,
            "n_points": n_points,
            "grid_lines": frames.grid_shape[0],
            "grid_samples": frames.grid_shape[1],
            "half": frames.half,
            "layer_names": frames.layer_names,
            "start_label": "z ~ N(0, I): the base distribution"
            if is_generate
            else f"x: samples of the {frames.dataset} data",
            "end_label": f"x = f(z): the flow's samples ({frames.dataset})"
            if is_generate
            else "z = f\u207b\u00b9(x): should look like N(0, I)",
            "start_color": BASE_COLOR if is_generate else DATA_COLOR,
            "end_color": DATA_COLOR if is_generate else BASE_COLOR,
            "grid_color": GRID_COLOR,
            "palette": list(LOGDET_PALETTE),
            "logdet_scale": frames.logdet_scale,
        }
        with self.hold_sync():
            self.points = _le_bytes(frames.points, "<f4")
            self.grid = _le_bytes(frames.grid, "<f4")
            self.colours = _le_bytes(frames.colour_bins, "u1")
            self._set_heatmaps(heatmaps, frames.direction, meta)
            self.meta = meta
            self.version += 1

    def show_heatmaps(self, heatmaps: np.ndarray | None) -> None:
        """Replace the density images only (they belong to a flow, not to a setting)."""
        meta = dict(self.meta)
        with self.hold_sync():
            self._set_heatmaps(heatmaps, meta.get("direction", "generate"), meta)
            self.meta = meta
            self.version += 1

    def _set_heatmaps(self, heatmaps, direction: str, meta: dict) -> None:
        # frames.density_heatmaps gives image 0 = N(0, I); the normalize pass ends there.
        if heatmaps is None:
            self.heatmaps, meta["heatmap_size"] = b"", 0
            return
        ordered = heatmaps if direction == "generate" else heatmaps[::-1]
        self.heatmaps, meta["heatmap_size"] = _le_bytes(ordered, "u1"), int(heatmaps.shape[-1])


class LossCurve(anywidget.AnyWidget):
    """The loss of a training run, step by step, above a dashed line at the true entropy."""

    _esm = HERE / "loss_curve.js"

    steps = t.List(t.Int()).tag(sync=True)
    losses = t.List(t.Float()).tag(sync=True)
    total_steps = t.Int(1).tag(sync=True)
    floor = t.Float(None, allow_none=True).tag(sync=True)  # the true entropy H, nats
    label = t.Unicode("").tag(sync=True)  # what is being trained, e.g. the dataset
    color = t.Unicode(MODEL_COLOR).tag(sync=True)
    width = t.Int(300).tag(sync=True)
    height = t.Int(150).tag(sync=True)

    def reset(self, total_steps: int, floor: float | None, label: str = "") -> None:
        with self.hold_sync():
            self.steps, self.losses = [], []
            self.total_steps, self.floor, self.label = max(1, int(total_steps)), floor, label

    def add(self, step: int, loss: float) -> None:
        with self.hold_sync():
            self.steps = [*self.steps, int(step)]
            self.losses = [*self.losses, float(loss)]


def _le_bytes(array: np.ndarray, dtype: str) -> bytes:
    """The array's values as contiguous bytes of the given little-endian dtype."""
    return np.ascontiguousarray(array, dtype=np.dtype(dtype)).tobytes()
