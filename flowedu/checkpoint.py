"""Save and load flows: weights, the recipe that rebuilds them, and plain metadata.

A checkpoint is a safetensors file (https://github.com/huggingface/safetensors): a JSON
header, then the raw bytes of each tensor. Reading one parses that header and copies bytes;
nothing in the file is ever executed, and the weights can be read without torch
(`read`, for the dashboard's light kernels) as well as into a flow (`load`).
The header's string metadata holds the format marker, the recipe (flow.config) and the
user's metadata, both as JSON.

Files saved by flowedu 0.1 (torch.save's format, version 1) still load: they are read with
torch.load(weights_only=True), which unpickles tensors and plain containers only, so a
file crafted to run code when loaded is refused and nothing runs.

Writes are atomic: the file is written beside the target and renamed over it, so a crash
mid-save leaves the old checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# No torch at import: the dashboard reads checkpoints with numpy alone.

FORMAT = "flowedu-checkpoint"
VERSION = 2  # 2: safetensors; 1: torch.save of a dict (flowedu 0.1), still read by load
SUFFIX = ".safetensors"
_ZIP_MAGIC = b"PK"  # torch.save writes a zip archive; a safetensors file starts otherwise


class CheckpointError(ValueError):
    """The file is not a valid flowedu checkpoint; the message says why."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds, as read by `read` (numpy only, no torch)."""

    config: dict  # the recipe: {"builder": NAME, ...its arguments}
    metadata: dict  # whatever save() was given: dataset, test NLL, training time, ...
    arrays: dict[str, np.ndarray]  # the flow's state_dict, as read-only numpy arrays


def save(path: str | os.PathLike, flow, metadata: dict | None = None) -> Path:
    """Write `flow` and JSON-serialisable `metadata` to `path` atomically; return the path.

    The file is a safetensors file whatever its name; `.safetensors` is the usual suffix.
    """
    from safetensors.torch import save as to_bytes

    from .flow import Flow

    if not isinstance(flow, Flow) or flow.config.get("builder") is None:
        raise TypeError(
            "save() takes a Flow made by a flowedu recipe (e.g. flowedu.realnvp(...)), so that "
            "it can be rebuilt"
        )
    try:
        meta_json = json.dumps(metadata or {}, sort_keys=True)
    except TypeError as err:
        raise ValueError(
            f"metadata must be plain JSON (str, numbers, lists, dicts): {err}"
        ) from None
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "config": json.dumps(flow.config, sort_keys=True),
        "metadata": meta_json,
    }
    # safetensors stores each tensor once, contiguous, and refuses tensors sharing memory.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in flow.state_dict().items()}
    payload = to_bytes(tensors, metadata=header)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a checkpoint is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: str | os.PathLike, mmap: bool = False) -> Checkpoint:
    """Read a checkpoint written by save() with numpy alone: recipe, metadata and weights.

    mmap=True maps the weights from the file instead of copying them: processes that read
    the same file (a server's kernels, one per visitor) then share one copy in memory.
    """
    path = _existing(path)
    if _is_torch_file(path):
        raise CheckpointError(
            f"{path} is a checkpoint of flowedu 0.1 (torch format), which only "
            "flowedu.checkpoint.load can read; re-save it with flowedu.checkpoint.save"
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            if mmap:
                arrays = _mapped_arrays(path, list(f.keys()))
            else:
                arrays = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # the parser raises its own error type on malformed bytes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a flowedu checkpoint that can be read safely ({first}). It may be "
            "corrupt, another kind of file, or a pickle holding code, which flowedu never runs. "
            "Re-create it with flowedu.checkpoint.save"
        ) from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a flowedu checkpoint (no '{FORMAT}' marker)")
    if header.get("version") != str(VERSION):
        raise CheckpointError(
            f"{path} has checkpoint version {header.get('version')!r}; this flowedu reads "
            f"version {VERSION}. Re-save it with this version of flowedu"
        )
    try:
        config, metadata = json.loads(header["config"]), json.loads(header["metadata"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged or inconsistent: {err}") from None
    if not isinstance(config, dict) or not isinstance(metadata, dict):
        raise CheckpointError(f"{path} is damaged or inconsistent: recipe or metadata not a dict")
    for name, array in arrays.items():
        array.flags.writeable = False
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise CheckpointError(f"{path} holds NaN or infinite weights in {name}")
    return Checkpoint(config, metadata, arrays)


# safetensors' dtype names -> numpy's (little-endian, as the format stores them).
_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}
_NUMPY_DTYPES |= {"I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def _mapped_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Read-only arrays mapped from a safetensors file that safe_open has already checked.

    The format: 8 bytes (little-endian) giving the JSON header's length, the header (each
    tensor's dtype, shape and byte range after the header), then the bytes.
    """
    with open(path, "rb") as f:
        (n,) = np.frombuffer(f.read(8), dtype="<u8")
        header = json.loads(f.read(int(n)))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + int(n))
    arrays = {}
    for name in names:
        entry = header[name]
        if entry["dtype"] not in _NUMPY_DTYPES:
            raise CheckpointError(f"{path}: {name} has dtype {entry['dtype']}, not readable here")
        begin, end = entry["data_offsets"]
        dtype = np.dtype(_NUMPY_DTYPES[entry["dtype"]])
        arrays[name] = data[begin:end].view(dtype).reshape(entry["shape"])
    return arrays


def load(path: str | os.PathLike, device: str = "cpu"):
    """Read a checkpoint written by save(); return (flow in eval mode, metadata)."""
    import torch

    path = _existing(path)
    if _is_torch_file(path):
        config, metadata, state = _read_version_1(path)
    else:
        ckpt = read(path)
        config, metadata = ckpt.config, ckpt.metadata
        state = {name: torch.from_numpy(a.copy()) for name, a in ckpt.arrays.items()}
    try:
        from .recipes import from_config

        flow = from_config(config)
        # A flow saved in float64 comes back in float64 (load_state_dict would cast it).
        dtypes = {v.dtype for v in state.values() if v.dtype.is_floating_point}
        if len(dtypes) == 1:
            flow.to(dtypes.pop())
        flow.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"{path} is damaged or inconsistent: {err}") from None
    for name, tensor in flow.state_dict().items():
        if tensor.dtype.is_floating_point and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path} holds NaN or infinite weights in {name}")
    return flow.to(device).eval(), metadata


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path")
    return path


def _is_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _ZIP_MAGIC


def _read_version_1(path: Path) -> tuple[dict, dict, dict]:
    """(config, metadata, state_dict) of a flowedu 0.1 file, read without running code."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the safe unpickler raises many types on malformed bytes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a flowedu checkpoint that can be read safely ({first}). It may be "
            "corrupt, or a pickle holding code, which flowedu never runs. Re-create it with "
            "flowedu.checkpoint.save"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a flowedu checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != 1:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')!r} in the torch format, "
            "which is version 1 only. Re-save it with this version of flowedu"
        )
    try:
        state = payload["state_dict"]
        if not isinstance(state, dict):
            raise TypeError("state_dict is not a dict")
        return json.loads(payload["config"]), json.loads(payload["metadata"]), state
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged or inconsistent: {err}") from None
