"""Input checks shared by flowedu's public functions.

Every check raises an error whose message says what was wrong and what to do, so a student
who passes the wrong thing learns how to fix the call rather than reading a stack of
broadcasting errors from deep inside PyTorch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

# Scanning a tensor for NaN forces a GPU to stop and report back; the training loop turns
# the scans off (it checks the loss instead) so that a GPU never waits on the host.
_state = threading.local()


@contextlib.contextmanager
def skip_finite_checks() -> Iterator[None]:
    """Within this block, check_points checks shapes and dtypes but not NaN / infinity."""
    old = getattr(_state, "skip", False)
    _state.skip = True
    try:
        yield
    finally:
        _state.skip = old


def check_points(x: object, dim: int | None = None, name: str = "x") -> torch.Tensor:
    """Check that `x` is a finite floating-point tensor of shape (batch, dim) and return it."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (batch, {dim or 'dim'}), got "
            f"{type(x).__name__}; convert it with torch.as_tensor({name}, dtype=torch.float32)"
        )
    if x.dim() != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(batch, {dim})" if dim is not None else "(batch, dim)"
        hint = f"; for a single point use {name}.reshape(1, -1)" if x.dim() == 1 else ""
        raise ValueError(f"expected {name} of shape {want}, got {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one point")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got {x.dtype}; use {name}.float() or "
            f"{name}.double()"
        )
    if not getattr(_state, "skip", False):
        check_finite(x, name)
    return x


def check_finite(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Raise a ValueError saying where `x` holds NaN or infinity."""
    bad = ~torch.isfinite(x)
    if bad.any():
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(bad.sum()) - n_nan
        rows = torch.nonzero(bad.reshape(x.shape[0], -1).any(dim=1)).flatten()[:5].tolist()
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values (first bad rows: {rows}); "
            "remove or replace them before calling"
        )
    return x


def check_positive_int(value: object, name: str) -> int:
    """Return `value` if it is a positive int (bools are refused), else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_positive_float(value: object, name: str) -> float:
    """Return `value` as a float if it is a finite number > 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_same_dtype_device(x: torch.Tensor, like: torch.Tensor, name: str = "x") -> None:
    """Raise a TypeError if x's dtype or device differs from the model's weights `like`."""
    if x.dtype != like.dtype:
        raise TypeError(
            f"{name} is {x.dtype} but the model's weights are {like.dtype}; convert one of them, "
            f"e.g. {name}.to({like.dtype}) or model.to({x.dtype})"
        )
    if x.device != like.device:
        raise TypeError(
            f"{name} is on {x.device} but the model is on {like.device}; move one of them, "
            f"e.g. {name}.to('{like.device}')"
        )
