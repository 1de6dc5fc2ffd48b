"""The pretrained flows shipped in flowedu/pretrained/: one per toy dataset and family.

    flow, metadata = load_pretrained("rings")                  # the RealNVP flow
    flow, metadata = load_pretrained("rings", model="realnvp")  # the same
    flow, metadata = load_pretrained("rings", model="spline")   # the neural spline flow

Each family has a folder, flowedu/pretrained/<model>/<dataset>.safetensors. A checkpoint is
read only when a dataset is first shown, so opening the page never waits for all of them.
Set the environment variable FLOWEDU_PRETRAINED_DIR to read checkpoints from another folder
(with the same <model>/ subfolders) instead; tests and development do this.
"""

from __future__ import annotations

import os
from pathlib import Path

# Importing this module does not import torch, so the dashboard starts fast.
SHIPPED_DIR = Path(__file__).resolve().parent / "pretrained"
ENV_VAR = "FLOWEDU_PRETRAINED_DIR"
HOW_TO_CREATE = "python -m flowedu.pretrain"
# The families that ship, the first being the default; flowedu.recipes.SHIPPED has the
# recipe of each.
MODELS: tuple[str, ...] = ("realnvp", "spline")


class MissingCheckpointError(FileNotFoundError):
    """No checkpoint for a dataset; the message says how to create one."""


def pretrained_dir() -> Path:
    """The folder read: $FLOWEDU_PRETRAINED_DIR if set, else flowedu/pretrained/."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else SHIPPED_DIR


def check_model(model: str) -> str:
    """Return `model` if it names a shipped family, else raise saying which exist."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return model


def checkpoint_path(name: str, model: str = "realnvp") -> Path:
    """The file that holds the pretrained flow of family `model` for dataset `name`.

    <model>/<name>.safetensors; for RealNVP, a folder of flowedu 0.1 checkpoints
    (<name>.pt, no subfolder) still works.
    """
    from flowedu.datasets import NAMES

    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    path = pretrained_dir() / check_model(model) / f"{name}.safetensors"
    legacy = pretrained_dir() / f"{name}.pt"
    if model == "realnvp" and legacy.is_file() and not path.is_file():
        return legacy
    return path


def available(model: str = "realnvp") -> list[str]:
    """The datasets that have a checkpoint of family `model`, in the course's order."""
    from flowedu.datasets import NAMES

    return [name for name in NAMES if checkpoint_path(name, model).is_file()]


def load_pretrained(name: str, model: str = "realnvp"):
    """Load the pretrained flow of family `model` for dataset `name` on the CPU; return
    (flow, metadata).

    Raises MissingCheckpointError, whose message says how to create the file, if it is not
    there, and flowedu.checkpoint.CheckpointError if it cannot be read safely.
    """
    path = checkpoint_path(name, model)
    if not path.is_file():
        where = f"${ENV_VAR} = {pretrained_dir()}" if os.environ.get(ENV_VAR) else str(path)
        how = f"{HOW_TO_CREATE} --model {model}"
        raise MissingCheckpointError(
            f"no pretrained {model} flow for {name!r} (looked in {where}). Create the shipped "
            f"flows with `{how}` (all eight) or `{how} --datasets {name}`, or press Train in "
            "the dashboard to train one now"
        )
    from . import checkpoint  # imports torch: only when a flow is actually needed

    return checkpoint.load(path, device="cpu")
