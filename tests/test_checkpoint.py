"""Specification of flowedu.checkpoint: exact round trips, atomic writes, safe refusals,
reading without torch, and the files of flowedu 0.1 still loading."""

from __future__ import annotations

import datetime
import json
import os
import pickle
import random
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save as safetensors_bytes

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


def save_version_1(path, flow: Flow, metadata: dict | None = None):
    """How flowedu 0.1 wrote a checkpoint: torch.save of a plain dict."""
    payload = {
        "format": checkpoint.FORMAT,
        "version": 1,
        "config": json.dumps(flow.config, sort_keys=True),
        "metadata": json.dumps(metadata or {}, sort_keys=True),
        "state_dict": {k: v.detach().clone() for k, v in flow.state_dict().items()},
    }
    torch.save(payload, path)
    return path


def points(dtype=torch.float32) -> torch.Tensor:
    return torch.randn(100, 2, generator=torch.Generator().manual_seed(1), dtype=dtype) * 3


# --- round trip ----------------------------------------------------------------------------


def test_save_then_load_gives_the_same_log_prob_and_metadata(tmp_path):
    flow = trained_looking_flow()
    path = save(tmp_path / "sub" / "moons.safetensors", flow, METADATA)  # makes the folder
    assert path == tmp_path / "sub" / "moons.safetensors" and path.is_file()
    loaded, metadata = load(path)
    assert metadata == METADATA
    assert loaded.config == flow.config
    assert not loaded.training and loaded.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(points()), flow.log_prob(points()))
    assert torch.equal(loaded.sample(20, seed=0), flow.sample(20, seed=0))


def test_a_float64_flow_comes_back_in_float64(tmp_path):
    flow = trained_looking_flow().to(torch.float64)
    loaded, metadata = load(save(tmp_path / "f64.safetensors", flow))
    assert metadata == {}
    assert loaded.dtype == torch.float64
    with torch.no_grad():
        x = points(torch.float64)
        assert torch.equal(loaded.log_prob(x), flow.log_prob(x))


def test_save_accepts_a_string_path_and_overwrites(tmp_path):
    path = str(tmp_path / "flow.safetensors")
    save(path, trained_looking_flow(0), {"run": 1})
    save(path, trained_looking_flow(1), {"run": 2})
    _, metadata = load(path)
    assert metadata == {"run": 2}


def test_read_gives_the_recipe_metadata_and_weights_as_read_only_numpy_arrays(tmp_path):
    flow = trained_looking_flow()
    ckpt = checkpoint.read(save(tmp_path / "flow.safetensors", flow, METADATA))
    assert ckpt.config == flow.config and ckpt.metadata == METADATA
    state = flow.state_dict()
    assert set(ckpt.arrays) == set(state)
    for name, array in ckpt.arrays.items():
        assert isinstance(array, np.ndarray) and not array.flags.writeable
        assert np.array_equal(array, state[name].numpy())


def test_read_does_not_import_torch(tmp_path):
    path = save(tmp_path / "flow.safetensors", trained_looking_flow(), METADATA)
    code = (
        "import sys; from flowedu import checkpoint; c = checkpoint.read(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(len(c.arrays))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(trained_looking_flow().state_dict())


# --- flowedu 0.1's files -------------------------------------------------------------------


def test_a_checkpoint_of_flowedu_0_1_still_loads_exactly(tmp_path):
    flow = trained_looking_flow()
    loaded, metadata = load(save_version_1(tmp_path / "old.pt", flow, METADATA))
    assert metadata == METADATA and loaded.config == flow.config
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(points()), flow.log_prob(points()))


def test_read_sends_a_checkpoint_of_flowedu_0_1_to_load(tmp_path):
    path = save_version_1(tmp_path / "old.pt", trained_looking_flow())
    with pytest.raises(CheckpointError, match="only flowedu.checkpoint.load can read"):
        checkpoint.read(path)


# --- atomic write --------------------------------------------------------------------------


def test_a_crash_mid_save_leaves_the_previous_file_intact_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "flow.safetensors"
    old = trained_looking_flow(0)
    save(path, old, {"version": "old"})
    old_bytes = path.read_bytes()

    def crash(fd):  # the bytes are written, but the disk fails before they are safe
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save(path, trained_looking_flow(1), {"version": "new"})
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.safetensors"]  # no temp file
    loaded, metadata = load(path)
    assert metadata == {"version": "old"}
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(points()), old.log_prob(points()))


def test_a_crash_mid_save_of_a_new_path_leaves_nothing(tmp_path, monkeypatch):
    def crash(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "new.safetensors", trained_looking_flow())
    assert list(tmp_path.iterdir()) == []


# --- refusals at save ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [{"when": datetime.date(2024, 1, 1)}, {"weights": torch.zeros(2)}, {"tags": {"a", "b"}}],
    ids=["date", "tensor", "set"],
)
def test_save_refuses_metadata_that_is_not_plain_json_and_writes_nothing(tmp_path, metadata):
    with pytest.raises(ValueError, match=r"metadata must be plain JSON \(str, numbers"):
        save(tmp_path / "flow.safetensors", trained_looking_flow(), metadata)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_flow_it_could_not_rebuild(tmp_path):
    with pytest.raises(TypeError, match=r"Flow made by a flowedu recipe"):
        save(tmp_path / "flow.safetensors", Flow([], dim=2))
    with pytest.raises(TypeError, match=r"Flow made by a flowedu recipe"):
        save(tmp_path / "flow.safetensors", torch.nn.Linear(2, 2))


# --- refusals at load ----------------------------------------------------------------------


def valid_payload(tmp_path) -> dict:
    path = save_version_1(tmp_path / "valid.pt", trained_looking_flow(), METADATA)
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
        "checkpoint version 2 in the torch format, which is version 1 only. Re-save it",
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
def test_load_refuses_a_flowedu_0_1_file_that_is_not_a_valid_checkpoint_saying_why(tmp_path, name):
    make, words = FOREIGN_PAYLOADS[name]
    path = tmp_path / f"{name}.pt"
    torch.save(make(valid_payload(tmp_path)), path)
    with pytest.raises(CheckpointError) as err:
        load(path)
    for word in (words,) if isinstance(words, str) else words:
        assert word in str(err.value)
    assert str(path) in str(err.value)


def safetensors_file(tmp_path, name: str, state: dict | None = None, **header) -> object:
    """A safetensors file holding a valid checkpoint's tensors and header, changed as asked."""
    flow = trained_looking_flow()
    base = {
        "format": checkpoint.FORMAT,
        "version": str(checkpoint.VERSION),
        "config": json.dumps(flow.config),
        "metadata": json.dumps(METADATA),
    }
    base = {k: v for k, v in {**base, **header}.items() if v is not None}
    tensors = {k: v.clone() for k, v in flow.state_dict().items()}
    for key, value in (state or {}).items():
        if value is None:
            del tensors[key]
        else:
            tensors[key] = value
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(safetensors_bytes(tensors, metadata=base))
    return path


NAN = torch.full((16, 1), float("nan"))
FOREIGN_SAFETENSORS = {
    "no_marker": (dict(format=None), "no 'flowedu-checkpoint' marker"),
    "other_marker": (dict(format="pt"), "no 'flowedu-checkpoint' marker"),
    "wrong_version": (dict(version="9"), "checkpoint version '9'; this flowedu reads version 2"),
    "no_config": (dict(config=None), "damaged or inconsistent: 'config'"),
    "config_not_json": (dict(config="{oops"), "damaged or inconsistent: Expecting property"),
    "config_not_a_dict": (dict(config="[1, 2]"), "recipe or metadata not a dict"),
    "foreign_recipe": (
        dict(config=json.dumps({"builder": "glow"})),
        "damaged or inconsistent: unknown flow recipe",
    ),
    "bad_recipe": (
        dict(config=json.dumps({"builder": "realnvp", "dim": 1})),
        "damaged or inconsistent: a coupling flow needs dim >= 2",
    ),
    "missing_tensor": (
        dict(state={"layers.2.net.2.bias": None}),
        ("damaged or inconsistent", "Missing key", "layers.2.net.2.bias"),
    ),
    "wrong_shape": (
        dict(state={"layers.1.net.0.weight": torch.zeros(3, 3)}),
        ("damaged or inconsistent", "size mismatch", "layers.1.net.0.weight"),
    ),
    "nan_weights": (
        dict(state={"layers.1.net.0.weight": NAN}),
        "NaN or infinite weights in layers.1.net.0.weight",
    ),
}


@pytest.mark.parametrize("name", FOREIGN_SAFETENSORS)
def test_load_and_read_refuse_a_safetensors_file_that_is_not_a_valid_checkpoint(tmp_path, name):
    changes, words = FOREIGN_SAFETENSORS[name]
    path = safetensors_file(tmp_path, name, **changes)
    # read() checks the file itself; only load(), which rebuilds the flow, sees the recipe
    # and the weights' names and shapes.
    needs_the_flow = ("foreign_recipe", "bad_recipe", "missing_tensor", "wrong_shape")
    for reader in [load] if name in needs_the_flow else [load, checkpoint.read]:
        with pytest.raises(CheckpointError) as err:
            reader(path)
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
def test_load_refuses_a_file_that_cannot_be_read_safely(tmp_path, content):
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load(path)
    message = str(err.value)
    assert "is not a flowedu checkpoint that can be read safely" in message
    assert "Re-create it with flowedu.checkpoint.save" in message


@pytest.mark.parametrize("size", [8, 100, 10**6])
def test_a_header_that_claims_more_bytes_than_the_file_holds_is_refused(tmp_path, size):
    path = tmp_path / "lying.safetensors"
    path.write_bytes(size.to_bytes(8, "little") + b'{"__metadata__": {}}')
    with pytest.raises(CheckpointError, match="not a flowedu checkpoint that can be read safely"):
        checkpoint.read(path)


def test_load_of_a_missing_file_says_so():
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*; check the path"):
        load("/nonexistent/flow.safetensors")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.read("/nonexistent/flow.safetensors")


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
