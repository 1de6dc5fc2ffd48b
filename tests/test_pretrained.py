"""The shipped flows: each loads safely and reaches the NLL its metadata states."""

from __future__ import annotations

import math

import pytest
import torch

from flowedu import datasets, pretrained_flows

REQUIRED = {"dataset", "device_name", "steps", "batch_size", "seconds", "test_nll"}
REQUIRED |= {"test_nll_stderr", "entropy", "gap", "n_params", "torch_version"}


def test_every_dataset_has_a_shipped_flow():
    assert pretrained_flows.available() == list(datasets.NAMES)


@pytest.mark.parametrize("name", datasets.NAMES)
def test_shipped_flow_metadata_is_complete_and_consistent(name):
    flow, meta = pretrained_flows.load_pretrained(name)
    assert REQUIRED <= set(meta), f"missing: {REQUIRED - set(meta)}"
    assert meta["dataset"] == name
    assert meta["entropy"] == pytest.approx(datasets.entropy(name))
    assert meta["gap"] == pytest.approx(meta["test_nll"] - meta["entropy"], abs=2e-4)
    assert meta["n_params"] == sum(p.numel() for p in flow.parameters())
    assert meta["test_nll"] >= meta["entropy"] - 3 * meta["test_nll_stderr"]  # NLL >= H


@pytest.mark.parametrize("name", datasets.NAMES)
def test_shipped_flow_reaches_its_stated_nll_on_fresh_samples(name):
    """Fresh samples (a seed not used in training or in the stated test) give the same NLL
    within 4 combined standard errors: the number in the metadata is not a fluke."""
    flow, meta = pretrained_flows.load_pretrained(name)
    x = datasets.sample(name, 50_000, seed=2026)
    with torch.no_grad():
        values = -flow.log_prob(x).double()
    assert torch.isfinite(values).all()
    mean, se = values.mean().item(), values.std().item() / math.sqrt(len(values))
    combined = math.hypot(se, meta["test_nll_stderr"])
    assert abs(mean - meta["test_nll"]) < 4 * combined, (mean, meta["test_nll"], combined)


def test_the_pretrain_command_saves_a_flow_whose_metadata_matches_it(tmp_path, capsys):
    from flowedu import checkpoint, pretrain

    argv = ["--datasets", "moons", "--steps", "40", "--batch-size", "128", "--device", "cpu"]
    pretrain.main([*argv, "--out", str(tmp_path), "--no-compile"])
    assert "| moons |" in capsys.readouterr().out  # the table row of the README
    flow, meta = checkpoint.load(tmp_path / "moons.safetensors")
    assert REQUIRED <= set(meta)
    assert (meta["steps"], meta["batch_size"], meta["device_name"]) == (40, 128, "CPU")
    assert meta["compiled"] is False
    assert meta["seeds_tried"] == [0] and len(meta["validation_nlls"]) == 1
    x = datasets.sample("moons", 100_000, seed=12345)  # the command's test samples
    with torch.no_grad():
        assert -flow.log_prob(x).mean().item() == pytest.approx(meta["test_nll"], abs=1e-3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--datasets", "spiral"], "unknown dataset 'spiral'"),
        (["--seeds", "0"], "at least 1"),
        (["--first-seed", "-1"], "0 or more"),
    ],
)
def test_the_pretrain_command_refuses_bad_arguments(tmp_path, capsys, argv, message):
    from flowedu import pretrain

    with pytest.raises(SystemExit):
        pretrain.main([*argv, "--out", str(tmp_path)])
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_pretrain_command_keeps_the_seed_with_the_lowest_validation_nll(tmp_path):
    from flowedu import checkpoint, pretrain

    argv = ["--datasets", "moons", "--steps", "20", "--batch-size", "64", "--seeds", "3"]
    pretrain.main([*argv, "--device", "cpu", "--out", str(tmp_path), "--no-compile"])
    _, meta = checkpoint.load(tmp_path / "moons.safetensors")
    assert meta["seeds_tried"] == [0, 1, 2]
    assert len(set(meta["validation_nlls"])) == 3  # the seeds trained different flows
    best = min(range(3), key=lambda i: meta["validation_nlls"][i])
    assert meta["seed"] == best
    assert meta["seconds_all_seeds"] >= meta["seconds"]


def test_the_pretrain_command_can_start_from_another_seed(tmp_path):
    from flowedu import checkpoint, pretrain

    argv = ["--datasets", "moons", "--steps", "5", "--batch-size", "32", "--first-seed", "1"]
    pretrain.main([*argv, "--device", "cpu", "--out", str(tmp_path), "--no-compile"])
    _, meta = checkpoint.load(tmp_path / "moons.safetensors")
    assert meta["seeds_tried"] == [1] and meta["seed"] == 1


def test_the_train_everything_script_writes_every_flow_and_the_table(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from flowedu import checkpoint

    script = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_all.sh"
    args = ["--steps", "5", "--batch-size", "32", "--device", "cpu", "--no-compile"]
    run = subprocess.run(
        ["bash", str(script), str(tmp_path), "300", "--", *args],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for name in datasets.NAMES:
        assert f"| {name} | " in run.stdout
        _, meta = checkpoint.load(tmp_path / f"{name}.safetensors")
        assert (meta["dataset"], meta["steps"]) == (name, 5)


def test_a_folder_of_flowedu_0_1_checkpoints_still_loads(tmp_path, monkeypatch):
    import json

    from flowedu import checkpoint

    flow, meta = pretrained_flows.load_pretrained("moons")
    payload = {  # the torch.save layout of flowedu 0.1
        "format": checkpoint.FORMAT,
        "version": 1,
        "config": json.dumps(flow.config),
        "metadata": json.dumps(meta),
        "state_dict": flow.state_dict(),
    }
    torch.save(payload, tmp_path / "moons.pt")
    monkeypatch.setenv(pretrained_flows.ENV_VAR, str(tmp_path))
    assert pretrained_flows.available() == ["moons"]
    old, old_meta = pretrained_flows.load_pretrained("moons")
    x = datasets.sample("moons", 500, seed=3)
    with torch.no_grad():
        assert torch.equal(old.log_prob(x), flow.log_prob(x)) and old_meta == meta


def test_an_unknown_family_is_refused_naming_the_ones_that_exist():
    with pytest.raises(ValueError, match="unknown model 'glow'; choose one of realnvp"):
        pretrained_flows.load_pretrained("moons", model="glow")


def test_every_shipped_family_has_a_recipe_and_the_first_is_the_default():
    import inspect

    from flowedu import recipes

    assert tuple(recipes.SHIPPED) == pretrained_flows.MODELS
    default = inspect.signature(pretrained_flows.load_pretrained).parameters["model"].default
    assert default == pretrained_flows.MODELS[0] == "realnvp"


# --- the spline family ------------------------------------------------------------------------


def test_every_dataset_has_a_shipped_spline_flow_smaller_than_the_realnvp_one():
    assert pretrained_flows.available("spline") == list(datasets.NAMES)
    spline, meta = pretrained_flows.load_pretrained("rings", model="spline")
    realnvp, _ = pretrained_flows.load_pretrained("rings")
    n_spline = sum(p.numel() for p in spline.parameters())
    assert n_spline == meta["n_params"] < sum(p.numel() for p in realnvp.parameters())
    assert spline.config["builder"] == "spline_flow" and meta["model"] == "spline"


@pytest.mark.parametrize("name", datasets.NAMES)
def test_shipped_spline_flow_is_within_0_02_nats_of_the_data_on_fresh_samples(name):
    """The target of the spline family: KL(p || q) <= 0.02 on 100k fresh samples, in the
    data's own coordinates, and the gap the metadata states is reproduced."""
    from flowedu.train import kl_gap

    flow, meta = pretrained_flows.load_pretrained(name, model="spline")
    assert REQUIRED | {"kl_gap", "kl_gap_stderr", "round_trip_z4_float32"} <= set(meta)
    gap = kl_gap(flow, name, datasets.sample(name, 100_000, seed=2027))
    assert gap.value + 2 * gap.stderr <= 0.02, str(gap)
    combined = math.hypot(gap.stderr, meta["kl_gap_stderr"])
    assert abs(gap.value - meta["kl_gap"]) < 4 * combined + 1e-4, (gap, meta["kl_gap"])


@pytest.mark.parametrize("name", datasets.NAMES)
def test_shipped_spline_flow_round_trips_in_float32_far_in_the_tails(name):
    """Target: |f^-1(f(z)) - z| <= 1e-3 in float32 for z ~ 4 N(0, I)."""
    flow, meta = pretrained_flows.load_pretrained(name, model="spline")
    z = 4 * torch.randn(100_000, 2, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        err = (flow(flow.inverse(z)[0])[0] - z).abs().max().item()
    assert err <= 1e-3 and meta["round_trip_z4_float32"] <= 1e-3, err


def test_the_pretrain_command_trains_a_spline_flow(tmp_path):
    from flowedu import checkpoint, pretrain

    argv = ["--model", "spline", "--datasets", "rings", "--steps", "30", "--batch-size", "64"]
    pretrain.main([*argv, "--device", "cpu", "--out", str(tmp_path), "--no-compile"])
    flow, meta = checkpoint.load(tmp_path / "rings.safetensors")
    assert flow.config["builder"] == "spline_flow" and meta["model"] == "spline"
    assert meta["steps"] == 30 and meta["kl_gap_paired"] is True
