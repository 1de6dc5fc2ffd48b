"""The pretrained flows shipped in flowedu/pretrained/, one per toy dataset.

A checkpoint is read only when a dataset is first shown, so opening the page never waits for
all eight. Set the environment variable FLOWEDU_PRETRAINED_DIR to read checkpoints from
another folder instead (tests and development do this).
"""

from __future__ import annotations

import os
from pathlib import Path

# Importing this module does not import torch, so the dashboard starts fast.
SHIPPED_DIR = Path(__file__).resolve().parent / "pretrained"
ENV_VAR = "FLOWEDU_PRETRAINED_DIR"
HOW_TO_CREATE = "python -m flowedu.pretrain"


class MissingCheckpointError(FileNotFoundError):
    """No checkpoint for a dataset; the message says how to create one."""


def pretrained_dir() -> Path:
    """The folder read: $FLOWEDU_PRETRAINED_DIR if set, else flowedu/pretrained/."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else SHIPPED_DIR


def checkpoint_path(name: str) -> Path:
    """The file that holds the pretrained flow for dataset `name`.

    <name>.safetensors; a folder of flowedu 0.1 checkpoints (<name>.pt) still works.
    """
    from flowedu.datasets import NAMES

    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    path = pretrained_dir() / f"{name}.safetensors"
    legacy = path.with_suffix(".pt")
    return legacy if legacy.is_file() and not path.is_file() else path


def available() -> list[str]:
    """The datasets that have a checkpoint in pretrained_dir(), in the course's order."""
    from flowedu.datasets import NAMES

    return [name for name in NAMES if checkpoint_path(name).is_file()]


def load_pretrained(name: str):
    """Load the pretrained flow of dataset `name` on the CPU; return (flow, metadata).

    Raises MissingCheckpointError, whose message says how to create the file, if it is not
    there, and flowedu.checkpoint.CheckpointError if it cannot be read safely.
    """
    path = checkpoint_path(name)
    if not path.is_file():
        where = f"${ENV_VAR} = {pretrained_dir()}" if os.environ.get(ENV_VAR) else str(path)
        raise MissingCheckpointError(
            f"no pretrained flow for {name!r} (looked in {where}). Create the shipped flows "
            f"with `{HOW_TO_CREATE}` (all eight) or `{HOW_TO_CREATE} --datasets {name}`, "
            "or press Train in the dashboard to train one now"
        )
    from . import checkpoint  # imports torch: only when a flow is actually needed

    return checkpoint.load(path, device="cpu")
