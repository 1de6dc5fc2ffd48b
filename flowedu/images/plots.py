"""Figures of notebook 07: grids of digits, with the course's colours on their frames.

Orange frames are data (digits from the split), green frames what a model produces
(samples, reconstructions, interpolations); grey levels are shown dark on light, 0..16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..style import DATA_COLOR, MODEL_COLOR
from .data import LEVELS


def show_digits(
    rows: Sequence[torch.Tensor],
    row_labels: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    titles: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    size: float = 1.1,
):
    """A grid: one row per tensor of images (n, 8, 8) (integer levels or floats in [0, 17)).

    colors[i] frames row i (default: orange for the first row, green for the others), or
    colors[i][j] image j of it; titles[i][j] goes above image j of row i. Returns the figure.
    """
    import matplotlib.pyplot as plt

    rows = [torch.as_tensor(r).detach().cpu().float().reshape(-1, 8, 8) for r in rows]
    n_cols = max(len(r) for r in rows)
    colors = colors or [DATA_COLOR] + [MODEL_COLOR] * (len(rows) - 1)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(size * n_cols + 1.6, size * len(rows) + 0.4), squeeze=False
    )
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(row):
                ax.axis("off")
                continue
            ax.imshow(row[j].clamp(0, LEVELS - 1), cmap="gray_r", vmin=0, vmax=LEVELS - 1)
            color = colors[i] if isinstance(colors[i], str) else colors[i][j]
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(2.5)
            if titles is not None and titles[i] is not None and j < len(titles[i]):
                ax.set_title(titles[i][j], fontsize=10)
        if row_labels is not None:
            axes[i][0].set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=11)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
