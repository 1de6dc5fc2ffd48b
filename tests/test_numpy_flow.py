"""The dashboard's NumPy flows (flowedu.app.numpy_flow) against the torch flows they twin.

Every layer type and every shipped flow, both directions, float32: the NumPy result must be
as close to the exact (float64) pass as torch's own float32 pass is, so the two can never
drift apart. And the dashboard's kernel must show the shipped flows without torch.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from flowedu import checkpoint, datasets, pretrained_flows
from flowedu.app import numpy_flow as nf
from flowedu.couplings import (
    AdditiveCoupling,
    AffineCoupling,
    Permutation,
    Standardize,
    alternating_mask,
    half_mask,
)


def randomised(layer, seed: int = 0):
    """The layer with random (not identity) weights, so that every output is exercised."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    return layer.eval()


try:  # the spline family (flowedu.spline_flow)
    from flowedu.spline_flow import SplineCoupling
except ImportError:
    SplineCoupling = None


def twin(layer):
    weights = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    config = {"coupling": "additive" if isinstance(layer, AdditiveCoupling) else "affine"}
    if isinstance(layer, AffineCoupling):
        config["scale_bound"] = layer.scale_bound
    if SplineCoupling is not None and isinstance(layer, SplineCoupling):
        config = {"builder": "spline_flow", "n_bins": layer.n_bins, "bound": layer.bound}
    return nf.layer_from_weights(weights, config)


# One line per layer type of the shipped flows: adding a type adds a line here.
LAYERS = {
    "standardize": lambda: Standardize(
        torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.3, 1.5])
    ),
    "permutation": lambda: Permutation([2, 0, 3, 1]),
    "affine coupling, half mask": lambda: randomised(AffineCoupling(half_mask(2), (16, 16))),
    "affine coupling, flipped": lambda: randomised(AffineCoupling(half_mask(2, flip=True), (8,))),
    "affine coupling, alternating, 4D": lambda: randomised(
        AffineCoupling(alternating_mask(4), (16, 16))
    ),
    "affine coupling, unbounded scale": lambda: randomised(
        AffineCoupling(half_mask(2), (16,), scale_bound=None)
    ),
    "additive coupling": lambda: randomised(AdditiveCoupling(alternating_mask(4, 1), (16, 16))),
}
if SplineCoupling is not None:
    LAYERS["spline coupling"] = lambda: randomised(SplineCoupling(half_mask(2), (16, 16), 8, 3.0))
    LAYERS["spline coupling, 4D, flipped"] = lambda: randomised(
        SplineCoupling(half_mask(4, flip=True), (16,), 5, 2.0)
    )


@pytest.mark.parametrize("name", LAYERS)
def test_each_layer_type_matches_its_torch_layer_both_ways(name):
    layer = LAYERS[name]()
    numpy_layer = twin(layer)
    assert numpy_layer.kind == layer.kind
    for direction in ("normalize", "generate"):
        assert numpy_layer.describe(direction) == layer.describe(direction)
    x = torch.randn(500, layer.dim, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        z, ld = layer(x)
        back, ld_inv = layer.inverse(x)
    z_np, ld_np = numpy_layer.forward(x.numpy())
    back_np, ld_inv_np = numpy_layer.inverse(x.numpy())
    # Splines take a softmax, a cumulative sum and a quadratic root: more float32 rounding.
    tol = 2e-5 if "spline" in name else 2e-6
    for ours, theirs in [(z_np, z), (ld_np, ld), (back_np, back), (ld_inv_np, ld_inv)]:
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=tol, atol=tol)


@pytest.mark.skipif(SplineCoupling is None, reason="no spline family (flowedu.spline_flow)")
def test_the_spline_constants_are_those_of_flowedu_splines():
    from flowedu import splines

    assert (nf.MIN_WIDTH, nf.MIN_HEIGHT, nf.MIN_SLOPE) == (
        splines.MIN_WIDTH,
        splines.MIN_HEIGHT,
        splines.MIN_SLOPE,
    )
    assert nf.SLOPE_SHIFT == splines.SLOPE_SHIFT


def test_a_layer_without_a_numpy_twin_is_named():
    with pytest.raises(nf.UnsupportedFlow, match=r"a layer with weights \['knots'\]"):
        nf.layer_from_weights({"knots": np.zeros(3)}, {})
    with pytest.raises(nf.UnsupportedFlow, match="'image_flow' have no NumPy twin"):
        nf.from_checkpoint({"builder": "image_flow"}, {})


def test_bad_input_shapes_say_what_is_expected():
    numpy_layer = twin(LAYERS["affine coupling, half mask"]())
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\), got \(5, 3\)"):
        numpy_layer.forward(np.zeros((5, 3), np.float32))


SHIPPED = [
    (model, name) for model in pretrained_flows.MODELS for name in pretrained_flows.available(model)
]


def _errors(numpy_out, torch32_out, exact):
    """Largest error relative to (1 + |exact|), of NumPy and of torch float32."""

    def err(a):
        return float(np.max(np.abs(a - exact) / (1 + np.abs(exact))))

    return err(numpy_out), err(torch32_out)


@pytest.mark.parametrize(("model", "name"), SHIPPED, ids=[f"{m}-{n}" for m, n in SHIPPED])
def test_every_shipped_flow_matches_the_torch_flow_to_float32_precision(model, name):
    try:
        flow, metadata = nf.load_shipped(name, model)
    except nf.UnsupportedFlow as err:
        pytest.skip(f"{model} flows are shown with torch: {err}")
    torch_flow, torch_metadata = pretrained_flows.load_pretrained(name, model)
    exact_flow = pretrained_flows.load_pretrained(name, model)[0].double()
    assert metadata == torch_metadata
    assert flow.n_params == sum(p.numel() for p in torch_flow.parameters())
    assert [layer.kind for layer in flow.layers] == [layer.kind for layer in torch_flow.layers]
    for direction in ("normalize", "generate"):
        assert [layer.describe(direction) for layer in flow.layers] == [
            layer.describe(direction) for layer in torch_flow.layers
        ]
    # What the dashboard pushes through: N(0, I) draws to generate, data to normalize.
    z = np.random.default_rng(0).standard_normal((2000, 2)).astype(np.float32)
    x = datasets.sample_array(name, 2000, seed=0).astype(np.float32)
    with torch.no_grad():
        for points, pass_np, pass_torch, pass_exact in [
            (z, flow.inverse, torch_flow.inverse, exact_flow.inverse),
            (x, flow.forward, torch_flow.forward, exact_flow.forward),
        ]:
            out_np, ld_np = pass_np(points)
            out_32, ld_32 = (t.numpy() for t in pass_torch(torch.from_numpy(points)))
            out_64, ld_64 = (t.numpy() for t in pass_exact(torch.from_numpy(points).double()))
            for ours, theirs, exact in [(out_np, out_32, out_64), (ld_np, ld_32, ld_64)]:
                err_np, err_torch = _errors(ours, theirs, exact)
                # As close to the exact pass as torch's float32, within float32 rounding.
                assert err_np <= 4 * err_torch + 1e-5, (err_np, err_torch)
        np.testing.assert_allclose(
            flow.log_prob(x), torch_flow.log_prob(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4
        )


def _recipes():
    from flowedu.realnvp import realnvp

    out = {
        "realnvp": lambda: realnvp(n_layers=4, hidden=(16, 16), standardize=([0.5, -1], [2, 1])),
        "realnvp additive": lambda: realnvp(n_layers=3, hidden=(8,), coupling="additive"),
    }
    if SplineCoupling is not None:
        from flowedu.spline_flow import spline_flow

        out["spline_flow"] = lambda: spline_flow(
            n_layers=3, hidden=(16, 16), n_bins=6, bound=3.0, standardize=([0.5, -1], [2, 1])
        )
    return out


@pytest.mark.parametrize("recipe", list(_recipes()))
def test_a_saved_flow_of_each_recipe_reads_back_as_its_numpy_twin(recipe, tmp_path):
    torch.manual_seed(3)
    flow = _recipes()[recipe]()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    flow.eval()
    path = checkpoint.save(tmp_path / "flow.safetensors", flow, {"dataset": "moons"})
    numpy_flow, metadata = nf.load(path)
    assert metadata == {"dataset": "moons"}
    x = 2 * np.random.default_rng(1).standard_normal((1000, 2)).astype(np.float32)
    with torch.no_grad():
        for ours, theirs in [
            (numpy_flow.forward, flow.forward),
            (numpy_flow.inverse, flow.inverse),
        ]:
            for a, b in zip(ours(x), theirs(torch.from_numpy(x)), strict=True):
                np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-4)


def test_frames_of_a_numpy_flow_equal_those_of_its_torch_flow():
    from flowedu.app import frames as fr

    name = pretrained_flows.available("realnvp")[0]
    numpy_flow = nf.load_shipped(name)[0]
    torch_flow = pretrained_flows.load_pretrained(name)[0]
    for direction in fr.DIRECTIONS:
        a = fr.compute_frames(numpy_flow, name, direction, n_points=500)
        b = fr.compute_frames(torch_flow, name, direction, n_points=500)
        assert a.layer_names == b.layer_names and a.half == b.half
        np.testing.assert_allclose(a.points, b.points, rtol=1e-4, atol=1e-4)
        # The grid reaches where no data is and the flow is ill-conditioned: there both float32
        # passes (torch's and NumPy's) round differently by up to 1e-3 (the flows' test above
        # compares both with the exact pass).
        np.testing.assert_allclose(a.grid, b.grid, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(a.log_dets, b.log_dets, rtol=1e-4, atol=1e-4)
    heat_np, heat_torch = (fr.density_heatmaps(f, 4.0, size=16) for f in (numpy_flow, torch_flow))
    assert np.abs(heat_np.astype(int) - heat_torch).max() <= 1


def test_weights_are_memory_mapped_and_read_only():
    name = pretrained_flows.available("realnvp")[0]
    ckpt = checkpoint.read(pretrained_flows.checkpoint_path(name), mmap=True)
    copied = checkpoint.read(pretrained_flows.checkpoint_path(name))
    assert ckpt.arrays.keys() == copied.arrays.keys()
    for key, array in ckpt.arrays.items():
        assert isinstance(array, np.memmap) and not array.flags.writeable, key
        assert array.dtype == copied.arrays[key].dtype
        np.testing.assert_array_equal(array, copied.arrays[key])


def test_the_dashboard_kernel_shows_every_setting_without_torch():
    code = (
        "import sys; from flowedu.app import Dashboard; d = Dashboard(n_points=500); "
        "d.heatmap.value = True; d.direction.value = 'normalize'; d.dataset.value = 'rings'; "
        "d.colour.value = 'logdet'; print('torch' in sys.modules, d.canvas.version)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "False 4"


def test_train_imports_torch_in_the_background_and_the_button_says_so(tmp_path, monkeypatch):
    """In a fresh process (this one has torch already): the click returns at once."""
    code = """
import sys, time
from flowedu.app import Dashboard
d = Dashboard(n_points=500, train_steps=20)
start = time.perf_counter()
assert d.train(device="cpu") is None
print(round(time.perf_counter() - start, 1) < 0.5, d.train_button.description,
      d.train_button.disabled)
for _ in range(600):
    if d.trainer is not None:
        break
    time.sleep(0.1)
print("torch" in sys.modules, d.trainer.join(120).status, d.train_button.description)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "True Loading torch\u2026 True", out.stdout + out.stderr
    assert lines[-1] == "True done Train", out.stdout + out.stderr
