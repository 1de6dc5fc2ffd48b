"""Specification of flowedu.couplings: each layer is an exact bijection with the right log-det.

Convention: forward(x) -> (z, log|det dz/dx|) is data -> latent, inverse(z) -> (x, log|det dx/dz|)
is latent -> data.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd.functional import jacobian

from flowedu.couplings import (
    AdditiveCoupling,
    AffineCoupling,
    Permutation,
    Standardize,
    alternating_mask,
    checkerboard_mask,
    half_mask,
    mlp,
)

HIDDEN = (32, 32)
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def randomize(layer: torch.nn.Module, scale: float = 0.5, seed: int = 0) -> torch.nn.Module:
    """Give every weight a random non-zero value, so a coupling is no longer the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return layer


def make_layer(kind: str, dim: int = 2, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "affine":
        layer = randomize(AffineCoupling(half_mask(dim), HIDDEN))
    elif kind == "affine_unbounded":
        layer = randomize(AffineCoupling(half_mask(dim), HIDDEN, scale_bound=None), scale=0.3)
    elif kind == "additive":
        layer = randomize(AdditiveCoupling(alternating_mask(dim, 1), HIDDEN))
    elif kind == "permutation":
        layer = Permutation(torch.arange(dim).flip(0))
    elif kind == "standardize":
        layer = Standardize(torch.linspace(-1.0, 2.0, dim), torch.linspace(0.3, 4.0, dim))
    else:
        raise AssertionError(kind)
    return layer.to(dtype)


def points(dim: int = 2, dtype: torch.dtype = torch.float64, n: int = 64) -> torch.Tensor:
    """Typical points, points far in the tails (|x| up to 10) and the corners of [-10, 10]^dim."""
    gen = torch.Generator().manual_seed(1)
    typical = torch.randn(n, dim, generator=gen, dtype=dtype)
    tails = (torch.rand(n, dim, generator=gen, dtype=dtype) * 2 - 1) * 10
    corners = torch.tensor([[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0], [-10.0, -10.0]])
    corners = corners.to(dtype).repeat(1, dim // 2)
    return torch.cat([typical, tails, corners])


KINDS = ["affine", "affine_unbounded", "additive", "permutation", "standardize"]


def per_sample_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """(batch, dim, dim): the Jacobian of fn at each row of x, computed one row at a time."""
    return torch.stack([jacobian(lambda v: fn(v.unsqueeze(0))[0].squeeze(0), xi) for xi in x])


# --- exact invertibility -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_inverse_undoes_forward_including_tails(kind, dtype):
    layer = make_layer(kind, dim=2, dtype=dtype)
    x = points(2, dtype)
    z, _ = layer(x)
    x_back, _ = layer.inverse(z)
    assert x_back.dtype == dtype
    torch.testing.assert_close(x_back, x, atol=TOL[dtype], rtol=TOL[dtype])
    # and the other way round: forward undoes inverse
    z2, _ = layer(layer.inverse(x)[0])
    torch.testing.assert_close(z2, x, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("kind", ["affine", "additive"])
def test_randomised_coupling_is_not_the_identity(kind):
    """Guards the other tests: the perturbed weights give a non-trivial map."""
    layer = make_layer(kind)
    x = points()
    z, log_det = layer(x)
    assert (z - x).abs().max() > 0.1
    if kind == "affine":
        assert log_det.abs().max() > 0.1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False, allow_infinity=False), min_size=4, max_size=4))
def test_affine_coupling_round_trips_any_point_in_the_box(values):
    layer = make_layer("affine", dim=4)
    x = torch.tensor(values, dtype=torch.float64).reshape(1, 4)
    torch.testing.assert_close(layer.inverse(layer(x)[0])[0], x, atol=1e-10, rtol=1e-10)


# --- log-determinants ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_layer_forward_logdet_matches_autograd(kind):
    layer = make_layer(kind, dim=2)
    x = points(2, torch.float64, n=6)
    _, log_det = layer(x)
    jac = per_sample_jacobian(layer.forward, x)
    torch.testing.assert_close(log_det, torch.linalg.slogdet(jac).logabsdet, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_inverse_logdet_matches_autograd(kind):
    layer = make_layer(kind, dim=2)
    z = points(2, torch.float64, n=6)
    _, log_det = layer.inverse(z)
    jac = per_sample_jacobian(layer.inverse, z)
    torch.testing.assert_close(log_det, torch.linalg.slogdet(jac).logabsdet, atol=1e-10, rtol=0)


def test_affine_coupling_logdet_matches_autograd_in_dim_4():
    layer = make_layer("affine", dim=4)
    x = points(4, torch.float64, n=4)
    _, log_det = layer(x)
    jac = per_sample_jacobian(layer.forward, x)
    torch.testing.assert_close(log_det, torch.linalg.slogdet(jac).logabsdet, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_inverse_logdets_are_negatives_at_corresponding_points(kind):
    layer = make_layer(kind)
    x = points()
    z, ld_forward = layer(x)
    _, ld_inverse = layer.inverse(z)
    torch.testing.assert_close(ld_inverse, -ld_forward, atol=1e-10, rtol=0)
    assert ld_forward.shape == (len(x),)


def test_additive_coupling_is_volume_preserving():
    layer = make_layer("additive")
    x = points()
    z, ld_forward = layer(x)
    _, ld_inverse = layer.inverse(z)
    assert torch.equal(ld_forward, torch.zeros(len(x), dtype=torch.float64))
    assert torch.equal(ld_inverse, torch.zeros(len(x), dtype=torch.float64))
    jac = per_sample_jacobian(layer.forward, x[:4])
    torch.testing.assert_close(torch.linalg.det(jac), torch.ones(4, dtype=torch.float64))


def test_permutation_and_standardize_logdets_are_the_textbook_values():
    perm = make_layer("permutation")
    assert torch.equal(perm(points())[1], torch.zeros(len(points()), dtype=torch.float64))
    std = torch.tensor([0.5, 4.0], dtype=torch.float64)
    layer = Standardize(torch.tensor([1.0, -2.0], dtype=torch.float64), std)
    _, log_det = layer(points())
    torch.testing.assert_close(log_det, torch.full_like(log_det, -math.log(2.0)))


# --- structure -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AffineCoupling, AdditiveCoupling])
def test_new_coupling_is_exactly_the_identity(cls):
    layer = cls(half_mask(2), HIDDEN)
    x = points(2, torch.float32)
    z, log_det = layer(x)
    assert torch.equal(z, x)
    assert torch.equal(log_det, torch.zeros(len(x)))
    x_back, log_det_inv = layer.inverse(x)
    assert torch.equal(x_back, x)
    assert torch.equal(log_det_inv, torch.zeros(len(x)))


def test_mlp_last_layer_starts_at_zero_and_others_do_not():
    net = mlp(3, 4, (8, 8))
    assert torch.count_nonzero(net[-1].weight) == 0 and torch.count_nonzero(net[-1].bias) == 0
    assert torch.count_nonzero(net[0].weight) > 0
    assert net(torch.randn(5, 3)).shape == (5, 4)


@pytest.mark.parametrize(
    "mask",
    [half_mask(4), half_mask(4, flip=True), alternating_mask(6), checkerboard_mask(4, 4)],
    ids=["half", "half_flipped", "alternating", "checkerboard"],
)
@pytest.mark.parametrize("cls", [AffineCoupling, AdditiveCoupling])
def test_coupling_copies_the_masked_coordinates_unchanged(cls, mask):
    layer = randomize(cls(mask, HIDDEN)).double()
    x = points(len(mask), torch.float64)
    z, _ = layer(x)
    assert torch.equal(z[:, mask], x[:, mask])  # z_a == x_a bit for bit
    assert not torch.allclose(z[:, ~mask], x[:, ~mask])  # x_b is transformed
    x_back, _ = layer.inverse(z)
    assert torch.equal(x_back[:, mask], z[:, mask])


@pytest.mark.parametrize("bound", [3.0, 1.5])
def test_affine_log_scale_is_bounded_by_scale_bound_even_with_huge_weights(bound):
    layer = randomize(AffineCoupling(half_mask(2), HIDDEN, scale_bound=bound), scale=1e3)
    x = points(2, torch.float32)
    z, log_det = layer(x)  # one transformed coordinate: log_det == s
    assert log_det.abs().max() <= bound + 1e-6
    assert log_det.abs().max() > 0.9 * bound  # saturated, so the bound is what holds it
    assert torch.isfinite(z).all()


def test_unbounded_affine_scale_can_overflow_to_infinity():
    layer = randomize(AffineCoupling(half_mask(2), HIDDEN, scale_bound=None), scale=1e3)
    z, log_det = layer(points(2, torch.float32))
    assert log_det.abs().max() > 100  # no bound on s
    assert not torch.isfinite(z).all()  # exp(s) overflowed


# --- masks ---------------------------------------------------------------------------------


def test_half_mask_marks_the_first_half_and_flip_the_second():
    assert half_mask(4).tolist() == [True, True, False, False]
    assert half_mask(4, flip=True).tolist() == [False, False, True, True]
    assert half_mask(5).tolist() == [True, True, False, False, False]
    assert half_mask(4).dtype == torch.bool


def test_alternating_mask_marks_every_other_coordinate_from_parity():
    assert alternating_mask(5).tolist() == [True, False, True, False, True]
    assert alternating_mask(4, parity=1).tolist() == [False, True, False, True]


def test_checkerboard_mask_of_a_4x4_image_is_a_checkerboard():
    board = checkerboard_mask(4, 4).reshape(4, 4)
    expected = [[(r + c) % 2 == 0 for c in range(4)] for r in range(4)]
    assert board.tolist() == expected
    assert torch.equal(checkerboard_mask(4, 4, parity=1), ~checkerboard_mask(4, 4))
    # every neighbour of a marked pixel is unmarked
    assert not (board[:, 1:] & board[:, :-1]).any() and not (board[1:] & board[:-1]).any()
    assert checkerboard_mask(2, 3).tolist() == [True, False, True, False, True, False]


MASKS = {
    "half_4": half_mask(4),
    "half_16_flipped": half_mask(16, flip=True),
    "alternating_4": alternating_mask(4),
    "alternating_16_odd": alternating_mask(16, 1),
    "checkerboard_2x2": checkerboard_mask(2, 2),
    "checkerboard_4x4": checkerboard_mask(4, 4),
}


@pytest.mark.parametrize("name", MASKS)
@pytest.mark.parametrize("cls", [AffineCoupling, AdditiveCoupling])
def test_coupling_with_each_mask_round_trips_in_dim_4_and_16(cls, name):
    mask = MASKS[name]
    layer = randomize(cls(mask, HIDDEN), scale=0.2).double()
    x = points(len(mask), torch.float64)
    z, ld = layer(x)
    x_back, ld_back = layer.inverse(z)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ld_back, -ld, atol=1e-10, rtol=0)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "shape, words",
    [((3,), ["(batch, 2)", "(3,)", "reshape(1, -1)"]), ((5, 3), ["(batch, 2)", "(5, 3)"])],
)
def test_layer_rejects_points_of_the_wrong_shape_saying_which_shape_it_wants(kind, shape, words):
    layer = make_layer(kind, dtype=torch.float32)
    for method, name in [(layer.forward, "x"), (layer.inverse, "z")]:
        with pytest.raises(ValueError) as err:
            method(torch.zeros(shape))
        for word in [f"expected {name} of shape", *words]:
            assert word in str(err.value)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_rejects_nan_input_saying_where_it_is(kind):
    layer = make_layer(kind, dtype=torch.float32)
    x = torch.zeros(4, 2)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"1 NaN .*first bad rows: \[2\].*remove or replace"):
        layer(x)
    x[2, 1] = float("inf")
    with pytest.raises(ValueError, match="0 NaN and 1 infinite"):
        layer.inverse(x)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_rejects_integer_points_and_says_to_convert_them(kind):
    layer = make_layer(kind, dtype=torch.float32)
    with pytest.raises(TypeError, match=r"floating-point.*torch.int64.*x.float\(\)"):
        layer(torch.zeros(3, 2, dtype=torch.long))


def test_layer_rejects_a_list_and_an_empty_batch():
    layer = make_layer("affine", dtype=torch.float32)
    with pytest.raises(TypeError, match=r"torch.Tensor.*torch.as_tensor"):
        layer([[0.0, 1.0]])
    with pytest.raises(ValueError, match="empty.*at least one point"):
        layer(torch.zeros(0, 2))


@pytest.mark.parametrize("mask", [[True, True], [False, False, False]], ids=["all", "none"])
@pytest.mark.parametrize("cls", [AffineCoupling, AdditiveCoupling])
def test_coupling_rejects_a_mask_that_does_not_split_and_suggests_half_mask(cls, mask):
    with pytest.raises(ValueError) as err:
        cls(torch.tensor(mask), HIDDEN)
    for word in ["some coordinates True", "some False", "half_mask(dim)"]:
        assert word in str(err.value)


@pytest.mark.parametrize("perm", [[0, 0], [1, 2], [0, 2, 3]])
def test_permutation_rejects_a_list_that_is_not_a_permutation(perm):
    with pytest.raises(ValueError, match=r"each of 0\.\.\d+ exactly once"):
        Permutation(perm)


@pytest.mark.parametrize("bound", [0.0, -1.0, float("inf"), float("nan")])
def test_affine_coupling_rejects_a_scale_bound_that_is_not_finite_and_positive(bound):
    with pytest.raises(ValueError, match=r"scale_bound must be a finite number > 0, or None"):
        AffineCoupling(half_mask(2), HIDDEN, scale_bound=bound)


@pytest.mark.parametrize(
    "mean, std",
    [
        ([0.0, 0.0], [1.0, 0.0]),
        ([0.0, 0.0], [1.0, -2.0]),
        ([0.0], [1.0, 1.0]),
        ([float("nan"), 0.0], [1.0, 1.0]),
        ([0.0, 0.0], [1.0, float("inf")]),
    ],
)
def test_standardize_rejects_bad_statistics(mean, std):
    with pytest.raises(ValueError, match="finite mean and std of one shape with std > 0"):
        Standardize(torch.tensor(mean), torch.tensor(std))


def test_standardize_from_data_gives_zero_mean_unit_std():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 2, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 0.5]) + 7
    z, _ = Standardize.from_data(x)(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(z.std(0), torch.ones(2, dtype=torch.float64))


# --- layers describe themselves --------------------------------------------------------------


def test_each_layer_says_what_it_copies_and_what_it_transforms_in_words():
    from flowedu.couplings import AdditiveCoupling, AffineCoupling, Permutation, Standardize

    mask = torch.tensor([True, False])
    assert AffineCoupling(mask, (8,)).describe() == "scales and shifts y, given x"
    assert AdditiveCoupling(~mask, (8,)).describe() == "shifts x, given y"
    assert AffineCoupling(torch.tensor([True, False, True]), (8,)).describe() == (
        "scales and shifts x2, given x1, x3"
    )
    assert AffineCoupling(mask, (8,)).describe(names=["u", "v"]) == "scales and shifts v, given u"
    assert Permutation([1, 0]).describe() == "swaps x and y"
    assert Permutation([2, 0, 1]).describe() == "reorders the coordinates to x3, x1, x2"
    std = Standardize(torch.zeros(2), torch.ones(2))
    assert "mean 0, sd 1" in std.describe("normalize")
    assert "undoes the standardisation" in std.describe("generate")
    kinds = [AffineCoupling(mask).kind, AdditiveCoupling(mask).kind, std.kind]
    assert kinds + [Permutation([1, 0]).kind] == ["coupling"] * 2 + ["standardize", "permutation"]


def test_a_description_with_the_wrong_number_of_names_says_so():
    from flowedu.couplings import AffineCoupling

    with pytest.raises(ValueError, match="need 2 coordinate names, got 3"):
        AffineCoupling(torch.tensor([True, False]), (8,)).describe(names=["a", "b", "c"])
