"""Flows on images: the 8x8 digits of scikit-learn, dequantization, bits per dimension.

    from flowedu.images import digits, bits_per_dim
    test = digits("test")                    # int64 (447, 8, 8), grey levels 0..16
    mean, se = bits_per_dim(flow, test)      # an upper bound on the discrete NLL, bits/pixel

    flow, metadata = load_pretrained()      # the shipped digits flow

Modules: data (the images and their fixed split), score (bits per dimension), baselines
(uniform, per-pixel categorical, full Gaussian), layers (Glow's layers on images: logit,
ActNorm, invertible 1x1 convolution, squeeze, convolutional couplings, multi-scale split),
dequantization (uniform and variational), model (ImageFlow and its recipe), train
(maximum likelihood on the digits; `python -m flowedu.images` trains the shipped flow).
"""

from .data import LEVELS, N_PIXELS, SPLITS, check_images, digits, labels
from .model import ImageFlow, image_flow, load_pretrained
from .score import bits_per_dim, elbo_nats

__all__ = [
    "LEVELS",
    "N_PIXELS",
    "SPLITS",
    "ImageFlow",
    "bits_per_dim",
    "check_images",
    "digits",
    "elbo_nats",
    "image_flow",
    "labels",
    "load_pretrained",
]
