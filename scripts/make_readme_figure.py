"""Draw the README's opening figure: N(0, I) carried into three datasets, layer by layer.

    .venv/bin/python scripts/make_readme_figure.py            # writes docs/readme_figure.png
    .venv/bin/python scripts/make_readme_figure.py --output other.png

It loads the shipped RealNVP flows (flowedu.pretrained_flows.load_pretrained), trains
nothing, and draws the same picture on every run (the points are seeded). Each row is one
dataset: the same 1,500 draws of N(0, I) and a square grid, then the state after a third and
two thirds of the flow's layers in the generating direction, then x = f(z), and last the
flow's log-density log q(x) over the 8 nats below its peak. Blue is the latent z, orange
data x (flowedu.style).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from PIL import Image  # noqa: E402  (installed with matplotlib)

from flowedu import plots_flows as pf  # noqa: E402
from flowedu.jacobians import grid_lines  # noqa: E402
from flowedu.pretrained_flows import load_pretrained  # noqa: E402
from flowedu.style import BASE_COLOR, DATA_COLOR, GRID_COLOR, use_course_style  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "readme_figure.png"
DATASETS = ("moons", "pinwheel", "2spirals")
N_POINTS, SEED, DPI = 1500, 0, 72
MAX_BYTES = 300_000  # the README loads it first: keep it light


def _colour(k: int, n_stages: int) -> tuple[float, float, float]:
    """Blue (latent) at stage 0, orange (data) at the last stage, blended in between."""
    w = k / (n_stages - 1)
    return tuple((1 - w) * np.array(to_rgb(BASE_COLOR)) + w * np.array(to_rgb(DATA_COLOR)))


@torch.no_grad()
def draw(datasets: tuple[str, ...] = DATASETS) -> plt.Figure:
    """The figure: one row per dataset, five panels from z ~ N(0, I) to x and log q(x)."""
    use_course_style()
    fig, axes = plt.subplots(
        len(datasets), 5, figsize=(15, 3.1 * len(datasets) + 0.7), squeeze=False
    )
    for row, name in zip(axes, datasets, strict=True):
        flow, _ = load_pretrained(name)
        z = flow.sample_base(N_POINTS, seed=SEED)
        lines = grid_lines((-3.0, 3.0), (-3.0, 3.0), n_lines=11, n_points=120, dtype=z.dtype)
        points = flow.trace(z, "generate").points
        bent = flow.trace(torch.cat(lines), "generate").points
        n_stages, n_layers = len(points), len(flow.layers)
        stages = [0, round(n_layers / 3), round(2 * n_layers / 3), n_stages - 1]
        titles = [
            "z ~ N(0, I)",
            f"after {stages[1]} of {n_layers} layers",
            f"after {stages[2]} of {n_layers} layers",
            "x = f(z)",
        ]
        for ax, k, title in zip(row[:4], stages, titles, strict=True):
            p = points[k].numpy()
            segments = bent[k].numpy().reshape(len(lines), -1, 2)
            ax.add_collection(LineCollection(segments, colors=GRID_COLOR, lw=0.7, alpha=0.5))
            ax.scatter(p[:, 0], p[:, 1], s=7, color=_colour(k, n_stages), alpha=0.6, lw=0)
            pf._square(ax, pf.robust_limits(p, pad=0.1))
            ax.set_title(title)
        limits = pf.robust_limits(points[-1], pad=0.1)
        pf.plot_density(
            flow, *limits, n=160, title=None, ax=row[4], log=True, log_range=8, colorbar=False
        )
        row[4].set_title("the flow's log q(x)")
        row[0].set_ylabel(name, fontsize=15)
    fig.suptitle(
        "A RealNVP flow carries N(0, I) into data, one layer at a time "
        "(the grid shows how space bends)",
        fontsize=15,
    )
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the PNG to write")
    args = parser.parse_args(argv)
    if args.output.suffix.lower() != ".png":
        parser.error(f"--output must be a .png file, got {args.output}")
    if not args.output.parent.is_dir():
        parser.error(f"the folder of --output does not exist: {args.output.parent}")
    fig = draw()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    # 128 colours are plenty for flat colours and a heatmap, and make the file a third the size
    image = Image.open(buffer).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    image.save(args.output, optimize=True)
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 1000:.0f} kB)")
    if size > MAX_BYTES:
        print(f"warning: above {MAX_BYTES / 1000:.0f} kB; lower DPI or N_POINTS", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
