"""Save and load flows: weights, the recipe that rebuilds them, and plain metadata.

A checkpoint is read with torch.load(weights_only=True), which unpickles tensors and plain
containers only: a file crafted to run code when loaded is refused, and nothing runs.
Writes are atomic: the file is written beside the target and renamed over it, so a crash
mid-save leaves the old checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from .flow import Flow
from .realnvp import from_config

FORMAT = "flowedu-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """The file is not a valid flowedu checkpoint; the message says why."""


def save(path: str | os.PathLike, flow: Flow, metadata: dict | None = None) -> Path:
    """Write `flow` and JSON-serialisable `metadata` to `path` atomically; return the path."""
    if not isinstance(flow, Flow) or flow.config.get("builder") is None:
        raise TypeError("save() takes a Flow made by flowedu.realnvp(...), so it can be rebuilt")
    try:
        meta_json = json.dumps(metadata or {}, sort_keys=True)
    except TypeError as err:
        raise ValueError(
            f"metadata must be plain JSON (str, numbers, lists, dicts): {err}"
        ) from None
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(flow.config, sort_keys=True),
        "metadata": meta_json,
        "state_dict": {k: v.detach().cpu().clone() for k, v in flow.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a checkpoint is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Flow, dict]:
    """Read a checkpoint written by save(); return (flow in eval mode, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path")
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
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')!r}; this flowedu reads "
            f"version {VERSION}. Re-save it with this version of flowedu"
        )
    try:
        config, metadata = json.loads(payload["config"]), json.loads(payload["metadata"])
        flow = from_config(config)
        state = payload["state_dict"]
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
