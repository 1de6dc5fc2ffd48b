"""Train the shipped digits flow: python -m flowedu.images [--epochs N] [--out FILE] ...

Trains on the 1,000 training digits, keeps the best validation epoch, scores validation and
test with flowedu.images.bits_per_dim and writes a checkpoint (flowedu.checkpoint) whose
metadata records the epochs, the wall time, the machine and the scores.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from .. import checkpoint
from .data import digits
from .model import image_flow
from .score import bits_per_dim
from .train import fit_images

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained" / "images"
DEFAULT_OUT = PRETRAINED / "digits.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowedu.images", description=__doc__)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--dequantization", choices=("uniform", "variational"), default="variational"
    )
    parser.add_argument(
        "--no-multiscale", action="store_true", help="no split: all 64 numbers to the end"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.epochs < 1:
        parser.error("--threads and --epochs must be >= 1")
    torch.set_num_threads(args.threads)
    flow = image_flow(
        multiscale=not args.no_multiscale, dequantization=args.dequantization, seed=args.seed
    )
    n_params = sum(p.numel() for p in flow.parameters())
    print(f"{n_params:,} parameters; training {args.epochs} epochs", flush=True)
    load_before = os.getloadavg()[0]
    result = fit_images(
        flow,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        log=lambda line: print(line, flush=True),
    )
    load_after = os.getloadavg()[0]
    val = bits_per_dim(flow, digits("validation"))
    test = bits_per_dim(flow, digits("test"))
    print(f"validation {val[0]:.4f} +- {val[1]:.4f}   test {test[0]:.4f} +- {test[1]:.4f} bits/dim")
    metadata = {
        "dataset": "digits (scikit-learn load_digits, 8x8, 17 levels)",
        "split": "train 0-999, validation 1000-1349, test 1350-1796",
        "epochs": args.epochs,
        "best_epoch": result["best_epoch"],
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "parameters": n_params,
        "wall_s": round(result["wall_s"], 1),
        "device": f"CPU, {args.threads} thread(s), {platform.machine()}",
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "torch": torch.__version__,
        "val_bpd": val[0],
        "val_se": val[1],
        "test_bpd": test[0],
        "test_se": test[1],
        "val_curve": [round(h[2], 4) for h in result["history"]],
        "train_curve": [round(h[1], 4) for h in result["history"]],
    }
    checkpoint.save(args.out, flow, metadata)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
