"""Specification of flowedu.jacobians: batched Jacobians, 2x2 linear maps, and det J as the
local area scale."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowedu.jacobians import (
    LinearMap2D,
    fd_jacobian,
    grid_lines,
    jacobian,
    linear_map,
    log_abs_det_jacobian,
    polygon_area,
    push_grid,
    push_polygon,
    small_square_area_ratio,
    unit_square,
)

F64 = torch.float64


def assert_close(actual, expected, rtol=1.3e-6, atol=1e-5):
    """|actual - expected| <= atol + rtol |expected| everywhere (torch.testing.assert_close's
    rule, without its import time)."""
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected, dtype=actual.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = (actual - expected).abs() - (atol + rtol * expected.abs())
    assert (err <= 0).all(), f"off by up to {err.max().item():.3g} beyond the tolerance"


def bend(p: torch.Tensor) -> torch.Tensor:
    """A nonlinear bijection of the plane: (batch, 2) -> (batch, 2)."""
    x, y = p[:, 0], p[:, 1]
    return torch.stack([x + 0.3 * torch.sin(y), y * torch.exp(0.5 * x) + 0.2 * x**2], dim=1)


def bend_det(p: torch.Tensor) -> torch.Tensor:
    """det J of bend, by hand: J = [[1, 0.3 cos y], [0.5 y e^(x/2) + 0.4 x, e^(x/2)]]."""
    x, y = p[:, 0], p[:, 1]
    return torch.exp(0.5 * x) - 0.3 * torch.cos(y) * (0.5 * y * torch.exp(0.5 * x) + 0.4 * x)


def points(n=16, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_jacobian_matches_finite_differences():
    x = points()
    J = jacobian(bend, x)
    assert J.shape == (16, 2, 2)
    assert_close(J, fd_jacobian(bend, x), rtol=1e-7, atol=1e-8)


def test_jacobian_is_rows_d_out_by_columns_d_in():
    def first_two_times_third(p):  # (batch, 3) -> (batch, 2)
        return p[:, :2] * p[:, 2:]

    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=F64)
    J = jacobian(first_two_times_third, x)
    assert_close(J, torch.tensor([[[3.0, 0.0, 1.0], [0.0, 3.0, 2.0]]], dtype=F64), atol=0)
    assert_close(fd_jacobian(first_two_times_third, x), J, rtol=1e-8, atol=1e-8)


def test_log_abs_det_jacobian_matches_the_hand_computed_determinant():
    x = points()
    assert_close(log_abs_det_jacobian(bend, x), bend_det(x).abs().log(), rtol=1e-12, atol=1e-12)


def test_jacobian_of_a_layer_uses_its_first_output():
    # A flowedu layer returns (z, log_det); its forward log_det must be log|det dz/dx|.
    class Scale2D(torch.nn.Module):
        def forward(self, x):
            z = x * torch.tensor([2.0, -3.0], dtype=x.dtype)
            return z, torch.full((x.shape[0],), math.log(6.0), dtype=x.dtype)

    layer, x = Scale2D(), points(4)
    assert_close(log_abs_det_jacobian(layer, x), layer(x)[1], rtol=1e-12, atol=1e-12)


def test_linear_map_jacobian_is_its_matrix():
    L = LinearMap2D(2.0, 1.0, -1.0, 3.0)
    assert_close(jacobian(L, points(5)), L.A.expand(5, 2, 2), rtol=0, atol=1e-15)


def test_linear_map_det_is_signed_area_of_image_of_unit_square():
    for a, b, c, d in [(2, 1, -1, 3), (0.5, 0, 0, 0.5), (1, 2, 3, 4), (0, 1, 1, 0), (3, 1, 6, 2)]:
        L = LinearMap2D(a, b, c, d)
        assert L.det == a * d - b * c and L.area_scale == abs(a * d - b * c)
        corners = L.apply(unit_square(F64))  # a parallelogram: straight edges suffice
        assert polygon_area(corners).item() == pytest.approx(L.det, abs=1e-12)


def test_negative_det_flips_orientation():
    mirror = LinearMap2D(1, 0, 0, -1)  # reflection in the x axis
    assert mirror.det == -1 and mirror.orientation == -1
    assert polygon_area(unit_square()) == 1  # counter-clockwise: positive
    assert polygon_area(mirror.apply(unit_square())) == -1  # the image runs clockwise
    assert LinearMap2D(0, -1, 1, 0).orientation == +1  # a rotation keeps it


def test_singular_map_inverse_is_refused():
    L = LinearMap2D(1, 2, 2, 4)  # second row = 2 x first: every image lies on a line
    assert L.det == 0 and L.orientation == 0 and L.is_singular
    msg = "det A = 0: the map squashes the plane onto a line"
    with pytest.raises(ValueError, match=msg):
        L.inverse_apply(points(3))


def test_singularity_tolerance_is_relative_to_the_entries_scale():
    assert LinearMap2D(1e-9, 0, 0, 1e-9).orientation == 1  # tiny but fine: A^-1 = 1e9 I
    assert LinearMap2D(1e9, 2e9, 2e9, 4e9 + 1e-3).is_singular  # det off 0 by rounding only
    assert linear_map([[1, 2], [2, 4 + 1e-15]]).is_singular


def test_inverse_apply_undoes_apply():
    L, p = linear_map(torch.tensor([[2.0, 1.0], [-1.0, 3.0]])), points()
    assert_close(L.inverse_apply(L.apply(p)), p, rtol=1e-14, atol=1e-14)


def test_polygon_area_is_the_shoelace_formula():
    triangle = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    assert polygon_area(triangle) == 6 and polygon_area(triangle.flip(0)) == -6


def test_push_polygon_bends_the_edges_of_a_nonlinear_map():
    image = push_polygon(bend, unit_square(F64), n_per_edge=10)
    assert image.shape == (40, 2)
    bottom_edge = image[:10]  # the image of y = 0, x in [0, 1): (x, 0.2 x^2), a parabola
    assert_close(bottom_edge[:, 1], 0.2 * bottom_edge[:, 0] ** 2, rtol=1e-12, atol=1e-12)
    first, mid, last = bottom_edge[0], bottom_edge[5], bottom_edge[-1]
    u, v = mid - first, last - first
    assert abs(u[0] * v[1] - u[1] * v[0]) > 1e-3  # the three points are not on one line


def test_grid_lines_and_push_grid_keep_shapes():
    lines = grid_lines((-1, 1), (-2, 2), n_lines=5, n_points=30)
    assert len(lines) == 10 and all(line.shape == (30, 2) for line in lines)
    assert (lines[0][:, 0] == -1).all() and (lines[5][:, 1] == -2).all()
    pushed = push_grid(bend, lines)
    assert [p.shape for p in pushed] == [line.shape for line in lines]
    assert_close(pushed[3], bend(lines[3]))


def test_small_square_area_ratio_tends_to_abs_det_J():
    x0 = torch.tensor([0.3, -0.7], dtype=F64)
    abs_det = bend_det(x0[None]).abs().item()
    errors = [abs(small_square_area_ratio(bend, x0, h) - abs_det) for h in [0.3, 0.03, 0.003]]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-5 * abs_det


def test_bad_inputs_say_what_to_do():
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, d\), got \(3,\)"):
        jacobian(bend, torch.ones(3))
    with pytest.raises(ValueError, match="x has 1 NaN or inf entries; clean the input first"):
        fd_jacobian(bend, torch.tensor([[0.0, math.nan]]))
    with pytest.raises(TypeError, match="floating-point x"):
        jacobian(bend, torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="a determinant needs a square one"):
        log_abs_det_jacobian(lambda p: p[:, :1], points(2))
    with pytest.raises(ValueError, match="fn must map x of shape"):
        jacobian(lambda p: p.sum(), points(2))
    with pytest.raises(ValueError, match="LinearMap2D: b must be finite"):
        LinearMap2D(1, math.inf, 0, 1)
    with pytest.raises(ValueError, match=r"expected a 2x2 matrix, got shape \(3,\)"):
        linear_map([1, 2, 3])


# --- property test ----------------------------------------------------------------------

ENTRIES = st.one_of(
    st.floats(-1e6, 1e6),
    st.integers(-3, 3),  # small integers make exactly singular maps likely
    st.sampled_from([0.0, -0.0, 1e-150, -1e-150, 1e150, math.nan, math.inf, "1", None]),
)


@settings(max_examples=100, deadline=None)
@given(
    entries=st.tuples(ENTRIES, ENTRIES, ENTRIES, ENTRIES),
    batch=st.integers(1, 5),
    dtype=st.sampled_from([torch.float32, F64]),
    seed=st.integers(0, 2**16),
)
def test_random_linear_maps_give_a_clear_error_or_a_finite_invertible_result(
    entries, batch, dtype, seed
):
    p = torch.randn(batch, 2, generator=torch.Generator().manual_seed(seed)).to(dtype)
    try:
        L = LinearMap2D(*entries)
        image = L.apply(p)
        back = L.inverse_apply(image)
    except (ValueError, TypeError) as err:
        assert "LinearMap2D" in str(err) or "det A = 0" in str(err)
        return
    assert not L.is_singular and torch.isfinite(image).all() and torch.isfinite(back).all()
    cond = torch.linalg.cond(L.A).item()  # how much A^-1 amplifies rounding errors
    eps = torch.finfo(dtype).eps
    assert ((back - p).abs() <= 10 * eps * cond * (1 + p.abs())).all()
    assert L.orientation == (1 if torch.linalg.det(L.A) > 0 else -1)
