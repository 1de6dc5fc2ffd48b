"""Figures for flows: loss curves, 1D densities, Jacobians, masks, area change, warped grids
layer by layer, density heatmaps, samples against data, and the normalizing direction.

Colours are the course's (flowedu.style): blue is the base N(0, I) and the latent z, orange
is data x, green is what a flow produces. Every function returns a matplotlib Figure drawn
at projector size; none of them calls plt.show(), so a notebook cell ends with it.

Points may be torch tensors (on any device, with or without gradient) or numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import TwoSlopeNorm, to_rgb
from matplotlib.figure import Figure

from .flow import Flow
from .jacobians import grid_lines
from .style import BASE_COLOR, DATA_COLOR, EXPAND_CMAP, FIGURE_RC, GRID_COLOR, MODEL_COLOR

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]
MapFn = Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]

PANEL = 3.2  # inches per small-multiple panel: readable from the back of a classroom
# Colours for curves: green first (the model), then colours that mean neither base nor data.
CURVE_COLORS = (MODEL_COLOR, "#9467bd", "#8c564b", "#d62728", "#7f7f7f", "#17becf")


# ----------------------------------------------------------------------------------------
# Helpers


def _np(values: ArrayLike) -> np.ndarray:
    """Any tensor or array as a float64 numpy array on the CPU."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _subplots(n: int, ncols: int | None = None, panel: float = PANEL, **kw) -> tuple[Figure, list]:
    """A figure with n panels in rows of `ncols` (default: up to 4 per row); spare axes removed."""
    ncols = min(n, ncols or 4)
    nrows = math.ceil(n / ncols)
    with mpl.rc_context(FIGURE_RC):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(panel * ncols, panel * nrows + 0.4), squeeze=False, **kw
        )
    flat = list(axes.flatten())
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n]


def _new_axes(ax, figsize: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    with mpl.rc_context(FIGURE_RC):
        fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _blend(a: str, b: str, w: float) -> tuple[float, float, float]:
    """The colour (1 - w) a + w b."""
    ca, cb = np.array(to_rgb(a)), np.array(to_rgb(b))
    return tuple((1 - w) * ca + w * cb)


def robust_limits(points: ArrayLike, pad: float = 0.15, q: float = 0.002) -> tuple:
    """Square axis limits ((x0, x1), (y0, y1)) holding all but the q-tails of 2D points."""
    p = _np(points)
    lo, hi = np.quantile(p, q, axis=0), np.quantile(p, 1 - q, axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + pad) + 1e-9
    return tuple((c - half, c + half) for c in centre)


def _scatter(ax, points: ArrayLike, color, size: float = 3.0, alpha: float = 0.5, label=None):
    p = _np(points)
    return ax.scatter(p[:, 0], p[:, 1], s=size, color=color, alpha=alpha, lw=0, label=label)


def _square(ax, limits) -> None:
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------
# Curves and 1D densities


def plot_loss_curves(
    curves: Mapping[str, Sequence[float]] | Sequence[float],
    reference: Mapping[str, float] | None = None,
    smooth: int = 1,
    xlabel: str = "training step",
    ylabel: str = "NLL (nats)",
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
    ax=None,
) -> Figure:
    """One line per curve (a moving average over `smooth` steps), and a dashed horizontal
    line per `reference` value (e.g. {"true entropy H": 2.39}), labelled with its value."""
    if not isinstance(curves, Mapping):
        curves = {"loss": curves}
    fig, ax = _new_axes(ax, (8, 4.5))
    for (label, values), color in zip(curves.items(), CURVE_COLORS * 4, strict=False):
        v = _np(values)
        if smooth > 1 and len(v) >= smooth:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
            steps = np.arange(smooth, len(v) + smooth)
        else:
            steps = np.arange(1, len(v) + 1)
        ax.plot(steps, v, color=color, label=label)
    for (label, value), style in zip(
        (reference or {}).items(), ["--", ":", "-."] * 4, strict=False
    ):
        ax.axhline(value, color="black", ls=style, lw=1.5, label=f"{label} = {value:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_hist_vs_density_1d(
    samples: ArrayLike,
    x: ArrayLike,
    density: ArrayLike,
    sample_label: str = "samples",
    density_label: str = "true density",
    color: str = MODEL_COLOR,
    density_color: str = DATA_COLOR,
    bins: int = 80,
    title: str | None = None,
    ax=None,
) -> Figure:
    """A normalised histogram of 1D samples against a density curve p(x) on the grid x."""
    fig, ax = _new_axes(ax, (8, 4.5))
    x_np = _np(x).ravel()
    ax.hist(
        _np(samples).ravel(),
        bins=bins,
        range=(x_np.min(), x_np.max()),
        density=True,
        color=color,
        alpha=0.45,
        label=sample_label,
    )
    ax.plot(x_np, _np(density).ravel(), color=density_color, lw=3, label=density_label)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_density_snapshots_1d(
    x: ArrayLike,
    true_density: ArrayLike,
    snapshots: Mapping[str | int, ArrayLike],
    ncols: int | None = None,
) -> Figure:
    """Small multiples: the model's density (green) at several moments against the truth
    (orange, filled). `snapshots` maps a label (e.g. a training step) to p(x) on the grid x."""
    fig, axes = _subplots(len(snapshots), ncols, sharex=True, sharey=True)
    x_np, truth = _np(x).ravel(), _np(true_density).ravel()
    top = 1.15 * max(truth.max(), *(min(_np(d).max(), 3 * truth.max()) for d in snapshots.values()))
    for ax, (label, density) in zip(axes, snapshots.items(), strict=True):
        ax.fill_between(x_np, truth, color=DATA_COLOR, alpha=0.35, lw=0, label="truth")
        ax.plot(x_np, _np(density).ravel(), color=MODEL_COLOR, lw=2.5, label="model")
        ax.set_title(f"step {label}" if isinstance(label, int) else str(label))
        ax.set_ylim(0, top)
        ax.set_xlabel("x")
    axes[0].set_ylabel("density")
    axes[0].legend(loc="upper left", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# Jacobians, masks, area


def plot_jacobians(
    matrices: Mapping[str, ArrayLike], split: int | None = None, decimals: int = 2
) -> Figure:
    """Heatmaps of square matrices (e.g. dz/dx), each entry written in its cell. Entries that
    are exactly 0 are hatched and marked 0, so the zero pattern (what ignores what) shows at
    a glance. The shade is |entry| on a logarithmic scale shared by all panels, so that one
    large entry does not wash out the rest; the sign is written in the cell. `split` draws
    the block lines after that row and column (the x_a | x_b split of a coupling). Rows are
    outputs, columns inputs."""
    mats = {title: _np(m) for title, m in matrices.items()}
    nonzero = np.concatenate([np.abs(m[m != 0]) for m in mats.values()] + [np.array([1.0])])
    vmax = max(nonzero.max(), 1e-12)
    # The smallest entry gets a visible tint (white is for exact zeros, which are hatched).
    vmin = min(max(nonzero.min() / 3, vmax * 1e-3), vmax / 10)
    norm = mpl.colors.LogNorm(vmin=vmin, vmax=vmax, clip=True)
    cmap = mpl.colormaps["Purples"]
    fig, axes = _subplots(len(mats), panel=4.2, layout="constrained")
    text_size = FIGURE_RC["font.size"] - 1
    for ax, (title, m) in zip(axes, mats.items(), strict=True):
        d = m.shape[0]
        zero = m == 0
        shade = np.ma.masked_where(zero, np.abs(m))  # masked cells stay white
        image = ax.imshow(shade, cmap=cmap, norm=norm)
        for i, j in zip(*np.nonzero(zero), strict=True):
            ax.add_patch(
                mpl.patches.Rectangle(
                    (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#bbbbbb", lw=0
                )
            )
        for i in range(d):
            for j in range(d):
                text = "0" if zero[i, j] else f"{m[i, j]:.{decimals}f}"
                strong = not zero[i, j] and norm(abs(m[i, j])) > 0.6
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=text_size,
                    fontweight="bold" if zero[i, j] else "normal",
                    color="white" if strong else "black",
                )
        if split is not None:
            ax.axhline(split - 0.5, color="black", lw=2)
            ax.axvline(split - 0.5, color="black", lw=2)
        ax.set_xticks(range(d), [f"x{j + 1}" for j in range(d)])
        ax.set_yticks(range(d), [f"z{i + 1}" for i in range(d)])
        n_zero = int(zero.sum())
        ax.set_title(f"{title}\n{n_zero} exact zero{'' if n_zero == 1 else 's'} (hatched)")
    fig.colorbar(image, ax=axes, shrink=0.85, label="|entry|, log scale")
    return fig


def plot_masks(masks: Mapping[str, torch.Tensor | tuple[torch.Tensor, tuple[int, int]]]) -> Figure:
    """Which coordinates a coupling copies (x_a, grey, 'a') and which it transforms
    (x_b, green, 'b'). A value is a boolean mask (True = copied), drawn as a row of cells,
    or (mask, (height, width)) to draw it as an image, e.g. a checkerboard."""
    fig, axes = _subplots(len(masks), ncols=len(masks), panel=3.4)
    cmap = mpl.colors.ListedColormap(["#dddddd", MODEL_COLOR])
    for ax, (title, value) in zip(axes, masks.items(), strict=True):
        mask, shape = value if isinstance(value, tuple) else (value, None)
        m = _np(torch.as_tensor(mask).flatten()).astype(bool)
        img = m.reshape(shape if shape is not None else (1, len(m)))
        ax.imshow(~img, cmap=cmap, vmin=0, vmax=1)  # copied -> grey, transformed -> green
        for (i, j), copied in np.ndenumerate(img):
            ax.text(j, i, "a" if copied else "b", ha="center", va="center", fontsize=13)
        ax.set_xticks(np.arange(img.shape[1] + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(img.shape[0] + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", lw=2)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ax.set_title(title)
    fig.tight_layout()
    return fig


def cell_area_ratios(
    fn: MapFn,
    xlim: tuple[float, float] = (-2.0, 2.0),
    ylim: tuple[float, float] = (-2.0, 2.0),
    n: int = 12,
    n_per_edge: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Push an n x n grid of square cells through fn (a map of the plane, or a flowedu layer,
    whose first output is used) and measure each image's area by the shoelace formula.

    Returns (polygons, log_ratio): polygons (n*n, 4*n_per_edge, 2) are the bent cells,
    log_ratio (n*n,) = log(area after / area before), which tends to log|det J| at the cell
    as the cells shrink.
    """
    xs = torch.linspace(*xlim, n + 1, dtype=torch.float64)
    ys = torch.linspace(*ylim, n + 1, dtype=torch.float64)
    t = torch.arange(n_per_edge, dtype=torch.float64) / n_per_edge
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    edges = square[:, None] + t[None, :, None] * (square.roll(-1, 0) - square)[:, None]
    unit = edges.reshape(-1, 2)  # (4 * n_per_edge, 2): a counter-clockwise unit square
    hx, hy = (xs[1] - xs[0]).item(), (ys[1] - ys[0]).item()
    corners = torch.stack(torch.meshgrid(xs[:-1], ys[:-1], indexing="ij"), -1).reshape(-1, 2)
    cells = corners[:, None] + unit * torch.tensor([hx, hy], dtype=torch.float64)
    flat = cells.reshape(-1, 2)
    param = next(iter(getattr(fn, "parameters", lambda: iter(()))()), None)
    dtype = param.dtype if param is not None else torch.float64
    with torch.no_grad():
        out = fn(flat.to(dtype))
        out = (out[0] if isinstance(out, tuple) else out).double().cpu()
    poly = out.reshape(cells.shape)  # (n*n, k, 2)
    x, y = poly[..., 0], poly[..., 1]
    area = 0.5 * (x * y.roll(-1, 1) - x.roll(-1, 1) * y).sum(1)
    return poly.numpy(), torch.log(area.abs() / (hx * hy)).numpy()


def _white_centred(cmap_name: str) -> mpl.colors.Colormap:
    """The diverging colour map `cmap_name` with its middle made pure white: "no change"
    then renders white, not the light grey in the middle of e.g. coolwarm."""
    base = mpl.colormaps[cmap_name]
    colours = [base(0.0), base(0.25), (1.0, 1.0, 1.0, 1.0), base(0.75), base(1.0)]
    # An odd number of levels puts one level exactly at the middle, and makes it white.
    return mpl.colors.LinearSegmentedColormap.from_list(f"{cmap_name}_white", colours, N=257)


def plot_area_change(
    maps: Mapping[str, MapFn],
    xlim: tuple[float, float] = (-2.0, 2.0),
    ylim: tuple[float, float] = (-2.0, 2.0),
    n: int = 12,
    vmax: float | None = None,
) -> Figure:
    """For each map, the image of a grid of square cells, each cell coloured by
    log(area after / area before): red where the map expands area, blue where it contracts,
    white where it preserves it (the colour scale is symmetric about 0, which is white).
    The first panel is the grid before any map. All panels share their axes and ticks, so
    the sizes of cells can be compared across panels; each title gives the range of the
    log-ratio in that panel."""
    results = {name: cell_area_ratios(fn, xlim, ylim, n) for name, fn in maps.items()}
    before, _ = cell_area_ratios(lambda p: p, xlim, ylim, n)
    vmax = vmax or max(max(np.abs(r).max() for _, r in results.values()), 0.05)
    norm = TwoSlopeNorm(0.0, -vmax, vmax)
    cmap = _white_centred(EXPAND_CMAP)
    fig, axes = _subplots(
        len(maps) + 1,
        ncols=len(maps) + 1,
        panel=4.0,
        layout="constrained",
        sharex=True,
        sharey=True,
    )
    panels = {"before: square cells": (before, np.zeros(len(before))), **results}
    every = np.concatenate([poly.reshape(-1, 2) for poly, _ in panels.values()])
    limits = robust_limits(every, pad=0.05, q=0.0)

    def signed(v: float) -> str:
        text = f"{v:+.2f}"
        return "0.00" if text in ("+0.00", "-0.00") else text

    for ax, (title, (poly, log_ratio)) in zip(axes, panels.items(), strict=True):
        coll = PolyCollection(
            poly,
            array=log_ratio,
            cmap=cmap,
            norm=norm,
            edgecolors=GRID_COLOR,
            linewidths=0.6,
        )
        ax.add_collection(coll)
        low, high = signed(float(log_ratio.min())), signed(float(log_ratio.max()))
        span = f"log ratio {low}" if low == high else f"log ratio {low} to {high}"
        ax.set_title(f"{title}\n{span}")
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_aspect("equal")
        ax.grid(alpha=0.25)
        ax.tick_params(labelleft=True, labelbottom=True)
    fig.colorbar(coll, ax=axes, shrink=0.8, label="log(area after / before)")
    return fig


# ----------------------------------------------------------------------------------------
# Flows in 2D


def _stage_title(flow: Flow, direction: str, k: int, n_stages: int) -> str:
    """The title of stage k of a pass: where it starts, the layer just applied and in which
    direction (g_l in the normalizing direction, its inverse in the generating one), or
    where it ends. Layers are g_1 ... g_L in flow.layers' order, f^-1 = g_L o ... o g_1."""
    if k == 0:
        return "z ~ N(0, I)" if direction == "generate" else "data x"
    if k == n_stages - 1:
        return "x = f(z)" if direction == "generate" else "z = f^-1(x)"
    index = len(flow.layers) - k if direction == "generate" else k - 1
    name = type(flow.layers[index]).__name__.replace("Coupling", "").lower()
    if direction == "generate":
        return f"after $g_{{{index + 1}}}^{{-1}}$ ({name})"
    return f"after $g_{{{index + 1}}}$ ({name})"


def _shared_limits(point_sets: Sequence[np.ndarray], pad: float = 0.08) -> tuple:
    """One square box ((x0, x1), (y0, y1)) holding all but the tails of every set."""
    boxes = np.array([robust_limits(p, pad=0.0) for p in point_sets])  # (sets, 2, 2)
    lo, hi = boxes[:, :, 0].min(0), boxes[:, :, 1].max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + pad)
    return tuple((c - half, c + half) for c in centre)


@torch.no_grad()
def plot_layers(
    flow: Flow,
    points: ArrayLike | None = None,
    direction: str = "generate",
    stages: Sequence[int] | None = None,
    n_points: int = 2000,
    n_lines: int = 13,
    grid_limits: tuple | None = None,
    seed: int = 0,
    ncols: int | None = None,
    point_size: float = 10.0,
) -> Figure:
    """Small multiples of one pass through the flow, layer by layer (flow.trace).

    direction="generate" starts from `points` in latent space (default: n_points draws
    from N(0, I), seeded) and applies f = g_1^-1 o ... o g_L^-1, the last layer first;
    "normalize" starts from data `points` and applies f^-1 = g_L o ... o g_1. A grid of
    straight lines drawn over the starting points is carried along, so each panel shows how
    a layer bends space. Stage k is the state after k layers; there are len(flow.layers) + 1
    stages, all shown unless `stages` picks some (e.g. [0, 4, 8, -1]). Every panel has the
    same axes and scale, so sizes can be compared across panels. Colours go from blue
    (latent) to orange (data), or back for "normalize".
    """
    if direction not in ("generate", "normalize"):
        raise ValueError(f'direction must be "generate" or "normalize", got {direction!r}')
    if points is None:
        if direction != "generate":
            raise ValueError('plot_layers(direction="normalize") needs data points')
        points = flow.sample_base(n_points, seed)
    pts = torch.as_tensor(_np(points)).to(flow.device, flow.dtype)
    if grid_limits is None:
        grid_limits = ((-3.0, 3.0), (-3.0, 3.0)) if direction == "generate" else None
        grid_limits = grid_limits or robust_limits(pts, pad=0.05, q=0.002)
    lines = grid_lines(*grid_limits, n_lines=n_lines, n_points=120, dtype=pts.dtype)
    line_pts = torch.cat(lines).to(pts.device)
    trace_pts = flow.trace(pts, direction).points
    trace_lines = flow.trace(line_pts, direction).points
    n_stages = len(trace_pts)
    chosen = list(range(n_stages)) if stages is None else [k % n_stages for k in stages]
    limits = _shared_limits([_np(trace_pts[k]) for k in chosen])
    fig, axes = _subplots(len(chosen), ncols, sharex=True, sharey=True)
    start, end = (BASE_COLOR, DATA_COLOR) if direction == "generate" else (DATA_COLOR, BASE_COLOR)
    for ax, k in zip(axes, chosen, strict=True):
        p = _np(trace_pts[k])
        segs = _np(trace_lines[k]).reshape(len(lines), -1, 2)
        ax.add_collection(LineCollection(segs, colors=GRID_COLOR, linewidths=0.8, alpha=0.6))
        colour = _blend(start, end, k / max(n_stages - 1, 1))
        _scatter(ax, p, colour, size=point_size, alpha=0.6)
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_aspect("equal")
        ax.grid(alpha=0.25)
        ax.set_title(_stage_title(flow, direction, k, n_stages))
    for ax in axes:
        ax.label_outer()  # tick labels on the left column and the bottom row only
    how = (
        "generating direction x = f(z): the last layer first"
        if direction == "generate"
        else "normalizing direction z = f^-1(x): the first layer first"
    )
    fig.suptitle(f"{how}; one scale in every panel", fontsize=FIGURE_RC["axes.titlesize"])
    fig.tight_layout()
    return fig


@torch.no_grad()
def density_grid(
    flow: Flow,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 150,
    log: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flow's density q(x) = exp(log_prob(x)) at the centres of an n x n grid of cells
    over xlim x ylim (log=True: log q(x) itself). Returns (xs (n,), ys (n,), values (n, n))
    with values[i, j] at (xs[j], ys[i]), so sum(density) * cell area ~ 1 when the box holds
    the mass."""
    dx, dy = (xlim[1] - xlim[0]) / n, (ylim[1] - ylim[0]) / n
    xs = np.linspace(xlim[0] + dx / 2, xlim[1] - dx / 2, n)
    ys = np.linspace(ylim[0] + dy / 2, ylim[1] - dy / 2, n)
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1)).to(flow.device, flow.dtype)
    log_q = _np(flow.log_prob(pts)).reshape(n, n)
    return xs, ys, log_q if log else np.exp(log_q)


def plot_density(
    flow: Flow,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 150,
    title: str | None = "model density",
    ax=None,
    log: bool = False,
    log_range: float = 10.0,
    colorbar: bool = True,
) -> Figure:
    """A heatmap of the flow's density q(x) over xlim x ylim (the image holds q itself), with
    a colour bar. log=True shows log q(x) instead, over the `log_range` nats below its
    highest value, so that regions a thousand times less dense than the peak still show."""
    if log and not log_range > 0:
        raise ValueError(f"log_range must be a positive number of nats, got {log_range!r}")
    fig, ax = _new_axes(ax, (5, 5))
    _, _, values = density_grid(flow, xlim, ylim, n, log=log)
    vmin, vmax = (values.max() - log_range, values.max()) if log else (0.0, values.max())
    image = ax.imshow(
        values,
        origin="lower",
        extent=(*xlim, *ylim),
        cmap="magma",
        vmin=vmin,
        vmax=vmax,
        aspect="equal",
        interpolation="nearest",
    )
    _square(ax, (xlim, ylim))
    if colorbar:
        bar = fig.colorbar(image, ax=ax, location="bottom", fraction=0.05, pad=0.03, aspect=25)
        bar.set_label("log q(x)" if log else "q(x)")
        bar.ax.tick_params(labelsize=FIGURE_RC["legend.fontsize"])
        bar.ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(4))
    if title:
        ax.set_title(title)
    return fig


@torch.no_grad()
def plot_gallery(
    flows: Mapping[str, Flow],
    data: Mapping[str, ArrayLike],
    n_samples: int = 3000,
    grid_n: int = 120,
    seed: int = 0,
    log_density: bool = False,
    log_range: float = 10.0,
) -> Figure:
    """For each dataset (a column): its data (orange), the flow's samples (green) and the
    flow's density heatmap with its colour bar, all on the same square limits.
    log_density=True shows log q(x) over `log_range` nats instead of q(x), so that thin
    bridges of low density between the parts of the data show."""
    names = list(flows)
    with mpl.rc_context(FIGURE_RC):
        fig, axes = plt.subplots(
            3, len(names), figsize=(3.2 * len(names), 10.6), squeeze=False, layout="constrained"
        )
    for j, name in enumerate(names):
        x = _np(data[name])[:n_samples]
        limits = robust_limits(x, pad=0.12)
        _scatter(axes[0, j], x, DATA_COLOR, size=3)
        _scatter(axes[1, j], flows[name].sample(n_samples, seed=seed), MODEL_COLOR, size=3)
        plot_density(
            flows[name],
            *limits,
            n=grid_n,
            title=None,
            ax=axes[2, j],
            log=log_density,
            log_range=log_range,
        )
        axes[0, j].set_title(name)
        for ax in axes[:2, j]:
            _square(ax, limits)
    density_label = "flow: log q(x)" if log_density else "flow density q(x)"
    for ax, label in zip(axes[:, 0], ["data", "flow samples", density_label], strict=True):
        ax.set_ylabel(label, fontsize=14)
    return fig


# Colours for the parts of a dataset (plot_normalized): none is blue, orange or green, which
# mean latent, data and model everywhere else.
PART_COLORS = (
    "#d62728",
    "#9467bd",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#7f7f7f",
    "#000000",
)


def _nearest_curve(x: np.ndarray, curves: Sequence[np.ndarray]) -> np.ndarray:
    """For each point of x (n, 2), the index of the nearest of some curves (each (m, 2))."""
    dist = [np.min(np.linalg.norm(x[:, None] - c[None], axis=2), axis=1) for c in curves]
    return np.argmin(np.stack(dist, 1), axis=1)


def _parts(name: str, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Which part of toy dataset `name` each data point x (n, 2) came from - which moon,
    ring, arm, Gaussian or square - judged from x alone by the datasets' definitions
    (flowedu.datasets). Returns (index of the part (n,), the parts' names). For any other
    name, the parts are six sectors of the angle about the points' centre."""
    r, angle = np.linalg.norm(x, axis=1), np.arctan2(x[:, 1], x[:, 0])
    t = np.linspace(0, np.pi, 300)
    if name == "moons":  # 2 (cos t, sin t) + c and 2 (1 - cos t, 1/2 - sin t) + c
        shift = np.array([-1.0, -0.2])
        upper = 2 * np.stack([np.cos(t), np.sin(t)], 1) + shift
        lower = 2 * np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1) + shift
        return _nearest_curve(x, [upper, lower]), ["upper moon", "lower moon"]
    if name in ("circles", "rings"):
        radii = [3.0, 1.5] if name == "circles" else [3.0, 2.25, 1.5, 0.75]
        part = np.argmin(np.abs(r[:, None] - np.array(radii)[None]), axis=1)
        return part, [f"radius {v:g}" for v in radii]
    if name == "8gaussians":  # centres 4 (cos, sin)(2 pi k / 8) / 1.414
        return np.round(angle / (2 * np.pi / 8)).astype(int) % 8, [
            f"Gaussian {k}" for k in range(8)
        ]
    if name == "pinwheel":  # angle(x) = -(2 pi k / 5 + 0.25 exp(r)), with r ~ |x| / 2
        k = np.round((-angle - 0.25 * np.exp(r / 2)) / (2 * np.pi / 5)).astype(int) % 5
        return k, [f"arm {j + 1}" for j in range(5)]
    if name == "2spirals":  # +-(-s cos s + 1/4, s sin s + 1/4) / 3, s in [0, 3 pi]
        s = np.linspace(0, 3 * np.pi, 600)
        arm = np.stack([-s * np.cos(s) + 0.25, s * np.sin(s) + 0.25], 1) / 3
        return _nearest_curve(x, [arm, -arm]), ["spiral 1", "spiral 2"]
    if name == "checkerboard":  # 8 squares of side 2 on [-4, 4]^2
        col, row = (
            np.clip(np.floor(x[:, 0] / 2) + 2, 0, 3),
            np.clip(np.floor(x[:, 1] / 2) + 2, 0, 3),
        )
        return (row * 2 + col // 2).astype(int), [f"square {k + 1}" for k in range(8)]
    if name == "swissroll":  # (t cos t, t sin t) / 5, t in [1.5 pi, 4.5 pi]: thirds along it
        u = np.linspace(1.5 * np.pi, 4.5 * np.pi, 900)
        curve = np.stack([u * np.cos(u), u * np.sin(u)], 1) / 5
        nearest = np.argmin(np.linalg.norm(x[:, None] - curve[None], axis=2), axis=1)
        return nearest * 3 // len(u), ["inner third", "middle third", "outer third"]
    centred = x - x.mean(0)
    sector = np.arctan2(centred[:, 1], centred[:, 0]) + np.pi  # in [0, 2 pi]
    return np.minimum((sector / (2 * np.pi / 6)).astype(int), 5), [
        f"sector {k + 1}" for k in range(6)
    ]


@torch.no_grad()
def plot_normalized(
    flows: Mapping[str, Flow], data: Mapping[str, ArrayLike], point_size: float = 6.0
) -> Figure:
    """The normalizing direction: for each dataset (a column), data x (top) and z = f^-1(x)
    (bottom), each point coloured by the part of the data it came from (which moon, ring,
    arm...; see _parts), so one can see where each part lands in N(0, I). The bottom row
    has the circles of radius 1, 2, 3 of N(0, I), labelled with the mass each holds,
    1 - exp(-r^2 / 2) (39%, 86%, 99%)."""
    names = list(flows)
    with mpl.rc_context(FIGURE_RC):
        fig, axes = plt.subplots(2, len(names), figsize=(3.4 * len(names), 8.2), squeeze=False)
    angle = np.linspace(0, 2 * np.pi, 200)
    for j, name in enumerate(names):
        flow = flows[name]
        x = torch.as_tensor(_np(data[name])).to(flow.device, flow.dtype)
        z, _ = flow(x)
        part, part_names = _parts(name, _np(x))
        colours = np.array([to_rgb(PART_COLORS[k % len(PART_COLORS)]) for k in part])
        for ax, p in ((axes[0, j], _np(x)), (axes[1, j], _np(z))):
            ax.scatter(p[:, 0], p[:, 1], s=point_size, c=colours, alpha=0.6, lw=0)
        _square(axes[0, j], robust_limits(x))
        for r in (1, 2, 3):
            axes[1, j].plot(r * np.cos(angle), r * np.sin(angle), color="black", lw=1.2, alpha=0.7)
            axes[1, j].text(
                r * math.cos(-math.pi / 4),
                r * math.sin(-math.pi / 4),
                f"{1 - math.exp(-(r**2) / 2):.0%}",
                ha="center",
                va="center",
                fontsize=FIGURE_RC["legend.fontsize"],
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )
        _square(axes[1, j], ((-4, 4), (-4, 4)))
        axes[0, j].set_title(name)
        if len(part_names) <= 5:
            handles = [
                mpl.lines.Line2D([], [], ls="", marker="o", color=PART_COLORS[k], label=label)
                for k, label in enumerate(part_names)
            ]
            axes[0, j].legend(  # under the data panel, so it hides no point
                handles=handles,
                fontsize=FIGURE_RC["legend.fontsize"],
                loc="upper center",
                bbox_to_anchor=(0.5, 0.0),
                ncol=3 if len(handles) > 4 else 2,
                handletextpad=0.1,
                columnspacing=0.8,
                borderpad=0.3,
                frameon=False,
            )
    axes[0, 0].set_ylabel("data x", fontsize=14)
    axes[1, 0].set_ylabel("z = f^-1(x)", fontsize=14)
    fig.suptitle(
        "colour: the part of the data a point came from; circles: mass of N(0, I) inside",
        fontsize=FIGURE_RC["axes.titlesize"],
    )
    fig.tight_layout()
    return fig
