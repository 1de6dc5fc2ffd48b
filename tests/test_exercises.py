"""The exercise checkers: every reference answer passes, an unanswered exercise says so, and
each usual mistake a checker promises to name is named."""

from __future__ import annotations

import math

import pytest
import torch

from flowedu.exercises import EXERCISES, answer_or_solution, check
from flowedu.exercises.verdicts import NONE_MESSAGE
from flowedu.flow import standard_normal_log_prob

LOG_2PI = math.log(2 * math.pi)


def _normal_pdf(z):
    return torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


def _cat_b(z, x_b):
    return torch.cat([z[:, :2], x_b], dim=1)


# Each exercise: its reference answer, and wrong answers with a word the verdict must contain.
REFERENCES = {
    "01.sinh_derivative": lambda z: torch.cosh(z),
    "01.pushforward_exp": lambda x: _normal_pdf(torch.log(x)) / x,
    "02.det2x2": lambda a, b, c, d: a * d - b * c,
    "02.log_abs_det_polar": lambda x: torch.log(x[:, 0].abs()),
    "03.nll_1d": lambda x, scale, shift: (
        -(-0.5 * ((x - shift) / scale) ** 2 - 0.5 * LOG_2PI - torch.log(scale.abs())).mean()
    ),
    "04.coupling_inverse": lambda z, st: _cat_b(
        z, (z[:, 2:] - st(z[:, :2])[1]) * torch.exp(-st(z[:, :2])[0])
    ),
    "04.coupling_log_det": lambda x, st: st(x[:, :2])[0].sum(dim=1),
    "05.flow_log_prob": lambda flow, x: flow.log_prob(x),
}


def _inverse_log_q(flow, z):
    x, log_det = flow.inverse(z)
    return x, standard_normal_log_prob(z) - log_det


def _layer_by_layer(flow, z):
    log_det = torch.zeros(z.shape[0], dtype=z.dtype)
    h = z
    for layer in reversed(flow.layers):
        h, ld = layer.inverse(h)
        log_det = log_det + ld
    return h, standard_normal_log_prob(z) - log_det


def _wrong_order(flow, z):
    h = z
    log_det = torch.zeros(z.shape[0], dtype=z.dtype)
    for layer in flow.layers:
        h, ld = layer.inverse(h)
        log_det = log_det + ld
    return h, standard_normal_log_prob(z) - log_det


REFERENCES["05.sample_and_log_prob"] = _inverse_log_q


def _sinh(z):
    return torch.sinh(z)


MISTAKES = [
    ("01.sinh_derivative", _sinh, "sinh(z) itself"),
    ("01.pushforward_exp", lambda x: _normal_pdf(torch.log(x)), "forgot the factor"),
    ("01.pushforward_exp", lambda x: _normal_pdf(torch.log(x)) * x, "multiplied by x"),
    ("02.det2x2", lambda a, b, c, d: (a * d - b * c).abs(), "keeps its sign"),
    ("02.det2x2", lambda a, b, c, d: a * d + b * c, "minus sign between"),
    ("02.det2x2", lambda a, b, c, d: b * c - a * d, "sign is flipped"),
    ("02.log_abs_det_polar", lambda x: x[:, 0], "its logarithm"),
    ("02.log_abs_det_polar", lambda x: -torch.log(x[:, 0]), "inverse map"),
    (
        "03.nll_1d",
        lambda x, scale, shift: -(-0.5 * ((x - shift) / scale) ** 2 - 0.5 * LOG_2PI).mean(),
        "left out log|dz/dx|",
    ),
    (
        "03.nll_1d",
        lambda x, scale, shift: (
            -(-0.5 * ((x - shift) / scale) ** 2 - 0.5 * LOG_2PI + torch.log(scale.abs())).mean()
        ),
        "MINUS log|scale|",
    ),
    (
        "03.nll_1d",
        lambda x, scale, shift: (
            -0.5 * ((x - shift) / scale) ** 2 - 0.5 * LOG_2PI - torch.log(scale.abs())
        ).mean(),
        "its negative",
    ),
    (  # the missing absolute value: log of a negative scale
        "03.nll_1d",
        lambda x, scale, shift: (
            -(-0.5 * ((x - shift) / scale) ** 2 - 0.5 * LOG_2PI - torch.log(scale)).mean()
        ),
        "absolute value",
    ),
    (
        "04.coupling_inverse",
        lambda z, st: _cat_b(z, (z[:, 2:] - st(z[:, :2])[1]) * torch.exp(st(z[:, :2])[0])),
        "exp(+s)",
    ),
    (
        "04.coupling_inverse",
        lambda z, st: _cat_b(z, z[:, 2:] * torch.exp(-st(z[:, :2])[0]) - st(z[:, :2])[1]),
        "subtract t before",
    ),
    (
        "04.coupling_inverse",
        lambda z, st: _cat_b(z, (z[:, 2:] - st(z[:, 2:])[1]) * torch.exp(-st(z[:, 2:])[0])),
        "not from z_b",
    ),
    ("04.coupling_log_det", lambda x, st: st(x[:, :2])[0].sum(), "every point of the batch"),
    ("04.coupling_log_det", lambda x, st: st(x[:, :2])[0].sum(0), "over the batch (dim=0)"),
    ("04.coupling_log_det", lambda x, st: st(x[:, :2])[0].sum(1).exp(), "its logarithm"),
    ("04.coupling_log_det", lambda x, st: -st(x[:, :2])[0].sum(1), "+sum(s)"),
    (
        "05.flow_log_prob",
        lambda flow, x: standard_normal_log_prob(flow(x)[0]) - flow(x)[1],
        "don't subtract",
    ),
    ("05.flow_log_prob", lambda flow, x: standard_normal_log_prob(flow(x)[0]), "left out the"),
    ("05.flow_log_prob", lambda flow, x: flow(x)[1], "base density"),
    (
        "05.sample_and_log_prob",
        lambda flow, z: (flow.inverse(z)[0], standard_normal_log_prob(z) + flow.inverse(z)[1]),
        "the sign",
    ),
    (
        "05.sample_and_log_prob",
        lambda flow, z: (flow.inverse(z)[0], standard_normal_log_prob(z)),
        "left out the log-det",
    ),
    ("05.sample_and_log_prob", lambda flow, z: (flow.inverse(z)[0], -flow.inverse(z)[1]), "base"),
    (
        "05.sample_and_log_prob",
        lambda flow, z: (
            flow.inverse(z)[0],
            standard_normal_log_prob(flow.inverse(z)[0]) - flow.inverse(z)[1],
        ),
        "evaluated at z",
    ),
    ("05.sample_and_log_prob", lambda flow, z: flow(z), "normalizing direction"),
    ("05.sample_and_log_prob", _wrong_order, "reverse order"),
    ("05.sample_and_log_prob", lambda flow, z: (z, standard_normal_log_prob(z)), "z itself"),
    ("05.sample_and_log_prob", lambda flow, z: flow.inverse(z)[0], "a pair (x, log_q)"),
]


def test_every_exercise_of_01_to_05_is_tested_here():
    of_01_to_05 = {name for name in EXERCISES if name[:2] in {"01", "02", "03", "04", "05"}}
    assert of_01_to_05 == set(REFERENCES) | {"04.coupling_layer"}


def test_answer_or_solution_runs_the_students_answer_once_it_passes():
    def solution(z):
        return torch.cosh(z)

    def right(z):
        return 0.5 * (torch.exp(z) + torch.exp(-z))

    assert answer_or_solution("01.sinh_derivative", right, solution) is right
    assert answer_or_solution("01.sinh_derivative", lambda z: None, solution) is solution
    assert answer_or_solution("01.sinh_derivative", torch.sinh, solution) is solution


@pytest.mark.parametrize("exercise", sorted(REFERENCES))
def test_reference_passes(exercise):
    result = check(exercise, REFERENCES[exercise])
    assert result.passed, result.message
    assert "Correct" in repr(result)


def test_layer_by_layer_sampling_passes():
    assert check("05.sample_and_log_prob", _layer_by_layer).passed


@pytest.mark.parametrize("exercise", sorted(REFERENCES))
def test_none_says_write_your_answer(exercise):
    def unanswered(*args):
        return None  # the notebooks' placeholder: "replace with your answer"

    result = check(exercise, unanswered)
    assert not result.passed
    assert result.message.endswith(NONE_MESSAGE), result.message


@pytest.mark.parametrize(
    ("exercise", "answer", "words"), MISTAKES, ids=[f"{m[0]}:{m[2]}" for m in MISTAKES]
)
def test_mistake_is_named(exercise, answer, words):
    result = check(exercise, answer)
    assert not result.passed
    assert words in result.message, result.message


def test_a_crash_is_reported_not_raised():
    def broken(z):
        raise IndexError("too many indices")

    result = check("01.sinh_derivative", broken)
    assert not result.passed and "IndexError: too many indices" in result.message


def test_a_wrong_answer_gets_the_largest_error():
    result = check("01.sinh_derivative", lambda z: torch.cosh(z) + 0.5)
    assert not result.passed and "largest error 0.5" in result.message


def test_a_wrong_shape_is_named():
    result = check("01.sinh_derivative", lambda z: torch.cosh(z)[:10])
    assert "expected shape (81,), got (10,)" in result.message


def test_not_a_function():
    assert "expected a function" in check("01.sinh_derivative", 3.0).message


def test_unknown_exercise():
    with pytest.raises(ValueError, match="unknown exercise"):
        check("99.nothing", lambda x: x)


def test_checkers_leave_the_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("05.flow_log_prob", REFERENCES["05.flow_log_prob"])
    check("05.sample_and_log_prob", _inverse_log_q)
    assert torch.equal(torch.rand(3), expected)


def test_html_verdict_escapes():
    result = check("01.sinh_derivative", lambda z: None)
    html = result._repr_html_()
    assert "Not yet" in html and "write your answer" in html


# ----- 04.coupling_layer: a whole layer class ----------------------------------------------


def make_layer_class(mistake: str | None = None):
    """A coupling layer class as a student would write it; `mistake` plants one usual error."""

    class Layer(torch.nn.Module):
        def __init__(self, mask, flip=False):
            super().__init__()
            mask = torch.as_tensor(mask, dtype=torch.bool)
            if mistake == "ignores flip":
                flip = False
            self.register_buffer("mask", ~mask if flip else mask)
            n_a, n_b = int(self.mask.sum()), int((~self.mask).sum())
            self.net = torch.nn.Sequential(
                torch.nn.Linear(n_a, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2 * n_b)
            )

        def _split(self, h):
            if mistake == "fixed halves":
                return h[:, :2], h[:, 2:]
            return h[:, self.mask], h[:, ~self.mask]

        def _merge(self, h_a, h_b):
            out = torch.empty(h_a.shape[0], self.mask.numel(), dtype=h_a.dtype)
            if mistake == "fixed halves":
                return torch.cat([h_a, h_b], dim=1)
            out[:, self.mask] = h_a
            out[:, ~self.mask] = h_b
            return out

        def _s_t(self, h_a):
            s, t = self.net(h_a).chunk(2, dim=1)
            return torch.tanh(s), t

        def forward(self, x):
            x_a, x_b = self._split(x)
            s, t = self._s_t(x_a)
            z_b = x_b * torch.exp(s) + t
            if mistake == "identity":
                z_b = x_b
            if mistake == "s sees x_b":
                z_b = x_b * torch.exp(s + 0.1 * x_b) + t
            log_det = {
                "log-det sign": -s.sum(1),
                "det not log": s.sum(1).exp(),
                "no log-det": torch.zeros(x.shape[0], dtype=x.dtype),
                "log-det over batch": s.sum(1).mean().expand(x.shape[0]),
                "log-det shape": s.sum(),
            }.get(mistake, s.sum(1))
            if mistake == "transforms x_a":
                x_a = x_a + 1.0
            return self._merge(x_a, z_b), log_det

        def inverse(self, z):
            z_a, z_b = self._split(z)
            s, t = self._s_t(z_b if mistake == "inverse from z_b" else z_a)
            x_b = {
                "inverse exp(+s)": (z_b - t) * torch.exp(s),
                "inverse order": z_b * torch.exp(-s) - t,
            }.get(mistake, (z_b - t) * torch.exp(-s))
            log_det = s.sum(1) if mistake == "inverse log-det sign" else -s.sum(1)
            if mistake == "inverse changes x_a":
                z_a = z_a * 2
            return self._merge(z_a, x_b), log_det

    return Layer


LAYER_MISTAKES = {
    "ignores flip": "with flip=True the halves swap roles",
    "fixed halves": "not fixed slices",
    "identity": "leaves x unchanged",
    "s sees x_b": "s and t computed from x_a alone",
    "log-det sign": "the sign is flipped",
    "det not log": "not exp(sum(s))",
    "no log-det": "log_det is missing",
    "log-det over batch": "the same for every point",
    "log-det shape": "one number per point",
    "transforms x_a": "z_a must equal x_a exactly",
    "inverse from z_b": "not from z_b",
    "inverse exp(+s)": "you multiplied by exp(+s)",
    "inverse order": "subtract t first",
    "inverse log-det sign": "you returned +sum(s)",
    "inverse changes x_a": "changed the copied part",
}


def test_coupling_layer_reference_passes():
    result = check("04.coupling_layer", make_layer_class())
    assert result.passed, result.message


def test_coupling_layer_none():
    assert check("04.coupling_layer", None).message == NONE_MESSAGE


@pytest.mark.parametrize("mistake", sorted(LAYER_MISTAKES))
def test_coupling_layer_mistake_is_named(mistake):
    result = check("04.coupling_layer", make_layer_class(mistake))
    assert not result.passed
    assert LAYER_MISTAKES[mistake] in result.message, result.message


def test_coupling_layer_accepts_flowedus_own_layer():
    from flowedu.couplings import AffineCoupling

    def flowedu_layer(mask, flip=False):
        return AffineCoupling(~mask if flip else mask, hidden=(16,))

    result = check("04.coupling_layer", flowedu_layer)
    assert result.passed, result.message


def test_coupling_layer_a_class_that_cannot_be_built():
    class Broken:
        def __init__(self, mask):  # no flip argument
            pass

    result = check("04.coupling_layer", Broken)
    assert not result.passed and "building your layer" in result.message


def test_coupling_layer_that_works_in_place_is_judged_on_its_answer():
    Layer = make_layer_class()

    class InPlace(Layer):
        def forward(self, x):
            x_a, x_b = x[:, self.mask], x[:, ~self.mask]
            s, t = self._s_t(x_a)
            x[:, ~self.mask] = x_b * torch.exp(s) + t  # overwrites its input
            return x, s.sum(dim=1)

    result = check("04.coupling_layer", InPlace)
    assert result.passed, result.message


def test_coupling_layer_need_not_be_a_module():
    Reference = make_layer_class()

    class Plain:  # not an nn.Module: checked in float32, with its own weights
        def __init__(self, mask, flip=False):
            torch.manual_seed(0)
            self.inner = Reference(mask, flip)
            for p in self.inner.net.parameters():
                torch.nn.init.normal_(p, std=0.5)

        def forward(self, x):
            return self.inner(x)

        def inverse(self, z):
            return self.inner.inverse(z)

    result = check("04.coupling_layer", Plain)
    assert result.passed, result.message
