"""Flows on images: the 8x8 digits of scikit-learn, dequantization, bits per dimension.

    from flowedu.images import digits, bits_per_dim
    test = digits("test")                    # int64 (447, 8, 8), grey levels 0..16
    mean, se = bits_per_dim(flow, test)      # an upper bound on the discrete NLL, bits/pixel

Modules: data (the images and their fixed split), score (bits per dimension), baselines
(uniform, per-pixel categorical, full Gaussian).
"""

from .data import LEVELS, N_PIXELS, SPLITS, check_images, digits, labels
from .score import bits_per_dim, elbo_nats

__all__ = [
    "LEVELS",
    "N_PIXELS",
    "SPLITS",
    "bits_per_dim",
    "check_images",
    "digits",
    "elbo_nats",
    "labels",
]
