"""Glow's image layers: round trips, log-dets against autograd, 1x1 conv against slogdet,
the multi-scale split's bookkeeping, the variational dequantizer's density."""

from __future__ import annotations

import math

import pytest
import torch

from flowedu import checkpoint
from flowedu.flow import standard_normal_log_prob
from flowedu.images import bits_per_dim, digits
from flowedu.images.dequantization import VariationalDequantizer
from flowedu.images.layers import (
    ActNorm,
    ConvCoupling,
    InvConv1x1,
    LogitTransform,
    Split,
    Squeeze,
    Unsqueeze,
    image_checkerboard,
)
from flowedu.images.model import ImageFlow, image_flow


def _jiggle(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Move every weight off its initial value so that no layer is the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module.eval()


def _images(shape, seed=1, low=-1.0, high=1.0):
    gen = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _autograd_log_det(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det| of the Jacobian of fn (image -> image of any shape) at each image of x."""
    out = []
    for image in x:

        def one(v, shape=image.shape):
            return fn(v.reshape(1, *shape))[0]

        jac = torch.autograd.functional.jacobian(one, image)
        out.append(torch.linalg.slogdet(jac.reshape(image.numel(), image.numel()))[1])
    return torch.stack(out)


def _squeeze_block():
    return Split(4, [Squeeze(), ActNorm(8), InvConv1x1(8), ConvCoupling(8, "channel"), Unsqueeze()])


CASES = {
    "logit": (lambda: LogitTransform(17), (3, 1, 4, 4), (0.0, 17.0)),
    "actnorm": (lambda: ActNorm(3), (3, 3, 4, 4), (-1.0, 1.0)),
    "conv1x1": (lambda: InvConv1x1(4), (3, 4, 3, 3), (-1.0, 1.0)),
    "squeeze": (lambda: Squeeze(), (3, 2, 4, 4), (-1.0, 1.0)),
    "unsqueeze": (lambda: Unsqueeze(), (3, 8, 2, 2), (-1.0, 1.0)),
    "coupling checkerboard": (lambda: ConvCoupling(2, "checkerboard", 0, 8), (3, 2, 4, 4), None),
    "coupling checkerboard odd": (
        lambda: ConvCoupling(1, "checkerboard", 1, 8),
        (3, 1, 4, 4),
        None,
    ),
    "coupling channel": (lambda: ConvCoupling(4, "channel", 0, 8), (3, 4, 3, 3), None),
    "coupling channel odd": (lambda: ConvCoupling(3, "channel", 1, 8), (3, 3, 3, 3), None),
    "split": (_squeeze_block, (3, 4, 4, 4), None),
}


def _layer_and_input(name):
    make, shape, bounds = CASES[name]
    torch.manual_seed(0)
    layer = make().double()
    low, high = bounds or (-2.0, 2.0)
    x = _images(shape, low=low, high=high)
    for m in layer.modules():
        if isinstance(m, ActNorm):  # data-dependent init first, then move off it
            m(_images((8, m.channels, *shape[2:]), seed=5) * 3 + 1)
    return _jiggle(layer), x


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_and_log_det_against_autograd(name):
    layer, x = _layer_and_input(name)
    with torch.no_grad():
        z, log_det = layer(x)
        back, log_det_inv = layer.inverse(z)
    assert z.shape[0] == x.shape[0] and log_det.shape == (x.shape[0],)
    assert tuple(z.shape[1:]) == layer.output_shape(tuple(x.shape[1:]))
    assert torch.allclose(back, x, atol=1e-10), (back - x).abs().max()
    assert torch.allclose(log_det_inv, -log_det, atol=1e-10)
    assert torch.allclose(log_det, _autograd_log_det(layer, x), atol=1e-8)
    assert isinstance(layer.kind, str) and layer.describe("normalize") != ""
    assert layer.describe("generate") != ""


def test_conv1x1_log_det_is_hw_times_slogdet_and_lu_matches_the_weight():
    torch.manual_seed(3)
    conv = _jiggle(InvConv1x1(5).double())
    w = conv.weight()
    sign, logabs = torch.linalg.slogdet(w)
    assert logabs.item() == pytest.approx(conv.log_s.sum().item(), abs=1e-12)
    x = _images((2, 5, 3, 4))
    _, log_det = conv(x)
    assert torch.allclose(log_det, torch.full((2,), 12 * logabs.item(), dtype=torch.float64))
    # the 1x1 convolution is W applied at every pixel
    z, _ = conv(x)
    assert torch.allclose(z, torch.einsum("ij,bjhw->bihw", w, x), atol=1e-12)


def test_new_conv1x1_is_a_rotation():
    torch.manual_seed(4)
    w = InvConv1x1(6).double().weight()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-5)


def test_actnorm_data_dependent_init_then_fixed():
    layer = ActNorm(3).double()
    x = _images((16, 3, 5, 5)) * torch.tensor([1.0, 4.0, 0.1]).reshape(1, 3, 1, 1).double() + 7
    z, _ = layer(x)
    flat = z.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(flat.std(1, unbiased=False), torch.ones(3, dtype=torch.float64))
    loc = layer.loc.detach().clone()
    layer(x * 5)  # a second batch does not initialise again
    assert torch.equal(layer.loc.detach(), loc)


def test_squeeze_moves_each_2x2_block_into_channels_and_is_a_permutation():
    x = torch.arange(2 * 16, dtype=torch.float64).reshape(1, 2, 4, 4)
    z, log_det = Squeeze()(x)
    assert z.shape == (1, 8, 2, 2) and log_det.item() == 0
    assert z[0, :4, 0, 0].tolist() == [0, 1, 4, 5]  # the top-left block of channel 0
    assert z[0, 4:, 1, 1].tolist() == [16 + 10, 16 + 11, 16 + 14, 16 + 15]
    assert sorted(z.flatten().tolist()) == x.flatten().tolist()


def test_checkerboard_coupling_copies_its_squares():
    torch.manual_seed(0)
    layer = _jiggle(ConvCoupling(1, "checkerboard", 0, 8).double())
    x = _images((2, 1, 4, 4))
    z, _ = layer(x)
    m = image_checkerboard(4, 4, 0).bool().expand_as(x)
    assert torch.equal(z[m], x[m]) and not torch.allclose(z[~m], x[~m])


def test_split_is_exact_bookkeeping_log_p_adds_up():
    """log p(x) of a flow ending in a split = log N(channels sent out) + log p_inner(rest)."""
    torch.manual_seed(0)
    split = _squeeze_block().double()
    split(_images((8, 4, 4, 4), seed=5))  # ActNorm init
    _jiggle(split)
    head = [ActNorm(4), InvConv1x1(4)]
    flow = _jiggle(ImageFlow([*[m.double() for m in head], split], (4, 4, 4)))
    x = _images((5, 4, 4, 4))
    with torch.no_grad():
        h, ld_head = flow.layers[0](x)
        h, ld = flow.layers[1](h)
        ld_head = ld_head + ld
        out, rest = h[:, :2], h[:, 2:]
        inner = ImageFlow(list(split.layers), (2, 4, 4)).eval()
        by_parts = standard_normal_log_prob(out.reshape(5, -1)) + inner.log_prob(rest) + ld_head
        assert torch.allclose(flow.log_prob(x), by_parts, atol=1e-10)
        # and the channels sent out really are untouched by the split
        z, _ = split(h)
        assert torch.equal(z[:, :2], out)


@pytest.mark.parametrize("multiscale", [True, False])
def test_image_flow_round_trip_and_log_det_against_autograd(multiscale):
    flow = image_flow(
        n_couplings=(2, 1, 1), hidden=(8, 8, 8), multiscale=multiscale, dropout=0.2
    ).double()
    x = digits("train")[:6].double()[:, None] + _images((6, 1, 8, 8), low=0.0, high=1.0)
    flow.initialize(x)
    _jiggle(flow, scale=0.05)
    with torch.no_grad():
        z, log_det = flow(x[:3])
        back, log_det_inv = flow.inverse(z)
    assert z.shape == (3, 64)
    assert torch.allclose(back, x[:3], atol=1e-9)
    assert torch.allclose(log_det, -log_det_inv, atol=1e-9)
    assert torch.allclose(log_det, _autograd_log_det(flow, x[:3]), atol=1e-7)
    trace = flow.trace(x[:3], "normalize")
    assert torch.allclose(sum(trace.log_dets), log_det, atol=1e-10)
    assert len(flow.sample_images(4, seed=0, temperature=0.7)) == 4


def test_dequantizer_noise_lies_in_the_bin_and_its_density_matches_autograd():
    torch.manual_seed(0)
    deq = _jiggle(VariationalDequantizer(hidden=8, n_couplings=2, cond_channels=3).double(), 0.1)
    x = digits("train")[:3].double()[:, None]
    eps = _images((3, 1, 8, 8), low=-2.0, high=2.0)
    with torch.no_grad():
        u, log_r = deq(x, eps)
    assert bool(((u > 0) & (u < 1)).all())
    for i in range(3):

        def noise(e, xi=x[i : i + 1]):
            return deq(xi, e)[0]

        jac = torch.autograd.functional.jacobian(noise, eps[i : i + 1])
        log_det = torch.linalg.slogdet(jac.reshape(64, 64))[1]
        log_n = -0.5 * (eps[i] ** 2).sum() - 32 * math.log(2 * math.pi)
        assert log_r[i].item() == pytest.approx((log_n - log_det).item(), abs=1e-7)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="even height"):
        Squeeze()(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        ActNorm(3)(torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="mask must be one of"):
        ConvCoupling(2, "stripes")
    with pytest.raises(ValueError, match="pixels must lie"):
        LogitTransform()(torch.full((1, 1, 2, 2), 30.0))
    with pytest.raises(ValueError, match="shape they get"):
        Split(4, [Squeeze()]).output_shape((4, 4, 4))
    flow = image_flow(n_couplings=(1, 1, 1), hidden=(4, 4, 4))
    with pytest.raises(ValueError, match="channel axis"):
        flow(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"\(batch, 64\)"):
        flow.inverse(torch.zeros(2, 63))
    with pytest.raises(ValueError, match="dequantization must be"):
        image_flow(dequantization="gaussian")


def test_image_flow_saves_and_loads_through_the_safe_checkpoint(tmp_path):
    flow = image_flow(n_couplings=(1, 1, 1), hidden=(4, 4, 4), dequantization="variational")
    x = digits("train")[:20].float()[:, None] + 0.5
    flow.initialize(x)
    _jiggle(flow, 0.05)
    path = checkpoint.save(tmp_path / "f.safetensors", flow, {"note": "test"})
    loaded, meta = checkpoint.load(path)
    assert isinstance(loaded, ImageFlow) and meta == {"note": "test"}
    assert torch.allclose(loaded.log_prob(x), flow.log_prob(x))
    test = digits("test")[:50]
    assert bits_per_dim(loaded, test) == bits_per_dim(flow, test)
