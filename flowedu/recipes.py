"""The course's flow recipes, in one table, and the recipes of the shipped flows.

A recipe is a function marked with flowedu.flow.recipe: the flows it builds carry
flow.config = {"builder": NAME, ...its arguments}, a plain dict that a checkpoint stores.
from_config looks NAME up in BUILDERS and calls it with the rest, which rebuilds the same
architecture (the weights are loaded separately).
"""

from __future__ import annotations

from .autoregressive import autoregressive_flow
from .flow import Flow
from .images.model import image_flow
from .pretrained_flows import check_model
from .realnvp import realnvp
from .spline_flow import spline_flow

# builder name -> the function that builds it. Adding a family adds one line here.
BUILDERS = {
    "realnvp": realnvp,
    "image_flow": image_flow,
    "spline_flow": spline_flow,
    "autoregressive_flow": autoregressive_flow,
}

# The recipe of each shipped family (pretrained_flows.MODELS): one flow per toy dataset.
# RealNVP is deeper than the textbook 8 couplings because the rings and spirals need more
# bends; README lists the NLL each reaches.
SHIPPED = {
    "realnvp": (realnvp, dict(n_layers=12, hidden=(128, 128), scale_bound=3.0)),
    # Fewer, more flexible layers: 137k weights against RealNVP's 204k. The bound of 4 covers
    # the standardised data to 4 sd; beyond it each spline is the identity.
    "spline": (spline_flow, dict(n_layers=6, hidden=(128, 128), n_bins=16, bound=4.0)),
}


def from_config(config: dict) -> Flow:
    """Rebuild a flow from the recipe in `flow.config` (the weights are loaded separately)."""
    builder = BUILDERS.get(config.get("builder")) if isinstance(config, dict) else None
    if builder is None:
        raise ValueError(
            f"unknown flow recipe {config!r}: flowedu can rebuild flows made by "
            f"{', '.join(f'flowedu.{name}(...)' for name in BUILDERS)}"
        )
    kwargs = {k: v for k, v in config.items() if k != "builder"}
    try:
        return builder(**kwargs)
    except TypeError as err:
        raise ValueError(f"the flow recipe has unexpected fields: {err}") from None


def new_flow(dataset: str, model: str = "realnvp", seed: int = 0) -> Flow:
    """An untrained flow of the shipped recipe of `model` for `dataset`: the identity after a
    standardisation fitted to fresh samples of the data."""
    from . import datasets

    builder, kwargs = SHIPPED[check_model(model)]
    stats = datasets.sample(dataset, 100_000, seed=seed + 1)
    return builder(standardize=(stats.mean(0).tolist(), stats.std(0).tolist()), **kwargs)
