"""The digits' split, bits per dimension and the baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from flowedu.images import bits_per_dim, check_images, digits, labels
from flowedu.images.baselines import FullGaussian, PixelCategorical, UniformLevels


def test_split_is_load_digits_order_1000_350_447():
    full = load_digits()
    parts = [digits(s) for s in ("train", "validation", "test")]
    assert [len(p) for p in parts] == [1000, 350, 447]
    joined = torch.cat(parts)
    assert joined.dtype == torch.int64
    assert np.array_equal(joined.numpy(), full.images.astype(np.int64))
    all_labels = torch.cat([labels(s) for s in ("train", "validation", "test")])
    assert np.array_equal(all_labels.numpy(), full.target)
    assert int(joined.min()) == 0 and int(joined.max()) == 16


def test_bad_images_are_refused_with_a_reason():
    good = digits("test")[:3]
    with pytest.raises(TypeError, match="integer grey levels"):
        check_images(good.float())
    with pytest.raises(ValueError, match=r"shape \(n, 8, 8\)"):
        check_images(good[0])
    with pytest.raises(ValueError, match="values 0..16"):
        check_images(good + 1)
    with pytest.raises(ValueError, match="empty"):
        check_images(good[:0])
    with pytest.raises(ValueError, match="split"):
        digits("val")
    with pytest.raises(ValueError, match="samples"):
        bits_per_dim(UniformLevels(), good, samples=0)


def test_uniform_on_the_cube_scores_log2_17_exactly():
    mean, se = bits_per_dim(UniformLevels(), digits("test"))
    assert mean == pytest.approx(math.log2(17), abs=1e-6)
    assert se == pytest.approx(0.0, abs=1e-9)


class _HalfCube(torch.nn.Module):
    """Uniform on [0, 17)^63 x [0, 8.5): the last pixel's density is 2/17 on its lower half."""

    def log_prob(self, x):
        x = x.reshape(x.shape[0], 64)
        lp = torch.full((x.shape[0],), -63 * math.log(17) - math.log(8.5), dtype=x.dtype)
        return torch.where(x[:, -1] < 8.5, lp, torch.full_like(lp, -math.inf))


def test_a_flow_missing_part_of_the_cube_is_an_error_not_a_number():
    images = digits("train")[:50].clone()
    images[:, -1, -1] = 16  # the last pixel is in the half the model gives no density
    with pytest.raises(ValueError, match="support"):
        bits_per_dim(_HalfCube(), images)


def test_standard_error_is_sd_over_images_over_sqrt_n():
    model = PixelCategorical(digits("train"))
    test = digits("test")
    mean, se = bits_per_dim(model, test)
    x = test.double()[:, None] + 0.5
    per_image = -model.double().log_prob(x) / (64 * math.log(2))
    assert mean == pytest.approx(float(per_image.mean()), rel=1e-6)
    assert se == pytest.approx(float(per_image.std()) / math.sqrt(len(test)), rel=1e-6)


def test_categorical_bound_is_its_exact_discrete_nll():
    # Constant on each bin: the noise cannot matter, every seed gives the same number.
    model = PixelCategorical(digits("train"), alpha=0.5)
    test = digits("test")
    a, b = bits_per_dim(model, test, seed=0)[0], bits_per_dim(model, test, seed=7)[0]
    assert a == pytest.approx(b, rel=1e-6)
    counts = torch.stack([(digits("train").reshape(-1, 64) == k).sum(0) for k in range(17)], 1)
    probs = (counts + 0.5) / (1000 + 17 * 0.5)
    flat = test.reshape(-1, 64)
    nll = -probs.log().gather(1, flat.T).T.sum(1).mean() / (64 * math.log(2))
    assert a == pytest.approx(float(nll), rel=1e-6)


def test_baselines_order_and_importance_weighting_tightens_the_bound():
    train, val = digits("train"), digits("validation")
    uniform = bits_per_dim(UniformLevels(), val)[0]
    categorical = bits_per_dim(PixelCategorical(train), val)[0]
    gaussian = FullGaussian(train)
    one, se = bits_per_dim(gaussian, val, samples=1)
    eight = bits_per_dim(gaussian, val, samples=8)[0]
    assert categorical < uniform and one < uniform
    assert 0 < se < 0.1
    assert eight <= one + 1e-9  # log-mean-exp of 8 draws >= mean of 1 draw, on average
