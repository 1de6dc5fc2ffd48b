"""flowedu: the helper package of an interactive course on normalizing flows.

Direction convention, the same everywhere: x = f(z) maps latent z ~ N(0, I) to data x.
Every layer and flow has ``forward(x) -> (z, log|det df^-1/dx|)`` (data -> latent) and
``inverse(z) -> (x, log|det df/dz|)`` (latent -> data).

Modules, in the order the course meets them: maps1d (Eq. 1 in 1D), jacobians (2x2 and
batched Jacobians), couplings (coupling layers), flow (stacks of them), realnvp (the
recipe), datasets (2D toy data and their entropies), train (maximum likelihood),
checkpoint (safe save / load), pretrained_flows and pretrain (the shipped flows),
plots_maps, plots_flows and style (figures), exercises (checkers), app (the dashboard).
"""

__version__ = "0.1.0"
