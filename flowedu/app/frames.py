"""The numbers behind one animation: a flow's pass over a cloud of points and a grid.

For one setting (a flow, a direction, a number of points) the kernel runs Flow.trace once
and keeps every intermediate, so that the browser can replay the motion without asking the
kernel again. With L layers:

    points[k]   = the cloud after k layers, k = 0 .. L        (L + 1, n, 2)
    grid[k]     = the grid lines after k layers               (L + 1, lines * samples, 2)
    log_dets[k] = log|det J| of step k -> k + 1 at each point (L, n)

Between k and k + 1 the browser draws (1 - t) points[k] + t points[k + 1] for t in [0, 1]
(frame_at is the same formula in Python). A step with log|det J| > 0 at a point spreads the
points near it apart (the area around it grows by the factor e^{log|det J|}); < 0 squeezes
them together.

A flow here is either a flowedu Flow (torch) or a numpy_flow.NumpyFlow (the shipped flows,
shown without torch); torch is imported only for the former.
"""

from __future__ import annotations

import collections
import colorsys
import functools
import math
from dataclasses import dataclass, field

import numpy as np

DIRECTIONS = ("generate", "normalize")  # generate: N(0, I) -> data; normalize: data -> N(0, I)
MIN_POINTS, MAX_POINTS = 100, 20_000
GRID_LINES = 13  # lines in each of the two directions
GRID_SAMPLES = 64  # points along each grid line
LATENT_EXTENT = 3.0  # the latent grid covers [-3, 3]^2: 99% of N(0, I) lies inside
HEATMAP_SIZE = 48  # pixels per side of each density image; the browser smooths them
LOGDET_BINS = 11  # colours for log|det J|; odd, so that the middle colour means "area kept"
# Points per pass of the flow. A chunk's hidden activations (2048 x 128 floats, 1 MB) stay
# in the CPU's cache; one pass over 5,000 points and the grid at once took 1.4x as long.
TRACE_CHUNK = 2048


@dataclass
class Frames:
    """Every intermediate of one pass, as float32 arrays ready to send to the browser."""

    dataset: str
    direction: str
    points: np.ndarray  # (L + 1, n, 2) float32
    grid: np.ndarray  # (L + 1, lines * samples, 2) float32; lines are contiguous
    grid_shape: tuple[int, int]  # (number of lines, samples per line)
    log_dets: np.ndarray  # (L, n) float32: log|det J| of step k -> k + 1 at each point
    colour_bins: np.ndarray  # (L, n) uint8 in [0, LOGDET_BINS): log_dets binned, see below
    logdet_scale: float  # log|det J| of +-logdet_scale or beyond gets the end colours
    layer_names: list[str]  # what each of the L steps does, in the order shown
    half: float  # the view is the square [-half, half]^2
    seconds: float = 0.0  # how long compute_frames took
    extra: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return self.points.shape[0] - 1


def check_setting(dataset: str, direction: str, n_points: int) -> None:
    """Raise a ValueError that says what to pass if a setting is not one the app can show."""
    from flowedu.datasets import NAMES

    if dataset not in NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(NAMES)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'generate' or 'normalize', got {direction!r}")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)):
        raise ValueError(f"n_points must be an integer, got {n_points!r}")
    if not MIN_POINTS <= n_points <= MAX_POINTS:
        raise ValueError(
            f"n_points must be between {MIN_POINTS} and {MAX_POINTS:,}, got {n_points:,}: fewer "
            "show no shape, more make the browser drop frames"
        )


@functools.lru_cache(maxsize=16)
def view_half_width(dataset: str) -> float:
    """Half the side of the square shown: the data (99.5% of it) and N(0, I), with a margin."""
    from flowedu import datasets

    x = datasets.sample_array(dataset, 4000, seed=0)
    extent = max(3.3, float(np.quantile(np.abs(x), 0.995)))
    return math.ceil(extent * 1.15 * 2) / 2  # rounded up to a multiple of 0.5


def grid_lines(extent: float, lines: int = GRID_LINES, samples: int = GRID_SAMPLES):
    """Straight lines covering [-extent, extent]^2: `lines` vertical, then `lines` horizontal.

    Returns a float32 array of shape (2 * lines * samples, 2), one line after the other.
    """
    ticks = np.linspace(-extent, extent, lines, dtype=np.float32)
    along = np.linspace(-extent, extent, samples, dtype=np.float32)
    tick, run = np.meshgrid(ticks, along, indexing="ij")  # (lines, samples) each
    vertical = np.stack([tick, run], axis=-1)  # x fixed, y runs
    horizontal = np.stack([run, tick], axis=-1)  # y fixed, x runs
    return np.concatenate([vertical, horizontal]).reshape(-1, 2)


def start_points(dataset: str, direction: str, n_points: int, seed: int = 0):
    """The cloud a pass starts from: N(0, I) draws to generate, data samples to normalize.

    A float32 array (n_points, 2), the same for a torch flow and a NumPy one.
    """
    from flowedu import datasets

    if direction == "generate":
        x = np.random.default_rng(seed).standard_normal((n_points, 2))
    else:
        x = datasets.sample_array(dataset, n_points, seed=seed)
    return x.astype(np.float32)


def layer_names(flow, direction: str) -> list[str]:
    """A short description of each step, in the order the pass applies them, numbered
    within its kind: "coupling 3/12: scales and shifts y, given x"."""
    order = list(flow.layers) if direction == "normalize" else list(reversed(flow.layers))
    totals = collections.Counter(layer.kind for layer in order)
    seen: collections.Counter = collections.Counter()
    names = []
    for layer in order:
        seen[layer.kind] += 1
        what = layer.describe(direction)
        if totals[layer.kind] > 1:
            what = f"{layer.kind} {seen[layer.kind]}/{totals[layer.kind]}: {what}"
        names.append(what)
    return names


def logdet_scale(log_dets: np.ndarray) -> float:
    """A colour scale for log|det J|: its 90th percentile in size, two significant digits.

    Layers that change every point's area alike (such as the standardisation) are left out:
    they would set the scale and wash out the couplings' colours.
    """
    varying = [row for row in np.asarray(log_dets) if row.size and np.ptp(row) > 1e-6]
    if not varying:
        return 1.0
    q = float(np.quantile(np.abs(np.stack(varying)), 0.90))
    if not q > 0.05:
        return 0.05
    return float(f"{q:.2g}")


def logdet_colour_bins(log_dets: np.ndarray, scale: float, bins: int = LOGDET_BINS) -> np.ndarray:
    """Bin log|det J| into `bins` colours: bins // 2 is 0 (area kept), 0 is <= -scale (area
    shrinks by e^scale or more), bins - 1 is >= +scale (area grows by e^scale or more)."""
    half = bins // 2
    u = np.clip(np.asarray(log_dets, dtype=np.float64) / scale, -1.0, 1.0)
    return (np.rint(u * half) + half).astype(np.uint8)


# logdet_palette(LOGDET_BINS), written out: the dashboard's kernel then never imports
# matplotlib (about 10 MB of private memory and 0.3 s of start-up per visitor's kernel).
# tests/test_dashboard_faults.py checks that it still equals the computed palette.
LOGDET_PALETTE = (
    "#3b4cc0", "#5170e1", "#3c71f6", "#3476fe", "#4f86e3", "#9b9997",
    "#df8253", "#f17341", "#ea6b48", "#d65244", "#b40426",
)  # fmt: skip


@functools.lru_cache(maxsize=4)
def logdet_palette(bins: int = LOGDET_BINS) -> tuple[str, ...]:
    """The hex colour of each bin, from the course's expand / contract colour map."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    from flowedu.style import EXPAND_CMAP

    cmap = colormaps[EXPAND_CMAP]
    colours = []
    for i in range(bins):
        h, lightness, s = colorsys.rgb_to_hls(*cmap(i / (bins - 1))[:3])
        # Darken the pale middle of the map, so that points whose area barely changes
        # still show on a white page and on the grey density.
        colours.append(to_hex(colorsys.hls_to_rgb(h, min(lightness, 0.6), s)))
    return tuple(colours)


def compute_frames(
    flow,
    dataset: str,
    direction: str = "generate",
    n_points: int = 2000,
    grid: bool = True,
    seed: int = 0,
) -> Frames:
    """Run one pass of `flow` over n_points (and the grid lines) and keep every intermediate.

    direction="generate" starts from N(0, I) draws and a grid over [-3, 3]^2 in latent space;
    "normalize" starts from samples of `dataset` and a grid over the data. The same seed
    gives the same points, so changing a setting never reshuffles the cloud.
    """
    import time

    check_setting(dataset, direction, n_points)
    start = time.perf_counter()
    half = view_half_width(dataset)
    x = start_points(dataset, direction, n_points, seed)
    if grid:
        extent = LATENT_EXTENT if direction == "generate" else round(half / 1.15, 1)
        x = np.concatenate([x, grid_lines(extent)])
    stacked, log_dets = _trace_in_chunks(flow, x, direction)
    log_dets = log_dets[:, :n_points]  # (L, n)
    scale = logdet_scale(log_dets)
    return Frames(
        dataset=dataset,
        direction=direction,
        points=np.ascontiguousarray(stacked[:, :n_points]),
        grid=np.ascontiguousarray(stacked[:, n_points:]),
        grid_shape=(2 * GRID_LINES, GRID_SAMPLES) if grid else (0, GRID_SAMPLES),
        log_dets=np.ascontiguousarray(log_dets),
        colour_bins=logdet_colour_bins(log_dets, scale),
        logdet_scale=scale,
        layer_names=layer_names(flow, direction),
        half=half,
        seconds=time.perf_counter() - start,
    )


def is_numpy_flow(flow) -> bool:
    """Whether `flow` is a numpy_flow.NumpyFlow (else a torch flowedu Flow)."""
    return getattr(flow, "backend", "torch") == "numpy"


def _trace_in_chunks(flow, x: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Flow.trace over x (float32, (n, 2)) in chunks: (L + 1, n, 2) points, (L, n) log-dets."""
    chunks = [x[i : i + TRACE_CHUNK] for i in range(0, len(x), TRACE_CHUNK)]
    if is_numpy_flow(flow):
        traces = [flow.trace(chunk, direction) for chunk in chunks]
        points = np.stack(
            [np.concatenate(layer) for layer in zip(*(t.points for t in traces), strict=True)]
        )
        log_dets = np.stack(
            [np.concatenate(k) for k in zip(*(t.log_dets for t in traces), strict=True)]
        )
        return points.astype(np.float32, copy=False), log_dets.astype(np.float32, copy=False)
    import torch

    from flowedu.checks import skip_finite_checks

    with torch.inference_mode(), skip_finite_checks():  # trace checks each layer's output
        traces = [
            flow.trace(torch.from_numpy(chunk).to(flow.device, flow.dtype), direction)
            for chunk in chunks
        ]

        def joined(parts):  # the chunks' lists of tensors, joined layer by layer and stacked
            return torch.stack([torch.cat(layer) for layer in zip(*parts, strict=True)])

        points = joined(t.points for t in traces).float().cpu().numpy()  # (L + 1, n, 2)
        log_dets = joined(t.log_dets for t in traces).float().cpu().numpy()  # (L, n)
    return points, log_dets


def release_freed_memory(collect: bool = False) -> None:
    """Hand memory that torch has freed back to the system (collect: run the GC first).

    glibc's malloc keeps large freed blocks for reuse: after a pass over 10,000 points or a
    training run a kernel kept 90-110 MB it no longer used, in a server that runs one kernel
    per visitor (measured with benchmarks/load_test.py --footprint). malloc_trim gives it
    back in about a millisecond. Does nothing where there is no glibc (macOS, Windows, musl).
    """
    import ctypes

    if collect:
        import gc

        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def frame_at(frames: Frames, position: float, which: str = "points") -> np.ndarray:
    """The cloud (or grid) drawn at `position` in [0, L]: linear between layers k and k + 1.

    position = k + t draws (1 - t) * points[k] + t * points[k + 1]; at integer positions it
    is exactly the trace's intermediate. canvas.js draws with the same formula.
    """
    arrays = frames.points if which == "points" else frames.grid
    last = arrays.shape[0] - 1
    if not 0 <= position <= last:
        raise ValueError(f"position must be in [0, {last}] (the number of layers), got {position}")
    k = min(int(math.floor(position)), last - 1) if last > 0 else 0
    t = np.float32(position - k)
    if t == 0 or last == 0:
        return arrays[k].copy()
    return (1 - t) * arrays[k] + t * arrays[k + 1]


def density_heatmaps(flow, half: float, size: int = HEATMAP_SIZE) -> np.ndarray:
    """The flow's density in the space after each layer, as (L + 1, size, size) uint8 images.

    Image k is the density of the points after k layers of the *generate* pass: image 0 is
    N(0, I), image L the model's p(x). With h after k layers, the remaining layers map h to
    z, so p_k(h) = N(z; 0, I) |det dz/dh|. Each image shows sqrt(p / max p) (0..255); row 0
    is the top of the view (y = +half), column 0 its left (x = -half).
    Costs L (L + 1) / 2 layer passes over size^2 points: computed once per flow.
    """
    # Pixel centres, top row first.
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 * half - half).astype(np.float32)
    ys, xs = np.meshgrid(c[::-1], c, indexing="ij")
    pixels = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    n = len(flow.layers)
    images = np.zeros((n + 1, size, size), dtype=np.uint8)
    for j in range(n + 1):  # the space after layers[:j] of the normalize pass
        logp = _log_density_after(flow, pixels, j)
        logp = np.nan_to_num(logp.astype(np.float64), nan=-np.inf)
        p = np.exp(logp - logp.max()) if np.isfinite(logp.max()) else np.zeros_like(logp)
        images[n - j] = np.rint(255 * np.sqrt(p)).reshape(size, size).astype(np.uint8)
    return images


def _log_density_after(flow, h: np.ndarray, j: int) -> np.ndarray:
    """log N(z; 0, I) + log|det dz/dh| for points h in the space after flow.layers[:j]."""
    layers = list(flow.layers)[j:]
    if is_numpy_flow(flow):
        log_det = np.zeros(len(h), np.float32)
        for layer in layers:
            h, ld = layer.forward(h)
            log_det = log_det + ld
        half_log_2pi = 0.5 * h.shape[1] * math.log(2 * math.pi)
        return -0.5 * (h.astype(np.float64) ** 2).sum(1) - half_log_2pi + log_det
    import torch

    from flowedu.checks import skip_finite_checks
    from flowedu.flow import standard_normal_log_prob

    with torch.inference_mode(), skip_finite_checks():
        x = torch.from_numpy(h).to(flow.device, flow.dtype)
        log_det = torch.zeros(len(x), device=x.device)
        for layer in layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return (standard_normal_log_prob(x) + log_det).float().cpu().numpy()
