"""Specification of flowedu.checkpoint: exact round trips, atomic writes, safe refusals."""

from __future__ import annotations

import datetime
import json
import os
import pickle
import random
import shlex

import pytest
import torch

from flowedu import checkpoint
from flowedu.checkpoint import CheckpointError, load, save
from flowedu.flow import Flow
from flowedu.realnvp import realnvp

METADATA = {"dataset": "moons", "steps": 2000, "nll": 2.4326, "seeds": [0, 1], "note": None}


def trained_looking_flow(seed: int = 0) -> Flow:
    """A flow with random, non-zero weights everywhere (as if trained) and a Standardize."""
    torch.manual_seed(seed)
    flow = realnvp(n_layers=3, hidden=(16,), standardize=([0.5, -0.25], [1.5, 0.75]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return flow


def points(dtype=torch.float32) -> torch.Tensor:
    return torch.randn(100, 2, generator=torch.Generator().manual_seed(1), dtype=dtype) * 3


# --- round trip ----------------------------------------------------------------------------


def test_save_then_load_gives_the_same_log_prob_and_metadata(tmp_path):
    flow = trained_looking_flow()
    path = save(tmp_path / "sub" / "moons.pt", flow, METADATA)  # makes the folder
    assert path == tmp_path / "sub" / "moons.pt" and path.is_file()
    loaded, metadata = load(path)
    assert metadata == METADATA
    assert loaded.config == flow.config
    assert not loaded.training and loaded.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(points()), flow.log_prob(points()))
    assert torch.equal(loaded.sample(20, seed=0), flow.sample(20, seed=0))


def test_a_float64_flow_comes_back_in_float64(tmp_path):
    flow = trained_looking_flow().to(torch.float64)
    loaded, metadata = load(save(tmp_path / "f64.pt", flow))
    assert metadata == {}
    assert loaded.dtype == torch.float64
    with torch.no_grad():
        x = points(torch.float64)
        assert torch.equal(loaded.log_prob(x), flow.log_prob(x))


def test_save_accepts_a_string_path_and_overwrites(tmp_path):
    path = str(tmp_path / "flow.pt")
    save(path, trained_looking_flow(0), {"run": 1})
    save(path, trained_looking_flow(1), {"run": 2})
    _, metadata = load(path)
    assert metadata == {"run": 2}


# --- atomic write --------------------------------------------------------------------------


def test_a_crash_mid_save_leaves_the_previous_file_intact_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "flow.pt"
    old = trained_looking_flow(0)
    save(path, old, {"version": "old"})
    old_bytes = path.read_bytes()

    def save_half_then_crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save(path, trained_looking_flow(1), {"version": "new"})
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.pt"]  # no .flow.pt.*.tmp
    loaded, metadata = load(path)
    assert metadata == {"version": "old"}
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(points()), old.log_prob(points()))


def test_a_crash_mid_save_of_a_new_path_leaves_nothing(tmp_path, monkeypatch):
    def crash(obj, f, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "new.pt", trained_looking_flow())
    assert list(tmp_path.iterdir()) == []


# --- refusals at save ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [{"when": datetime.date(2024, 1, 1)}, {"weights": torch.zeros(2)}, {"tags": {"a", "b"}}],
    ids=["date", "tensor", "set"],
)
def test_save_refuses_metadata_that_is_not_plain_json_and_writes_nothing(tmp_path, metadata):
    with pytest.raises(ValueError, match=r"metadata must be plain JSON \(str, numbers"):
        save(tmp_path / "flow.pt", trained_looking_flow(), metadata)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_flow_it_could_not_rebuild(tmp_path):
    with pytest.raises(TypeError, match=r"Flow made by flowedu.realnvp"):
        save(tmp_path / "flow.pt", Flow([], dim=2))
    with pytest.raises(TypeError, match=r"Flow made by flowedu.realnvp"):
        save(tmp_path / "flow.pt", torch.nn.Linear(2, 2))


# --- refusals at load ----------------------------------------------------------------------


def valid_payload(tmp_path) -> dict:
    path = save(tmp_path / "valid.pt", trained_looking_flow(), METADATA)
    return torch.load(path, weights_only=True)


def with_state(payload: dict, **changes) -> dict:
    state = dict(payload["state_dict"])
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del state[key]
        else:
            state[key] = value
    return {**payload, "state_dict": state}


def nan_weights(payload):
    weight = payload["state_dict"]["layers.1.net.0.weight"].clone()
    weight[0, 0] = float("nan")
    return with_state(payload, layers__1__net__0__weight=weight)


def wrong_shape(payload):
    return with_state(payload, layers__1__net__0__weight=torch.zeros(3, 3))


FOREIGN_PAYLOADS = {
    "plain_dict": (lambda p: {"weights": torch.zeros(2)}, "no 'flowedu-checkpoint' marker"),
    "list": (lambda p: [1, 2, 3], "no 'flowedu-checkpoint' marker"),
    "wrong_version": (
        lambda p: {**p, "version": 2},
        "checkpoint version 2; this flowedu reads version 1. Re-save it",
    ),
    "missing_key": (
        lambda p: with_state(p, layers__2__net__2__bias=None),
        ("damaged or inconsistent", "Missing key", "layers.2.net.2.bias"),
    ),
    "wrong_shape": (
        wrong_shape,
        ("damaged or inconsistent", "size mismatch", "layers.1.net.0.weight"),
    ),
    "nan_weights": (nan_weights, "NaN or infinite weights in layers.1.net.0.weight"),
    "no_config": (
        lambda p: {k: v for k, v in p.items() if k != "config"},
        "damaged or inconsistent: 'config'",
    ),
    "foreign_recipe": (
        lambda p: {**p, "config": json.dumps({"builder": "glow"})},
        "damaged or inconsistent: unknown flow recipe",
    ),
    "bad_recipe": (
        lambda p: {**p, "config": json.dumps({"builder": "realnvp", "dim": 1})},
        "damaged or inconsistent: a coupling flow needs dim >= 2",
    ),
    "metadata_not_json": (
        lambda p: {**p, "metadata": "{not json"},
        "damaged or inconsistent: Expecting property name",
    ),
    "state_dict_not_a_dict": (
        lambda p: {**p, "state_dict": [1, 2]},
        "damaged or inconsistent",
    ),
}


@pytest.mark.parametrize("name", FOREIGN_PAYLOADS)
def test_load_refuses_a_torch_file_that_is_not_a_valid_checkpoint_saying_why(tmp_path, name):
    make, words = FOREIGN_PAYLOADS[name]
    path = tmp_path / f"{name}.pt"
    torch.save(make(valid_payload(tmp_path)), path)
    with pytest.raises(CheckpointError) as err:
        load(path)
    for word in (words,) if isinstance(words, str) else words:
        assert word in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "content",
    [
        random.Random(0).randbytes(2000),
        random.Random(1).randbytes(50),
        json.dumps(METADATA).encode(),
        b"",
        b"PK\x03\x04 truncated zip",
    ],
    ids=["random_bytes", "random_bytes_short", "json", "empty", "truncated_zip"],
)
def test_load_refuses_a_file_that_torch_cannot_read_safely(tmp_path, content):
    path = tmp_path / "foreign.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load(path)
    message = str(err.value)
    assert "is not a flowedu checkpoint that can be read safely" in message
    assert "Re-create it with flowedu.checkpoint.save" in message


def test_load_of_a_missing_file_says_so():
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*; check the path"):
        load("/nonexistent/flow.pt")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


class RunsCode:
    """Unpickling this runs a shell command: the classic malicious pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_the_malicious_pickle_would_run_code_if_loaded_unsafely(tmp_path):
    """The control for the test below: the crafted file really does run code."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.exists()


@pytest.mark.parametrize("wrapper", ["pickle", "torch_save"])
def test_load_refuses_a_pickle_that_would_run_code_and_runs_none(tmp_path, wrapper):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    if wrapper == "pickle":
        path.write_bytes(pickle.dumps(RunsCode(marker), protocol=2))
    else:  # a real checkpoint's layout, with the payload hidden in the metadata
        torch.save({"format": checkpoint.FORMAT, "version": 1, "metadata": RunsCode(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "a pickle holding code, which flowedu never runs" in str(err.value)
    assert not marker.exists()
