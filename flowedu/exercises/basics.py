"""Checkers for the exercises of notebooks 01-05 (change of variables ... RealNVP)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from flowedu.exercises.verdicts import LOG_2PI, NONE_MESSAGE, Result, run, verdict
from flowedu.flow import standard_normal_log_prob

# ----- 01: the 1D change of variables ---------------------------------------------------


def _sinh_derivative(fn):
    z = torch.linspace(-4, 4, 81, dtype=torch.float64)
    got, err = run(fn, z)
    if err:
        return Result("01.sinh_derivative", False, err)
    mistakes = {"that is sinh(z) itself; differentiate it": torch.sinh(z)}
    return verdict("01.sinh_derivative", got, torch.cosh(z), mistakes, "on z in [-4, 4]")


def _pushforward_exp(fn):
    x = torch.linspace(0.05, 6, 120, dtype=torch.float64)
    got, err = run(fn, x)
    if err:
        return Result("01.pushforward_exp", False, err)
    p_z = torch.exp(-0.5 * torch.log(x) ** 2) / math.sqrt(2 * math.pi)
    mistakes = {
        "you evaluated p(z = log x) but forgot the factor |d log(x)/dx| = 1/x": p_z,
        "you multiplied by x; the factor is |dz/dx| = 1/x": p_z * x,
    }
    return verdict("01.pushforward_exp", got, p_z / x, mistakes, "on x in [0.05, 6]")


# ----- 02: the Jacobian determinant -----------------------------------------------------


def _det2x2(fn):
    gen = torch.Generator().manual_seed(0)
    entries = torch.randn(4, 50, generator=gen, dtype=torch.float64)
    a, b, c, d = entries
    got, err = run(fn, a, b, c, d)
    if err:
        return Result("02.det2x2", False, err)
    mistakes = {
        "you returned |det|; the determinant keeps its sign (negative = orientation flips)": (
            a * d - b * c
        ).abs(),
        "the determinant is a*d - b*c: products of the diagonals, minus sign between": a * d
        + b * c,
        "that is b*c - a*d: the sign is flipped": b * c - a * d,
    }
    return verdict("02.det2x2", got, a * d - b * c, mistakes, "on 50 random matrices")


def _polar_map(x: torch.Tensor) -> torch.Tensor:
    r, theta = x[:, 0], x[:, 1]
    return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=1)


def _log_abs_det_polar(fn):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(40, 2, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 6.0]) + 0.1
    got, err = run(fn, x)
    if err:
        return Result("02.log_abs_det_polar", False, err)
    r = x[:, 0]
    mistakes = {
        "that is |det J| = r; the exercise asks for its logarithm": r,
        "that is log|det| of the inverse map; the polar map x = (r cos t, r sin t) has det r": (
            -torch.log(r)
        ),
    }
    return verdict("02.log_abs_det_polar", got, torch.log(r), mistakes, "on 40 points (r, t)")


# ----- 03: maximum likelihood -----------------------------------------------------------


def _nll_1d(fn):
    """fn(x, scale, shift) -> mean NLL of x under x = scale * z + shift, z ~ N(0, 1)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(200, generator=gen, dtype=torch.float64) * 1.7 + 0.4
    scale, shift = torch.tensor(-1.3, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    got, err = run(fn, x, scale, shift)
    if err:
        return Result("03.nll_1d", False, err)
    z = (x - shift) / scale
    log_pz = -0.5 * z**2 - 0.5 * LOG_2PI
    expected = -(log_pz - torch.log(scale.abs())).mean()
    mistakes = {
        "you left out log|dz/dx| = -log|scale|": -log_pz.mean(),
        "log|dz/dx| is MINUS log|scale| (z = (x - shift) / scale)": -(
            log_pz + torch.log(scale.abs())
        ).mean(),
        "you returned the log-likelihood; the NLL is its negative": -expected,
    }
    return verdict(
        "03.nll_1d",
        got,
        expected,
        mistakes,
        "on 200 points with scale = -1.3",
        nan_hint="the log of the negative scale is NaN; the change of variables takes the "
        "absolute value, log|dz/dx| = -log|scale| (torch.log(scale.abs()))",
    )


# ----- 04: coupling layers --------------------------------------------------------------


def _s_t(x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, deliberately nonlinear s and t of x_a, shape (batch, 2) each."""
    s = torch.tanh(x_a @ torch.tensor([[0.7, -0.3], [0.2, 0.9]], dtype=x_a.dtype))
    t = torch.sin(x_a) * 1.5 + x_a.roll(1, dims=1)
    return s, t


def _coupling_inverse(fn):
    """fn(z, s_and_t) -> x for the 4D layer z_a = x_a, z_b = x_b * exp(s(x_a)) + t(x_a)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    s, t = _s_t(x[:, :2])
    z = torch.cat([x[:, :2], x[:, 2:] * torch.exp(s) + t], dim=1)
    got, err = run(fn, z, _s_t)
    if err:
        return Result("04.coupling_inverse", False, err)
    s_b, t_b = _s_t(z[:, 2:])
    mistakes = {
        "x_b = (z_b - t) * exp(-s): you multiplied by exp(+s)": torch.cat(
            [z[:, :2], (z[:, 2:] - t) * torch.exp(s)], dim=1
        ),
        "subtract t before dividing by exp(s)": torch.cat(
            [z[:, :2], z[:, 2:] * torch.exp(-s) - t], dim=1
        ),
        "s and t must be computed from z_a (= x_a), not from z_b": torch.cat(
            [z[:, :2], (z[:, 2:] - t_b) * torch.exp(-s_b)], dim=1
        ),
    }
    return verdict("04.coupling_inverse", got, x, mistakes, "on 64 random 4D points")


def _coupling_log_det(fn):
    """fn(x, s_and_t) -> log|det dz/dx| per sample, shape (batch,)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    got, err = run(fn, x, _s_t)
    if err:
        return Result("04.coupling_log_det", False, err)
    s, _ = _s_t(x[:, :2])
    mistakes = {
        "you summed s over every point of the batch too: sum over the transformed coordinates "
        "of each point, s.sum(dim=1)": s.sum(),
        "you summed s over the batch (dim=0): sum over the transformed coordinates of each "
        "point, s.sum(dim=1)": s.sum(0),
        "that is det itself, exp(sum s); the exercise asks for its logarithm": s.sum(1).exp(),
        "the log-det of z = x_b * exp(s) + t is +sum(s)": -s.sum(1),
    }
    return verdict("04.coupling_log_det", got, s.sum(1), mistakes, "on 64 random 4D points")


def _call_layer(method, h: torch.Tensor, what: str) -> tuple[object, str | None]:
    """method(h) -> (out, log_det), checked for shape; (None, message) when it is not."""
    got, err = run(method, h.clone())  # a clone: an in-place answer must not change h
    if err:
        return None, f"{what} {err[len('your function ') :]}"
    if got is None:
        return None, (
            f"you returned None from {what}: write your answer in the cell above; it returns "
            "the pair (output, log_det)"
        )
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return None, f"{what} must return a pair (output, log_det), got {type(got).__name__}"
    out, log_det = (torch.as_tensor(v) if not isinstance(v, torch.Tensor) else v for v in got)
    if out.shape != h.shape:
        return (
            None,
            f"{what}: the output must have the input's shape {tuple(h.shape)}, got "
            f"{tuple(out.shape)}",
        )
    if log_det.shape != (h.shape[0],):
        hint = " (sum s over the transformed coordinates of each point: s.sum(dim=1))"
        return None, (
            f"{what}: log_det must have shape ({h.shape[0]},), one number per point, got "
            f"{tuple(log_det.shape)}" + (hint if log_det.numel() in (1, h.shape[1] // 2) else "")
        )
    return (out.detach().to(h.dtype), log_det.detach().to(h.dtype)), None


def _probe_s_t(forward, h_a, copied, dtype):
    """s(h_a) and t(h_a) of the student's layer, read off its forward: z_b = x_b e^s + t, so
    x_b = 0 gives t and x_b = 1 gives e^s + t."""
    base = torch.zeros(h_a.shape[0], copied.numel(), dtype=dtype)
    base[:, copied] = h_a
    at_one = base.clone()
    at_one[:, ~copied] = 1.0
    with torch.no_grad():
        t = forward(base)[0][:, ~copied].to(dtype)
        scale = forward(at_one)[0][:, ~copied].to(dtype) - t
    return scale, t


def _coupling_case(cls, mask: torch.Tensor, flip: bool, case: str, k: int) -> str | None:
    """Check the student's layer class on one mask; the mistake in words, or None if right."""
    from flowedu.jacobians import log_abs_det_jacobian

    where = f"({case}, 64 random 4D points)"
    layer, err = run(lambda m, f: cls(m, flip=f), mask.clone(), flip)
    if err:
        return f"building your layer with (mask, flip={flip}): {err[len('your function ') :]}"
    if layer is None or not hasattr(layer, "inverse"):
        return "your layer needs the methods forward(x) and inverse(z)"
    dtype, atol = torch.float32, 1e-4
    if isinstance(layer, torch.nn.Module):
        dtype, atol = torch.float64, 1e-8
        layer = layer.double()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(7 + k)  # random weights: a zero last layer would hide mistakes
            for p in layer.parameters():
                p.add_(0.5 * torch.randn_like(p))
    forward = getattr(layer, "forward", layer)
    gen = torch.Generator().manual_seed(8 + k)
    x = torch.randn(64, 4, generator=gen, dtype=torch.float64).to(dtype)
    copied = ~mask if flip else mask

    def near(a, b):
        return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-5))

    def fail(message):
        return f"{message} {where}"

    out, err = _call_layer(forward, x, "forward(x)")
    if err:
        return fail(err)
    z, log_det = out
    if not near(z[:, copied], x[:, copied]):
        if near(z[:, ~copied], x[:, ~copied]):
            if flip:
                return fail(
                    "with flip=True the halves swap roles: copy the coordinates where "
                    "the mask is False and transform those where it is True"
                )
            if case == "alternating mask":
                return fail(
                    "the copied coordinates are where the mask is True (x[:, mask]), "
                    "not always the first half"
                )
            return fail("you copied the wrong half: z_a = x_a where the mask is True")
        if case == "alternating mask":
            return fail(
                "use the mask to pick the halves, x_a = x[:, mask] and x_b = x[:, ~mask] "
                "(after flip), not fixed slices such as x[:, :2]"
            )
        return fail("z_a must equal x_a exactly: copy the coordinates where the mask is True")
    if near(z, x):
        return fail(
            "forward leaves x unchanged even with random network weights: transform "
            "z_b = x_b * exp(s(x_a)) + t(x_a)"
        )
    try:
        scale, t = _probe_s_t(forward, x[:, copied], copied, dtype)
    except Exception as err:  # student code: report, don't raise
        return fail(f"forward(x) raised {type(err).__name__}: {err}")
    if not near(z[:, ~copied], x[:, ~copied] * scale + t):
        return fail(
            "z_b must be x_b * exp(s) + t with s and t computed from x_a alone (the "
            "copied coordinates): it is not affine in x_b, or s, t see x_b"
        )
    if not bool((scale > 0).all()):
        return fail("the scale of x_b must be exp(s) > 0, so that the layer is invertible")
    try:
        expected_ld = log_abs_det_jacobian(lambda h: forward(h.clone()), x.detach()).to(dtype)
    except Exception as err:  # student code under autograd: report, don't raise
        return fail(f"autograd could not differentiate your forward ({type(err).__name__}: {err})")
    ld_mistakes = {
        "log_det is +sum(s) for forward (z_b = x_b * exp(s) + t): the sign is flipped": (
            -expected_ld
        ),
        "log_det is the logarithm of the determinant, sum(s), not exp(sum(s))": (expected_ld.exp()),
        "log_det is missing: it is sum(s) over the transformed coordinates": torch.zeros_like(
            expected_ld
        ),
    }
    if not near(log_det, expected_ld):
        for hint, wrong in ld_mistakes.items():
            if near(log_det, wrong):
                return fail(f"forward: {hint}")
        if log_det.numel() and torch.allclose(log_det, log_det.flatten()[:1].expand_as(log_det)):
            return fail(
                "forward: log_det is the same for every point; sum s over the "
                "coordinates of each point, s.sum(dim=1)"
            )
        i = int((log_det - expected_ld).abs().argmax())
        return fail(
            f"forward: log_det differs from autograd's log|det dz/dx| (at point {i}: "
            f"{log_det[i].item():.6g}, autograd {expected_ld[i].item():.6g}); it is sum(s)"
        )
    back, err = _call_layer(layer.inverse, z, "inverse(z)")
    if err:
        return fail(err)
    x_back, log_det_inv = back
    if not near(x_back, x):
        z_b = z[:, ~copied]
        wrong = {
            "inverse: x_b = (z_b - t) * exp(-s); you multiplied by exp(+s)": (z_b - t) * scale,
            "inverse: subtract t first, then divide by exp(s): x_b = (z_b - t) * exp(-s)": (
                z_b / scale - t
            ),
        }
        if int(copied.sum()) == int((~copied).sum()):
            scale_b, t_b = _probe_s_t(forward, z_b, copied, dtype)
            wrong["inverse: s and t must be computed from z_a (which equals x_a), not from z_b"] = (
                z_b - t_b
            ) / scale_b
        if not near(x_back[:, copied], x[:, copied]):
            return fail("inverse: x_a = z_a exactly; your inverse changed the copied part")
        for hint, value in wrong.items():
            if near(x_back[:, ~copied], value):
                return fail(hint)
        err_max = (x_back - x).abs().max().item()
        return fail(f"inverse(forward(x)) differs from x by up to {err_max:.3g}")
    if not near(log_det_inv, -expected_ld):
        if near(log_det_inv, expected_ld):
            return fail(
                "inverse: its log_det is log|det dx/dz| = -sum(s), the negative of "
                "forward's; you returned +sum(s)"
            )
        return fail("inverse: its log_det must be -sum(s), the negative of forward's")
    return None


def _coupling_layer(cls):
    """cls(mask, flip=False): a coupling layer whose forward(x) -> (z, log_det) copies the
    coordinates where mask is True (where it is False with flip=True), and inverse(z) -> (x,
    log_det) undoes it."""
    name = "04.coupling_layer"
    if cls is None:
        return Result(name, False, NONE_MESSAGE)
    if not callable(cls):
        return Result(name, False, f"expected a class, got {type(cls).__name__}")
    cases = [
        (torch.tensor([True, True, False, False]), False, "half mask"),
        (torch.tensor([True, False, True, False]), False, "alternating mask"),
        (torch.tensor([True, True, False, False]), True, "half mask, flip=True"),
    ]
    for k, (mask, flip, case) in enumerate(cases):
        mistake = _coupling_case(cls, mask, flip, case, k)
        if mistake:
            return Result(name, False, mistake)
    return Result(
        name,
        True,
        "z_a = x_a, round trip, and log-dets match autograd for a half mask (with and without "
        "flip) and an alternating mask",
    )


# ----- 05: a whole flow -----------------------------------------------------------------


def _test_flow(seed: int, standardize=None):
    """A 4-layer RealNVP in float64 whose weights are random (a new flow is the identity,
    which would hide every mistake); built without touching the student's random state."""
    from flowedu.realnvp import realnvp

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = realnvp(n_layers=4, hidden=(16,), standardize=standardize).double()
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return flow


def _flow_log_prob(fn):
    """fn(flow, x) -> log p(x), using only flow.layers and each layer's forward."""
    flow = _test_flow(5)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2
    got, err = run(fn, flow, x)
    if err:
        return Result("05.flow_log_prob", False, err)
    with torch.no_grad():
        expected = flow.log_prob(x)
        z, log_det = flow(x)
        base = -0.5 * (z**2).sum(1) - LOG_2PI
    mistakes = {
        "add the layers' log-dets (change of variables), don't subtract them": base - log_det,
        "you left out the layers' log-dets": base,
        "you left out the base density log N(z; 0, I)": log_det,
    }
    return verdict("05.flow_log_prob", got, expected, mistakes, "on 64 points, 4 layers")


def _sample_and_log_prob(fn):
    """fn(flow, z) -> (x, log_q): z pushed through f (generating direction), and log q(x)."""
    name = "05.sample_and_log_prob"
    flow = _test_flow(6, standardize=([0.5, -0.3], [1.5, 0.8]))
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    got, err = run(fn, flow, z.clone())
    if err:
        return Result(name, False, err)
    if got is None:
        return Result(name, False, NONE_MESSAGE)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return Result(
            name,
            False,
            f"return a pair (x, log_q), got {type(got).__name__}"
            + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""),
        )
    x_got, log_q_got = got
    with torch.no_grad():
        x, log_det = flow.inverse(z)  # x = f(z), log|det df/dz|
        log_q = flow.log_prob(x)  # the normalizing direction's answer, for the same x
        z_back, log_det_back = flow(z)  # what the normalizing direction does to z
        base = standard_normal_log_prob(z)
        h = z
        for layer in flow.layers:  # each layer's inverse, but first layer first
            h = layer.inverse(h)[0]
    where = "on 64 latent points, 4 layers"
    x_mistakes = {
        "flow(z) is the normalizing direction (data -> latent); z -> x is flow.inverse(z), "
        "or each layer's inverse, last layer first": z_back,
        "apply the layers' inverses in reverse order, last layer first (f = g_1^-1 o ... o "
        "g_L^-1): for layer in reversed(flow.layers)": h,
        "you returned z itself: push it through the flow, x, log_det = flow.inverse(z)": z,
    }
    x_result = verdict(name, x_got, x, x_mistakes, where)
    if not x_result:
        return Result(name, False, f"x: {x_result.message}")
    log_q_mistakes = {
        "the sign: going z -> x, log q(x) = log p_Z(z) - log|det df/dz| (subtract the "
        "log-det of the generating direction; adding is right only for the log-det of "
        "f^-1 = flow.forward)": base + log_det,
        "you left out the log-det: log q(x) = log p_Z(z) - log|det df/dz|": base,
        "you left out the base density log p_Z(z) = log N(z; 0, I)": -log_det,
        "log p_Z is evaluated at z, the latent point, not at x": standard_normal_log_prob(x)
        - log_det,
    }
    result = verdict(name, log_q_got, log_q, log_q_mistakes, where)
    if not result:
        return Result(name, False, f"log_q: {result.message}")
    return Result(name, True, f"x and log q(x) match flow.inverse and flow.log_prob {where}")


EXERCISES: dict[str, tuple[Callable[[Callable], Result], str]] = {
    "01.sinh_derivative": (_sinh_derivative, "df(z): the derivative of f(z) = sinh(z)"),
    "01.pushforward_exp": (_pushforward_exp, "p_x(x): density of x = exp(z), z ~ N(0, 1)"),
    "02.det2x2": (_det2x2, "det(a, b, c, d) of [[a, b], [c, d]], elementwise on tensors"),
    "02.log_abs_det_polar": (
        _log_abs_det_polar,
        "fn(x) -> log|det J| of (r, t) -> (r cos t, r sin t), x of shape (batch, 2)",
    ),
    "03.nll_1d": (_nll_1d, "nll(x, scale, shift): mean NLL under x = scale * z + shift"),
    "04.coupling_inverse": (_coupling_inverse, "inverse(z, s_and_t) -> x for the 4D coupling"),
    "04.coupling_log_det": (_coupling_log_det, "log_det(x, s_and_t) -> (batch,) log|det|"),
    "04.coupling_layer": (
        _coupling_layer,
        "a class Layer(mask, flip=False) with forward(x) -> (z, log_det) and inverse(z) -> "
        "(x, log_det)",
    ),
    "05.flow_log_prob": (_flow_log_prob, "log_prob(flow, x) with the layers' forward"),
    "05.sample_and_log_prob": (
        _sample_and_log_prob,
        "sample_and_log_prob(flow, z) -> (x, log_q): x = f(z) and log q(x), z of shape (batch, 2)",
    ),
}
