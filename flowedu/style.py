"""Colours and sizes shared by every figure, so base and data look the same throughout.

Blue is always the base distribution N(0, I) (latent z); orange is always data (x).
Sizes are chosen to stay readable on a projector at the back of a classroom.
"""

BASE_COLOR = "#1f77b4"  # latent z ~ N(0, I)
DATA_COLOR = "#ff7f0e"  # data x
MODEL_COLOR = "#2ca02c"  # what a flow produces or predicts
GRID_COLOR = "#555555"
EXPAND_CMAP = "coolwarm"  # red: a layer expands area there; blue: it contracts it

FIGURE_RC = {
    "figure.dpi": 100,
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "legend.fontsize": 12,
    "lines.linewidth": 2.0,
}


def use_course_style() -> None:
    """Apply the course's matplotlib settings (larger fonts, thicker lines)."""
    import matplotlib as mpl

    mpl.rcParams.update(FIGURE_RC)
