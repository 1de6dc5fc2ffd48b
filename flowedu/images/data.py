"""The 8x8 digits of scikit-learn (no download) and their fixed split.

`load_digits()` holds 1,797 greyscale images of 8 x 8 pixels whose values are the integers
0..16: 17 grey levels. The split is fixed and public, in `load_digits()` order: the first
1,000 images train, the next 350 validate, the last 447 test.
"""

from __future__ import annotations

import functools

import torch

LEVELS = 17  # grey levels 0..16
SHAPE = (8, 8)
N_PIXELS = SHAPE[0] * SHAPE[1]  # the "dimensions" of bits per dimension
SPLITS = {"train": (0, 1000), "validation": (1000, 1350), "test": (1350, 1797)}


@functools.lru_cache(maxsize=1)
def _all() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float64).round().long()
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    if images.shape != (1797, *SHAPE) or images.min() < 0 or images.max() >= LEVELS:
        raise RuntimeError(
            f"scikit-learn's load_digits() returned images of shape {tuple(images.shape)} with "
            f"values {int(images.min())}..{int(images.max())}; expected (1797, 8, 8) in 0..16. "
            "Install the scikit-learn version pinned by flowedu"
        )
    return images, labels


def _range(split: str) -> tuple[int, int]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return SPLITS[split]


def digits(split: str) -> torch.Tensor:
    """The images of `split` ("train", "validation" or "test"): an int64 tensor of shape
    (n, 8, 8) with values 0..16."""
    start, stop = _range(split)
    return _all()[0][start:stop].clone()


def labels(split: str) -> torch.Tensor:
    """The digit (0..9) shown by each image of `split`; the flows never see these."""
    start, stop = _range(split)
    return _all()[1][start:stop].clone()


def check_images(images: object, name: str = "images") -> torch.Tensor:
    """Return `images` if it is an integer tensor of shape (n, 8, 8) with values 0..16."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (n, 8, 8), got {type(images).__name__}; "
            "use flowedu.images.digits('test')"
        )
    if images.dtype.is_floating_point or images.dtype.is_complex or images.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold the integer grey levels 0..16, got dtype {images.dtype}; "
            "pass the images as they come from flowedu.images.digits(...), before "
            "dequantization (e.g. images.round().long())"
        )
    if images.dim() != 3 or tuple(images.shape[1:]) != SHAPE:
        hint = "; for one image use images[None]" if images.dim() == 2 else ""
        raise ValueError(f"expected {name} of shape (n, 8, 8), got {tuple(images.shape)}{hint}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one image")
    low, high = int(images.min()), int(images.max())
    if low < 0 or high >= LEVELS:
        raise ValueError(
            f"{name} must have values 0..{LEVELS - 1}, got values from {low} to {high}"
        )
    return images
