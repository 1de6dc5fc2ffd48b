"""Training an image flow by maximum likelihood on dequantized digits.

The loss is the bound of score.py in bits per dimension, averaged over a batch:

    loss = -(log q(x + u) - log r(u | x)) / (64 log 2),   u ~ r(u | x)

with fresh noise u at every step (uniform, or from the flow's variational dequantizer,
trained jointly). Adam with a cosine learning-rate decay; after every epoch the validation
bits/dim is measured (fixed noise seed), and the weights of the best epoch are kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch

from ..checks import check_positive_int
from .data import N_PIXELS, digits
from .dequantization import uniform
from .score import LOG2, bits_per_dim


def dequantize(flow, x: torch.Tensor, generator: torch.Generator | None = None):
    """(u, log r(u|x)) from the flow's dequantizer, or uniform if it has none."""
    if getattr(flow, "dequantizer", None) is None:
        return uniform(x, generator)
    return flow.dequantizer.sample(x, generator)


def loss_bpd(flow, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The mean bound in bits/dim over float images x (n, 1, 8, 8), differentiable."""
    u, log_r = dequantize(flow, x, generator)
    return -(flow.log_prob(x + u) - log_r).mean() / (N_PIXELS * LOG2)


def fit_images(
    flow,
    epochs: int = 200,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
    train_images: torch.Tensor | None = None,
    val_images: torch.Tensor | None = None,
) -> dict:
    """Train `flow` on the training digits; keep the weights of the best validation epoch.

    Returns {"history": [(epoch, train bpd, val bpd, seconds)], "best_epoch", "best_val",
    "wall_s"}. Stops early (keeping the best weights) if the loss becomes NaN or infinite.
    """
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    train_x = (digits("train") if train_images is None else train_images).float()[:, None]
    val = digits("validation") if val_images is None else val_images
    dtype = flow.dtype
    train_x = train_x.to(dtype)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    with torch.no_grad():
        u, _ = dequantize(flow, train_x, gen)
    flow.initialize(train_x + u)
    steps_per_epoch = math.ceil(len(train_x) / batch_size)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    best_val, best_epoch, best_state = float("inf"), 0, copy.deepcopy(flow.state_dict())
    history, start = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        flow.train()
        order = torch.randperm(len(train_x), generator=gen)
        total, finite = 0.0, True
        for i in range(steps_per_epoch):
            batch = train_x[order[i * batch_size : (i + 1) * batch_size]]
            loss = loss_bpd(flow, batch, gen)
            if not torch.isfinite(loss):
                finite = False
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
        if not finite:
            if log:
                log(f"epoch {epoch}: the loss became NaN or infinite; keeping epoch {best_epoch}")
            break
        val_bpd = bits_per_dim(flow, val, seed=0)[0]
        seconds = time.perf_counter() - start
        history.append((epoch, total / len(train_x), val_bpd, seconds))
        if val_bpd < best_val:
            best_val, best_epoch = val_bpd, epoch
            best_state = copy.deepcopy(flow.state_dict())
        if log:
            log(
                f"epoch {epoch:4d}  train {total / len(train_x):.4f}  val {val_bpd:.4f}  "
                f"best {best_val:.4f} (epoch {best_epoch})  {seconds:.0f} s"
            )
    flow.load_state_dict(best_state)
    flow.eval()
    return {
        "history": history,
        "best_epoch": best_epoch,
        "best_val": best_val,
        "wall_s": time.perf_counter() - start,
    }
