"""The dashboard's Python side, without a browser: frame data, colours, errors, training."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from flowedu import checkpoint, datasets, pretrained_flows
from flowedu.app import frames as fr
from flowedu.app.canvas import FlowCanvas
from flowedu.realnvp import realnvp


def small_flow(dataset: str = "moons", seed: int = 0):
    """A 4-layer flow with random (not identity) couplings: every layer moves points."""
    torch.manual_seed(seed)
    x = datasets.sample(dataset, 2000, seed=1)
    flow = realnvp(n_layers=4, hidden=(16, 16), standardize=(x.mean(0).tolist(), x.std(0).tolist()))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return flow.eval()


@pytest.fixture(scope="module")
def flow():
    return small_flow()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A checkpoint folder holding a small moons flow, read through FLOWEDU_PRETRAINED_DIR."""
    checkpoint.save(
        tmp_path / "realnvp" / "moons.safetensors",
        small_flow(),
        {"dataset": "moons", "test_nll": 3.0},
    )
    monkeypatch.setenv(pretrained_flows.ENV_VAR, str(tmp_path))
    return tmp_path


# ----------------------------------------------------------------------------- frames


@pytest.mark.parametrize("direction", fr.DIRECTIONS)
def test_frames_hold_every_intermediate_as_float32(flow, direction):
    f = fr.compute_frames(flow, "moons", direction, n_points=300)
    L = len(flow.layers)
    assert f.n_layers == L
    assert f.points.shape == (L + 1, 300, 2) and f.points.dtype == np.float32
    lines, samples = f.grid_shape
    assert (lines, samples) == (2 * fr.GRID_LINES, fr.GRID_SAMPLES)
    assert f.grid.shape == (L + 1, lines * samples, 2) and f.grid.dtype == np.float32
    assert f.log_dets.shape == (L, 300) and f.log_dets.dtype == np.float32
    assert f.colour_bins.shape == (L, 300) and f.colour_bins.dtype == np.uint8
    assert len(f.layer_names) == L
    assert f.points.flags.c_contiguous and f.grid.flags.c_contiguous


@pytest.mark.parametrize("direction", fr.DIRECTIONS)
def test_frame_at_integer_positions_equals_the_trace_intermediates(flow, direction):
    f = fr.compute_frames(flow, "moons", direction, n_points=200, grid=False)
    start = torch.from_numpy(fr.start_points("moons", direction, 200, seed=0))
    with torch.no_grad():
        trace = flow.trace(start, direction)
    for k, expected in enumerate(trace.points):
        np.testing.assert_allclose(fr.frame_at(f, k), expected.numpy(), rtol=1e-5, atol=1e-5)
    for k, expected in enumerate(trace.log_dets):
        np.testing.assert_allclose(f.log_dets[k], expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("direction", fr.DIRECTIONS)
def test_a_pass_made_in_chunks_equals_one_pass_over_all_points(flow, direction, monkeypatch):
    monkeypatch.setattr(fr, "TRACE_CHUNK", 64)  # 300 points + 1,664 on the grid: 31 chunks
    f = fr.compute_frames(flow, "moons", direction, n_points=300, grid=True)
    start = fr.start_points("moons", direction, 300, seed=0)
    extent = fr.LATENT_EXTENT if direction == "generate" else round(f.half / 1.15, 1)
    with torch.no_grad():
        trace = flow.trace(
            torch.from_numpy(np.concatenate([start, fr.grid_lines(extent)])), direction
        )
    for k, expected in enumerate(trace.points):
        np.testing.assert_allclose(f.points[k], expected[:300].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(f.grid[k], expected[300:].numpy(), rtol=1e-5, atol=1e-5)
    for k, expected in enumerate(trace.log_dets):
        np.testing.assert_allclose(f.log_dets[k], expected[:300].numpy(), rtol=1e-5, atol=1e-5)


def test_generate_ends_at_the_flows_samples_and_normalize_at_its_latents(flow):
    gen = fr.compute_frames(flow, "moons", "generate", n_points=200, grid=False)
    norm = fr.compute_frames(flow, "moons", "normalize", n_points=200, grid=False)
    with torch.no_grad():
        x, log_det_gen = flow.inverse(torch.from_numpy(fr.start_points("moons", "generate", 200)))
        z, log_det_norm = flow.forward(torch.from_numpy(fr.start_points("moons", "normalize", 200)))
    np.testing.assert_allclose(gen.points[-1], x.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.points[-1], z.numpy(), rtol=1e-5, atol=1e-5)
    # The layers' log-dets add up to the whole flow's (chain rule).
    np.testing.assert_allclose(gen.log_dets.sum(0), log_det_gen.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.log_dets.sum(0), log_det_norm.numpy(), rtol=1e-4, atol=1e-4)


def test_frame_at_interpolates_linearly_between_layers(flow):
    f = fr.compute_frames(flow, "moons", "generate", n_points=100)
    expected = 0.75 * f.points[1] + 0.25 * f.points[2]
    np.testing.assert_allclose(fr.frame_at(f, 1.25), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fr.frame_at(f, f.n_layers), f.points[-1])
    grid_mid = 0.5 * (f.grid[0] + f.grid[1])
    np.testing.assert_allclose(fr.frame_at(f, 0.5, "grid"), grid_mid, rtol=1e-6, atol=1e-6)


def test_frame_at_refuses_positions_outside_the_layers(flow):
    f = fr.compute_frames(flow, "moons", "generate", n_points=100)
    with pytest.raises(ValueError, match=r"position must be in \[0, 5\]"):
        fr.frame_at(f, 5.5)


def test_the_same_setting_gives_the_same_points(flow):
    a = fr.compute_frames(flow, "moons", "normalize", n_points=150)
    b = fr.compute_frames(flow, "moons", "normalize", n_points=150)
    np.testing.assert_array_equal(a.points, b.points)


def test_grid_lines_start_straight_and_cover_the_latent_square():
    lines = fr.grid_lines(3.0, lines=5, samples=7).reshape(10, 7, 2)
    assert np.allclose(lines[:5, :, 0], lines[:5, :1, 0])  # vertical lines: constant x
    assert np.allclose(lines[5:, :, 1], lines[5:, :1, 1])  # horizontal lines: constant y
    assert lines.min() == -3.0 and lines.max() == 3.0


# ----------------------------------------------------------------------------- colours


def test_logdet_colour_bins_put_area_kept_in_the_middle_and_clip_at_the_scale():
    bins = fr.logdet_colour_bins(np.array([0.0, 0.5, -0.5, 2.0, -2.0, 0.999]), scale=1.0)
    mid = fr.LOGDET_BINS // 2
    assert bins.tolist() == [mid, mid + 2, mid - 2, fr.LOGDET_BINS - 1, 0, fr.LOGDET_BINS - 1]
    ramp = fr.logdet_colour_bins(np.linspace(-3, 3, 101), scale=1.0)
    assert (np.diff(ramp.astype(int)) >= 0).all()  # more expansion, never a colder colour


def test_frames_colour_each_point_by_the_log_det_of_the_step(flow):
    f = fr.compute_frames(flow, "moons", "generate", n_points=500)
    np.testing.assert_array_equal(f.colour_bins, fr.logdet_colour_bins(f.log_dets, f.logdet_scale))
    assert len(np.unique(f.colour_bins)) > 2  # random couplings spread and squeeze


def test_logdet_scale_ignores_layers_that_change_all_areas_alike():
    couplings = np.random.default_rng(0).normal(0, 0.1, size=(3, 1000))
    standardise = np.full((1, 1000), -5.0)  # a constant log-det, as Standardize has
    scale = fr.logdet_scale(np.concatenate([standardise, couplings]))
    assert scale == pytest.approx(fr.logdet_scale(couplings)) and scale < 0.5


def test_palette_runs_from_contract_blue_to_expand_red():
    palette = fr.logdet_palette()
    assert len(palette) == fr.LOGDET_BINS
    first, last = (int(palette[i][1:], 16) for i in (0, -1))
    assert first & 0xFF > first >> 16  # blue end
    assert last >> 16 > last & 0xFF  # red end


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset="moon"), "unknown dataset 'moon'; choose one of checkerboard"),
        (dict(direction="sideways"), "direction must be 'generate' or 'normalize'"),
        (dict(n_points=0), "n_points must be between 100 and 20,000, got 0"),
        (dict(n_points=1_000_000), "n_points must be between 100 and 20,000, got 1,000,000"),
        (dict(n_points=2.5), "n_points must be an integer"),
        (dict(n_points=True), "n_points must be an integer"),
    ],
)
def test_bad_settings_give_clear_errors(flow, kwargs, message):
    setting = dict(dataset="moons", direction="generate", n_points=500) | kwargs
    with pytest.raises(ValueError, match=message):
        fr.compute_frames(flow, **setting)


def test_a_missing_checkpoint_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained_flows.ENV_VAR, str(tmp_path))
    with pytest.raises(pretrained_flows.MissingCheckpointError) as err:
        pretrained_flows.load_pretrained("rings")
    assert "python -m flowedu.pretrain" in str(err.value)
    assert "rings" in str(err.value) and str(tmp_path) in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def test_load_pretrained_reads_the_override_folder(store):
    flow, metadata = pretrained_flows.load_pretrained("moons")
    assert metadata["test_nll"] == 3.0 and not flow.training
    assert pretrained_flows.available() == ["moons"]
    with pytest.raises(ValueError, match="unknown dataset"):
        pretrained_flows.load_pretrained("mooons")


def test_the_shipped_folder_is_next_to_the_package(monkeypatch):
    monkeypatch.delenv(pretrained_flows.ENV_VAR, raising=False)
    assert pretrained_flows.pretrained_dir() == pretrained_flows.SHIPPED_DIR
    assert pretrained_flows.SHIPPED_DIR.parent.name == "flowedu"


def test_importing_the_app_does_not_import_torch():
    code = "import sys, flowedu.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- heatmaps


def test_density_heatmaps_start_at_the_standard_normal(flow):
    images = fr.density_heatmaps(flow, half=4.0, size=16)
    assert images.shape == (len(flow.layers) + 1, 16, 16) and images.dtype == np.uint8
    assert (images.max(axis=(1, 2)) == 255).all()  # each image scaled to its own peak
    latent = images[0].astype(int)
    assert latent[7:9, 7:9].min() == 255 and latent[0, 0] < 10  # peak at 0, low in a corner
    np.testing.assert_array_equal(latent, latent[::-1, ::-1])  # N(0, I) is symmetric


# ----------------------------------------------------------------------------- canvas


def test_canvas_gets_the_frames_as_bytes_described_by_meta(flow):
    canvas = FlowCanvas()
    f = fr.compute_frames(flow, "moons", "normalize", n_points=200)
    heat = fr.density_heatmaps(flow, f.half, size=8)
    canvas.show_frames(f, heat)
    meta, L = canvas.meta, f.n_layers
    assert canvas.version == 1 and meta["n_frames"] == L + 1 and meta["n_points"] == 200
    assert len(canvas.points) == 4 * (L + 1) * 200 * 2
    assert len(canvas.grid) == 4 * (L + 1) * meta["grid_lines"] * meta["grid_samples"] * 2
    assert len(canvas.colours) == L * 200
    back = np.frombuffer(canvas.points, dtype="<f4").reshape(L + 1, 200, 2)
    np.testing.assert_array_equal(back, f.points)
    # The normalize pass ends in N(0, I): its density images come in reverse order.
    images = np.frombuffer(canvas.heatmaps, dtype=np.uint8).reshape(L + 1, 8, 8)
    np.testing.assert_array_equal(images, heat[::-1])
    assert meta["start_color"] == "#ff7f0e" and meta["end_color"] == "#1f77b4"


# ----------------------------------------------------------------------------- dashboard


def test_dashboard_recomputes_the_frames_when_a_setting_changes(store):
    from flowedu.app import Dashboard

    d = Dashboard(n_points=500, autoplay=False)
    assert d.canvas.meta["dataset"] == "moons" and d.canvas.version == 1
    d.n_points.value = 1000
    assert d.canvas.meta["n_points"] == 1000 and d.canvas.version == 2
    d.direction.value = "normalize"
    assert d.canvas.meta["direction"] == "normalize" and d.canvas.version == 3
    d.heatmap.value = True
    assert d.canvas.show_heatmap and d.canvas.meta["heatmap_size"] == fr.HEATMAP_SIZE
    assert "test NLL" in d.stats.value and "3.000" in d.stats.value


def test_dashboard_shows_an_untrained_flow_and_the_fix_when_a_checkpoint_is_missing(store):
    from flowedu.app import Dashboard

    d = Dashboard(dataset="rings", n_points=500)
    assert "python -m flowedu.pretrain" in d.message.value
    assert d.flow_for("rings")[2] == "untrained" and d.canvas.meta["dataset"] == "rings"


def test_training_in_the_background_swaps_the_flow_in_on_success(store):
    from flowedu.app import Dashboard

    d = Dashboard(n_points=500, train_steps=20)
    old = d.flow_for("moons")[0]
    trainer = d.train(device="cpu", wait=True)
    result = trainer.join(timeout=120)
    assert result.status == "done", result.message
    new, metadata, source = d.flow_for("moons")
    assert new is result.flow and new is not old and source == "trained"
    assert metadata["steps"] == 20 and metadata["gap"] == pytest.approx(
        metadata["test_nll"] - datasets.entropy("moons")
    )
    assert d.loss_curve.steps == [20] and d.progress.value == 20
    assert "trained here" in d.stats.value and d.train_button.description == "Train"
    assert not d.restore_button.disabled
    d.restore_button.click()
    assert d.flow_for("moons")[2] == "shipped"


def test_stopping_training_keeps_the_old_flow(store):
    from flowedu.app import Dashboard

    d = Dashboard(n_points=500, train_steps=1000)
    old = d.flow_for("moons")[0]
    version = d.canvas.version
    trainer = d.train(device="cpu", wait=True)
    assert d.train_button.description == "Stop"
    d.train()  # a second click while training stops it
    result = trainer.join(timeout=120)
    assert result.status == "stopped" and result.flow is None
    assert d.flow_for("moons")[0] is old and d.canvas.version == version
    assert "kept the previous flow" in d.message.value
    assert d.train_button.description == "Train" and not d.train_button.disabled


def test_failed_training_keeps_the_old_flow(store, monkeypatch):
    from flowedu import train
    from flowedu.app import Dashboard

    def broken_fit(*args, **kwargs):
        raise train.TrainingError("the loss became nan at step 3")

    monkeypatch.setattr(train, "fit", broken_fit)
    d = Dashboard(n_points=500)
    old = d.flow_for("moons")[0]
    result = d.train(device="cpu", wait=True).join(timeout=60)
    assert result.status == "failed" and "nan at step 3" in result.message
    assert d.flow_for("moons")[0] is old
    assert "Kept the previous flow" in d.message.value


def _has_spline_family() -> bool:
    from flowedu import recipes

    return "spline_flow" in recipes.BUILDERS and "spline" in pretrained_flows.MODELS


@pytest.mark.skipif(not _has_spline_family(), reason="no spline family (flowedu.spline_flow)")
def test_the_spline_family_is_offered_shown_with_numpy_compared_and_trained(tmp_path, monkeypatch):
    from flowedu.app import Dashboard
    from flowedu.spline_flow import spline_flow

    x = datasets.sample("moons", 2000, seed=1)
    stats = (x.mean(0).tolist(), x.std(0).tolist())
    spline = spline_flow(n_layers=2, hidden=(16,), n_bins=4, standardize=stats)
    checkpoint.save(tmp_path / "realnvp" / "moons.safetensors", small_flow(), {"test_nll": 3.0})
    checkpoint.save(tmp_path / "spline" / "moons.safetensors", spline, {"test_nll": 2.5})
    monkeypatch.setenv(pretrained_flows.ENV_VAR, str(tmp_path))

    d = Dashboard(n_points=500, train_steps=20, autoplay=False)
    assert [value for _, value in d.family.options] == ["realnvp", "spline"]
    d.family.value = "spline"
    flow, _, source = d.flow_for("moons")
    assert fr.is_numpy_flow(flow) and source == "shipped"
    first = d.canvas.meta["layer_names"][0]
    assert first.startswith("coupling 1/2: ") and "with a spline" in first
    assert "Shipped families on moons" in d.stats.value
    assert "3.000" in d.stats.value and "2.500" in d.stats.value  # both families' NLLs
    result = d.train(device="cpu", wait=True).join(timeout=120)
    assert result.status == "done", result.message
    assert result.flow.config["builder"] == "spline_flow"
    assert d.flow_for("moons")[2] == "trained" and d.flow_for("moons", "realnvp")[2] == "shipped"
