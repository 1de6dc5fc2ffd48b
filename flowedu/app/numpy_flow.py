"""The shipped flows' passes with NumPy alone: what the dashboard's kernel runs to show them.

Showing a flow takes a few small matrix products per layer, while `import torch` costs a
visitor's kernel 2.5-3.5 s of CPU and about 170 MiB of memory. So the kernel reads the
shipped checkpoints with flowedu.checkpoint.read (safetensors, memory-mapped: every kernel
of a server shares one copy of the weights) and runs each layer's forward and inverse here,
in float32 like the torch layers. torch is imported only when Train is pressed.

Every layer type of the shipped flows has its twin here, with the same direction
convention (forward: z = f^-1(x), inverse: x = f(z), each returning (points, log|det|)),
the same `kind` and the same describe() text. tests/test_numpy_flow.py checks each twin and
every shipped flow against the torch flow to float32 precision, so they cannot drift apart.

    flow = load_shipped("moons")            # a NumpyFlow, or UnsupportedFlow if it has
    x, log_det = flow.inverse(z)            # a layer with no NumPy twin
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DTYPE = np.float32


class UnsupportedFlow(ValueError):
    """A checkpoint with a recipe or layer that has no NumPy twin: load it with torch."""


def coordinate_names(dim: int, names: Sequence[str] | None = None) -> list[str]:
    """As flowedu.couplings.coordinate_names (x and y in 2D, else x1 ... xD)."""
    if names is not None:
        if len(names) != dim:
            raise ValueError(f"need {dim} coordinate names, got {len(names)}: {list(names)}")
        return list(names)
    return ["x", "y"] if dim == 2 else [f"x{i + 1}" for i in range(dim)]


def _check(x: np.ndarray, dim: int, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (batch, {dim}), got {x.shape}")
    return x.astype(DTYPE, copy=False)


# ----------------------------------------------------------------------------- layers


class Standardize:
    """z = (x - mean) / std; log|det| = -sum(log std). Twin of couplings.Standardize."""

    kind = "standardize"

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, DTYPE).reshape(-1)
        self.std = np.asarray(std, DTYPE).reshape(-1)
        self.dim = self.mean.size
        self._log_std = np.log(self.std).sum(dtype=DTYPE)

    def describe(self, direction: str = "normalize", names=None) -> str:
        if direction == "normalize":
            return "standardises to mean 0, sd 1"
        return "undoes the standardisation (back to data units)"

    def forward(self, x):
        x = _check(x, self.dim)
        return (x - self.mean) / self.std, np.full(len(x), -self._log_std, DTYPE)

    def inverse(self, z):
        z = _check(z, self.dim, "z")
        return z * self.std + self.mean, np.full(len(z), self._log_std, DTYPE)


class Permutation:
    """z = x[:, perm]; log|det| = 0. Twin of couplings.Permutation."""

    kind = "permutation"

    def __init__(self, perm: np.ndarray):
        self.perm = np.asarray(perm, np.int64)
        self.inv_perm = np.argsort(self.perm)
        self.dim = len(self.perm)

    def describe(self, direction: str = "normalize", names=None) -> str:
        n = coordinate_names(self.dim, names)
        if self.dim == 2 and self.perm.tolist() == [1, 0]:
            return f"swaps {n[0]} and {n[1]}"
        order = self.perm if direction == "normalize" else self.inv_perm
        return "reorders the coordinates to " + ", ".join(n[i] for i in order.tolist())

    def forward(self, x):
        x = _check(x, self.dim)
        return x[:, self.perm], np.zeros(len(x), DTYPE)

    def inverse(self, z):
        z = _check(z, self.dim, "z")
        return z[:, self.inv_perm], np.zeros(len(z), DTYPE)


class MLP:
    """Linear, ReLU, ..., Linear: the conditioner of a coupling (couplings.mlp)."""

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]]):
        # Transposed once, so that each layer is one (batch, n_in) @ (n_in, n_out) product.
        self.layers = [(np.ascontiguousarray(w.T, DTYPE), np.asarray(b, DTYPE)) for w, b in weights]

    def __call__(self, h: np.ndarray) -> np.ndarray:
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            # One input (a 2D flow's coupling): an outer product, 3x faster than a matmul.
            h = h * w if w.shape[0] == 1 else h @ w
            h += b
            if i < last:
                np.maximum(h, 0, out=h)
        return h

    @property
    def n_params(self) -> int:
        return sum(w.size + b.size for w, b in self.layers)


class Coupling:
    """Copies x_a, transforms x_b given x_a. Twin of couplings.Coupling."""

    kind = "coupling"
    how = "transforms"

    def __init__(self, idx_a, idx_b, net: MLP):
        self.idx_a, self.idx_b = np.asarray(idx_a, np.int64), np.asarray(idx_b, np.int64)
        self.dim = len(self.idx_a) + len(self.idx_b)
        self.net = net

    def describe(self, direction: str = "normalize", names=None) -> str:
        n = coordinate_names(self.dim, names)
        moved = ", ".join(n[i] for i in self.idx_b.tolist())
        given = ", ".join(n[i] for i in self.idx_a.tolist())
        return f"{self.how} {moved}, given {given}"

    def _merge(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.empty((len(a), self.dim), DTYPE)
        out[:, self.idx_a] = a
        out[:, self.idx_b] = b
        return out

    def forward(self, x):
        x = _check(x, self.dim)
        x_a, x_b = x[:, self.idx_a], x[:, self.idx_b]
        z_b, log_det = self._transform(x_b, self.net(x_a))
        return self._merge(x_a, z_b), log_det

    def inverse(self, z):
        z = _check(z, self.dim, "z")
        z_a, z_b = z[:, self.idx_a], z[:, self.idx_b]
        x_b, log_det = self._untransform(z_b, self.net(z_a))
        return self._merge(z_a, x_b), log_det


class AffineCoupling(Coupling):
    """z_b = x_b exp(s) + t, s = b tanh(s_raw / b). Twin of couplings.AffineCoupling."""

    how = "scales and shifts"

    def __init__(self, idx_a, idx_b, net: MLP, scale_bound: float | None):
        super().__init__(idx_a, idx_b, net)
        self.scale_bound = None if scale_bound is None else DTYPE(scale_bound)

    def _s_and_t(self, params):
        s, t = np.split(params, 2, axis=1)
        if self.scale_bound is not None:
            s = self.scale_bound * np.tanh(s / self.scale_bound)
        return s, t

    def _transform(self, x_b, params):
        s, t = self._s_and_t(params)
        return x_b * np.exp(s) + t, s.sum(axis=1, dtype=DTYPE)

    def _untransform(self, z_b, params):
        s, t = self._s_and_t(params)
        return (z_b - t) * np.exp(-s), -s.sum(axis=1, dtype=DTYPE)


class AdditiveCoupling(Coupling):
    """z_b = x_b + t. Twin of couplings.AdditiveCoupling."""

    how = "shifts"

    def _transform(self, x_b, t):
        return x_b + t, np.zeros(len(x_b), DTYPE)

    def _untransform(self, z_b, t):
        return z_b - t, np.zeros(len(z_b), DTYPE)


# The spline's constants, as flowedu.splines has them (tests/test_numpy_flow.py checks).
MIN_WIDTH = MIN_HEIGHT = MIN_SLOPE = 1e-3
SLOPE_SHIFT = math.log(math.expm1(1 - MIN_SLOPE))  # zero parameters give slope 1


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _knots(raw: np.ndarray, bound: float, minimum: float) -> np.ndarray:
    """Knot positions (..., K + 1) from -B to B, as flowedu.splines._bins."""
    k = raw.shape[-1]
    frac = DTYPE(minimum) + DTYPE(1 - minimum * k) * _softmax(raw)
    knots = np.zeros((*raw.shape[:-1], k + 1), DTYPE)
    np.cumsum(frac, axis=-1, out=knots[..., 1:])
    knots = DTYPE(2 * bound) * knots - DTYPE(bound)
    knots[..., 0], knots[..., -1] = -bound, bound  # the ends exactly, whatever the rounding
    return knots


def rq_spline(u, widths, heights, slopes, bound: float, inverse: bool = False):
    """flowedu.splines.rq_spline with NumPy: the monotone rational-quadratic spline (or its
    inverse) elementwise, identity outside [-bound, bound]; returns (v, log|dv/du|)."""
    xs = _knots(widths, bound, MIN_WIDTH)
    ys = _knots(heights, bound, MIN_HEIGHT)
    d = DTYPE(MIN_SLOPE) + np.logaddexp(DTYPE(0), slopes + DTYPE(SLOPE_SHIFT))  # softplus
    d = np.pad(d, [(0, 0)] * (d.ndim - 1) + [(1, 1)], constant_values=1.0)
    inside = (u >= -bound) & (u <= bound)
    uc = np.clip(u, -bound, bound)
    edges = (ys if inverse else xs)[..., 1:-1]
    k = (edges <= uc[..., None]).sum(axis=-1)[..., None]  # the bin: inner knots at or below

    def at(t, shift=0):
        return np.take_along_axis(t, k + shift, axis=-1)[..., 0]

    x_k, w_k = at(xs), at(xs, 1) - at(xs)
    y_k, h_k = at(ys), at(ys, 1) - at(ys)
    d_k, d_k1 = at(d), at(d, 1)
    s = h_k / w_k
    bend = d_k1 + d_k - 2 * s
    if inverse:
        dy = uc - y_k
        a = h_k * (s - d_k) + dy * bend
        b = h_k * d_k - dy * bend
        c = -s * dy
        disc = np.maximum(b * b - 4 * a * c, 0)  # >= 0 in exact arithmetic; float32 may dip
        xi = np.clip(2 * c / (-b - np.sqrt(disc)), 0, 1)
        v = x_k + xi * w_k
    else:
        xi = np.clip((uc - x_k) / w_k, 0, 1)
        v = y_k + h_k * (s * xi * xi + d_k * xi * (1 - xi)) / (s + bend * xi * (1 - xi))
    one_minus = 1 - xi
    den = s + bend * xi * one_minus
    num = d_k1 * xi * xi + 2 * s * xi * one_minus + d_k * one_minus * one_minus
    log_slope = 2 * np.log(s) + np.log(num) - 2 * np.log(den)
    if inverse:
        log_slope = -log_slope
    return np.where(inside, v, u), np.where(inside, log_slope, DTYPE(0))


class SplineCoupling(Coupling):
    """z_b = spline(x_b; theta(x_a)), theta from the MLP of x_a clipped to [-B, B].
    Twin of flowedu.spline_flow.SplineCoupling."""

    how = "bends with a spline"

    def __init__(self, idx_a, idx_b, net: MLP, n_bins: int, bound: float):
        super().__init__(idx_a, idx_b, net)
        self.n_bins, self.bound = int(n_bins), float(bound)
        inner = self.net

        def clipped(h):  # the torch layer's Hardtanh(-B, B) in front of its MLP
            return inner(np.clip(h, -self.bound, self.bound))

        clipped.n_params = inner.n_params
        self.net = clipped

    def _params(self, params, n):
        k = self.n_bins
        theta = params.reshape(n, len(self.idx_b), 3 * k - 1)
        return theta[..., :k], theta[..., k : 2 * k], theta[..., 2 * k :]

    def _transform(self, x_b, params):
        z_b, log_d = rq_spline(x_b, *self._params(params, len(x_b)), self.bound)
        return z_b.astype(DTYPE), log_d.sum(axis=1, dtype=DTYPE)

    def _untransform(self, z_b, params):
        x_b, log_d = rq_spline(z_b, *self._params(params, len(z_b)), self.bound, inverse=True)
        return x_b.astype(DTYPE), log_d.sum(axis=1, dtype=DTYPE)


# ----------------------------------------------------------------------------- the flow


@dataclass
class Trace:
    """Every intermediate of one pass, as flowedu.flow.Trace, with numpy arrays."""

    direction: str
    points: list[np.ndarray]
    log_dets: list[np.ndarray]


class NumpyFlow:
    """A stack of NumPy layers over N(0, I): forward, inverse, log_prob and trace, as Flow."""

    backend = "numpy"

    def __init__(self, layers: list, dim: int, config: dict, n_params: int):
        self.layers, self.dim, self.config, self.n_params = layers, dim, dict(config), n_params

    def forward(self, x):
        """z = f^-1(x) and log|det df^-1/dx|: data -> latent."""
        h, log_det = _check(x, self.dim), np.zeros(len(x), DTYPE)
        for layer in self.layers:
            h, ld = layer.forward(h)
            log_det = log_det + ld
        return h, log_det

    def inverse(self, z):
        """x = f(z) and log|det df/dz|: latent -> data."""
        h, log_det = _check(z, self.dim, "z"), np.zeros(len(z), DTYPE)
        for layer in reversed(self.layers):
            h, ld = layer.inverse(h)
            log_det = log_det + ld
        return h, log_det

    def log_prob(self, x):
        z, log_det = self.forward(x)
        return -0.5 * (z**2).sum(axis=1) - 0.5 * self.dim * math.log(2 * math.pi) + log_det

    def trace(self, points, direction: str = "generate") -> Trace:
        """Every intermediate of a pass: "normalize" applies the layers in order (forward),
        "generate" applies their inverses from the last layer to the first."""
        if direction not in ("generate", "normalize"):
            raise ValueError(f"direction must be 'generate' or 'normalize', got {direction!r}")
        h = _check(points, self.dim, "z" if direction == "generate" else "x")
        order = self.layers if direction == "normalize" else self.layers[::-1]
        kept, log_dets = [h], []
        for layer in order:
            h, ld = layer.forward(h) if direction == "normalize" else layer.inverse(h)
            kept.append(h)
            log_dets.append(ld)
        return Trace(direction, kept, log_dets)


# ----------------------------------------------------------------------------- reading


def _by_layer(arrays: dict[str, np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    layers: dict[int, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        match = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
        if match is None:
            raise UnsupportedFlow(f"a weight outside the flow's layers: {key}")
        layers.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return dict(sorted(layers.items()))


def _mlp(weights: dict[str, np.ndarray], prefix: str = "net.") -> MLP:
    indices = sorted({int(k[len(prefix) :].split(".")[0]) for k in weights if k.startswith(prefix)})
    pairs = []
    for i in indices:
        w, b = weights.get(f"{prefix}{i}.weight"), weights.get(f"{prefix}{i}.bias")
        if w is None or b is None:
            raise UnsupportedFlow(f"an MLP layer {prefix}{i} without weight and bias")
        pairs.append((w, b))
    return MLP(pairs)


def layer_from_weights(weights: dict[str, np.ndarray], config: dict):
    """The NumPy twin of one layer, recognised by the names of its weights."""
    keys = set(weights)
    if keys == {"mean", "std"}:
        return Standardize(weights["mean"], weights["std"])
    if keys == {"perm", "inv_perm"}:
        return Permutation(weights["perm"])
    if {"idx_a", "idx_b"} <= keys and all(
        k in ("idx_a", "idx_b") or re.fullmatch(r"net\.\d+\.(weight|bias)", k) for k in keys
    ):
        net = _mlp(weights)
        n_b, n_out = len(weights["idx_b"]), net.layers[-1][0].shape[1]
        if config.get("builder") == "spline_flow":
            n_bins = int(config.get("n_bins", 16))
            if n_out != n_b * (3 * n_bins - 1):
                raise UnsupportedFlow(f"a spline coupling with {n_out} outputs for {n_b} inputs")
            bound = config.get("bound", 4.0)
            return SplineCoupling(weights["idx_a"], weights["idx_b"], net, n_bins, bound)
        coupling = config.get("coupling", "affine")
        if coupling == "affine" and n_out == 2 * n_b:
            return AffineCoupling(
                weights["idx_a"], weights["idx_b"], net, config.get("scale_bound", 3.0)
            )
        if coupling == "additive" and n_out == n_b:
            return AdditiveCoupling(weights["idx_a"], weights["idx_b"], net)
        raise UnsupportedFlow(f"a {coupling} coupling with {n_out} outputs for {n_b} inputs")
    raise UnsupportedFlow(f"a layer with weights {sorted(keys)}, which has no NumPy twin")


# Recipes whose flows this module can run (builder names of flowedu.recipes.BUILDERS).
SUPPORTED_BUILDERS = ("realnvp", "spline_flow")


def from_checkpoint(config: dict, arrays: dict[str, np.ndarray]) -> NumpyFlow:
    """A NumpyFlow from a checkpoint's recipe and weights (flowedu.checkpoint.read)."""
    builder = config.get("builder")
    if builder not in SUPPORTED_BUILDERS:
        raise UnsupportedFlow(f"flows of the recipe {builder!r} have no NumPy twin")
    layers = [layer_from_weights(w, config) for w in _by_layer(arrays).values()]
    dims = {layer.dim for layer in layers}
    if len(dims) != 1:
        raise UnsupportedFlow(f"layers of different dimensions {sorted(dims)}")
    n_params = sum(layer.net.n_params for layer in layers if isinstance(layer, Coupling))
    return NumpyFlow(layers, dims.pop(), config, n_params)


def load(path: str | Path) -> tuple[NumpyFlow, dict]:
    """(NumpyFlow, metadata) of a checkpoint file, its weights memory-mapped."""
    from flowedu import checkpoint

    ckpt = checkpoint.read(path, mmap=True)
    return from_checkpoint(ckpt.config, ckpt.arrays), ckpt.metadata


def load_shipped(name: str, model: str = "realnvp") -> tuple[NumpyFlow, dict]:
    """The shipped flow of family `model` for dataset `name`, as pretrained_flows finds it.

    Raises pretrained_flows.MissingCheckpointError when there is none, UnsupportedFlow when
    its layers have no NumPy twin (load it with pretrained_flows.load_pretrained then).
    """
    from flowedu import pretrained_flows

    path = pretrained_flows.checkpoint_path(name, model)
    if not path.is_file():  # load_pretrained raises the error that says how to make one
        pretrained_flows.load_pretrained(name, model)  # (before it would import torch)
    if path.suffix != ".safetensors":
        raise UnsupportedFlow(f"{path} is in flowedu 0.1's torch format")
    return load(path)


def metadata(name: str, model: str = "realnvp") -> dict | None:
    """The metadata of a shipped flow (its header only), or None if there is none."""
    from flowedu import checkpoint, pretrained_flows

    path = pretrained_flows.checkpoint_path(name, model)
    if not path.is_file() or path.suffix != ".safetensors":
        return None
    return checkpoint.read(path, mmap=True).metadata
