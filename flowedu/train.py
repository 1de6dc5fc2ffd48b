"""Maximum-likelihood training: minimise the negative log-likelihood

    NLL = -1/N sum_i [ log p_Z(f^-1(x_i)) + log|det df^-1/dx (x_i)| ]

by stochastic gradient descent (Adam) on batches of data.
"""

from __future__ import annotations

import copy
import math
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .checks import check_points, check_positive_float, check_positive_int, skip_finite_checks
from .flow import Flow


class TrainingError(FloatingPointError):
    """Training hit a non-finite loss; the message names the step and, where known, the layer."""


@dataclass
class History:
    """What a call to fit did: the loss of each step, where it ran and how long it took."""

    losses: list[float] = field(default_factory=list)
    device: str = "cpu"
    device_name: str = "CPU"
    seconds: float = 0.0
    steps: int = 0
    stopped_early: bool = False


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: `device` if given, else CUDA, then Apple MPS, then the CPU."""
    if device is not None:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"unknown device {device!r} ({err}); use 'cpu' or 'cuda'") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but no CUDA GPU is visible; use 'cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU's model, or 'CPU'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "Apple MPS" if device.type == "mps" else "CPU"


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Progress:
    """A progress bar in a notebook; a plain line every so often in a terminal."""

    def __init__(self, steps: int, mode: str | bool | None):
        if mode is None:
            mode = "widget" if _in_notebook() else "text"
        self.mode, self.steps, self.start = mode, steps, time.perf_counter()
        if mode == "widget":
            import ipywidgets as widgets
            from IPython.display import display

            self.bar = widgets.IntProgress(max=steps, description="training")
            self.label = widgets.Label()
            display(widgets.HBox([self.bar, self.label]))

    def update(self, step: int, loss: float) -> None:
        elapsed = time.perf_counter() - self.start
        text = f"step {step}/{self.steps}  loss {loss:.4f}  {elapsed:.1f} s"
        if self.mode == "widget":
            self.bar.value, self.label.value = step, text
        elif self.mode == "text":
            print(text, flush=True)


def fit(
    flow: Flow,
    data: torch.Tensor | str,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: str | bool | None = None,
    report_every: int | None = None,
    callback: Callable[[int, float], None] | None = None,
    stop: threading.Event | None = None,
    schedule: str = "constant",
    compile: bool = False,
) -> History:
    """Train `flow` in place by maximum likelihood and return its loss history.

    data: a tensor of shape (n, dim) to draw batches from, or the name of a toy dataset
        (flowedu.datasets.NAMES), of which steps * batch_size fresh points are drawn.
    device: None picks CUDA, then MPS, then the CPU. The flow is moved there.
    progress: None chooses (a bar in a notebook, a text line in a terminal), False is quiet.
    schedule: "constant" keeps lr; "cosine" decays it to 0 over the steps, which lets the
        last steps settle into a minimum (worth a few hundredths of a nat on toy data).
    callback(step, loss) is called every `report_every` steps; setting `stop` ends training
    after the current step (History.stopped_early says so).
    compile: run the loss and its gradient through torch.compile (on a GPU with CUDA graphs).
        It pays for long runs only: compiling takes half a minute or more before the first
        step, then a step takes about 0.65x the time on a CPU.

    The loss is read back from the device only every `report_every` steps, so a GPU is never
    kept waiting. A non-finite loss raises TrainingError naming the step and the first layer
    that produced NaN or infinity; the flow's weights are then restored to the last finite
    report, so nothing is left broken.
    """
    check_positive_int(steps, "steps")
    check_positive_int(batch_size, "batch_size")
    check_positive_float(lr, "lr")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f'schedule must be "constant" or "cosine", got {schedule!r}')
    dev = pick_device(device)
    report_every = report_every or (200 if dev.type == "cuda" else 50)
    check_positive_int(report_every, "report_every")
    draw = _batch_source(data, steps * batch_size, flow.dim, batch_size, seed, dev, flow.dtype)

    torch.manual_seed(seed)
    flow.to(dev).train()
    # The fused Adam kernel updates all weights in one pass (CPU and CUDA alike).
    opt = torch.optim.Adam(flow.parameters(), lr=lr, fused=dev.type in ("cpu", "cuda"))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if schedule == "cosine" else None
    history = History(device=str(dev), device_name=device_name(dev))
    bar = _Progress(steps, progress)
    losses = torch.zeros(steps, device=dev)
    batch_nll = _CompiledNLL(flow, dev) if compile else _nll_of(flow)
    good_state = copy.deepcopy(flow.state_dict())
    start, done, reported = time.perf_counter(), 0, 0
    with skip_finite_checks():
        for step in range(steps):
            x = draw()
            loss = batch_nll(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses[step] = loss.detach()
            done = step + 1
            stopping = stop is not None and stop.is_set()
            if done % report_every == 0 or done == steps or stopping:
                recent = losses[reported:done].tolist()  # the steps since the last report
                reported = done
                history.losses += recent
                bad = next((i for i, v in enumerate(recent) if not math.isfinite(v)), None)
                if bad is not None:
                    bad_step = done - len(recent) + bad + 1  # counted from 1, as `done`
                    # Look for the culprit with the last good weights (a layer that breaks on
                    # this data), else with the broken ones (where the weights went bad).
                    broken = flow.first_non_finite_layer(x)
                    flow.load_state_dict(good_state)
                    where = flow.first_non_finite_layer(x) or broken or "the layer is not known"
                    raise TrainingError(
                        f"the loss became {recent[bad]} at step {bad_step}: {where}. The flow's "
                        f"weights were restored to step {done - len(recent)}. Try a smaller lr, "
                        "a bounded scale (scale_bound) or standardised data"
                    )
                good_state = copy.deepcopy(flow.state_dict())
                bar.update(done, recent[-1])
                if callback is not None:
                    callback(done, recent[-1])
                    # a stop set by the callback ends training now, not a step later
                    stopping = stopping or (done < steps and stop is not None and stop.is_set())
            if stopping:
                history.stopped_early = True
                break
    flow.eval()
    history.seconds, history.steps = time.perf_counter() - start, done
    return history


def _nll_of(flow: Flow) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training loss: the mean negative log-likelihood of a batch."""
    return lambda x: -flow.log_prob(x).mean()


class _CompiledNLL:
    """_nll_of(flow), compiled by torch.compile at its first call.

    On a GPU the small layers of a 2D flow leave it waiting for the CPU to launch each
    kernel; mode="reduce-overhead" records the whole step as CUDA graphs, replayed with one
    launch. If compiling fails (no C++ compiler, an unsupported platform), training goes on
    without it and says so in a warning.
    """

    def __init__(self, flow: Flow, device: torch.device):
        self.eager = _nll_of(flow)
        self.cuda_graphs = device.type == "cuda"
        self.compiled = torch.compile(
            self.eager, mode="reduce-overhead" if self.cuda_graphs else "default"
        )
        self.first_call = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            return self.eager(x)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs are read
        if not self.first_call:
            return self.compiled(x)
        self.first_call = False
        try:
            return self.compiled(x)
        except Exception as err:  # noqa: BLE001 -- any compiler failure: train without it
            warnings.warn(
                f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); "
                "training without it (slower, and the same as compile=False)",
                RuntimeWarning,
                stacklevel=3,
            )
            self.compiled, self.cuda_graphs = None, False
            return self.eager(x)


def _batch_source(data, n_needed, dim, batch_size, seed, device, dtype):
    """A function returning the next training batch on `device`.

    A dataset name is turned into a pool of fresh samples made once, on the device, so that
    a GPU never waits for the CPU to make data; with up to 4M points, batches barely repeat.
    """
    if isinstance(data, str):
        from . import datasets

        data = datasets.sample(data, min(n_needed, 4_000_000), seed=seed)
    x_all = check_points(data, dim, "data").to(device, dtype)
    gen = torch.Generator(device=device).manual_seed(seed)

    def next_batch() -> torch.Tensor:
        idx = torch.randint(len(x_all), (batch_size,), generator=gen, device=device)
        return x_all[idx]

    return next_batch


@torch.no_grad()
def nll(flow: Flow, x: torch.Tensor, batch_size: int = 65536) -> tuple[float, float]:
    """Mean negative log-likelihood of x under the flow in nats, and its standard error.

    Computed in the data's own coordinates, so it can be held against the data's true
    entropy: the NLL on fresh samples is >= the entropy, and the gap is the KL divergence.
    """
    check_points(x, flow.dim)
    x = x.to(flow.device, flow.dtype)
    logp = torch.cat([flow.log_prob(chunk) for chunk in x.split(batch_size)])
    values = -logp.double()
    if not torch.isfinite(values).all():
        raise ValueError(
            f"{int((~torch.isfinite(values)).sum())} points have non-finite log-likelihood: "
            f"{flow.first_non_finite_layer(x) or 'they lie where the flow has zero density'}"
        )
    stderr = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return values.mean().item(), stderr


@dataclass(frozen=True)
class Gap:
    """How far a flow q is from the data's distribution p: KL(p || q) in nats, +- its error.

    paired=True: estimated as mean(log p(x_i) - log q(x_i)) over test points, where log p is
    known exactly; the two terms move together, so the error is far smaller than that of
    NLL - H. paired=False: NLL - H, the errors of both added in quadrature.
    """

    value: float
    stderr: float
    paired: bool

    @property
    def indistinguishable_from_zero(self) -> bool:
        """KL >= 0 always: a gap within two standard errors of 0 is not a measured gap."""
        return self.value <= 2 * self.stderr

    def __str__(self) -> str:
        if self.indistinguishable_from_zero:
            return f"indistinguishable from 0 ({self.value:+.3f} \u00b1 {self.stderr:.3f} nats)"
        return f"{self.value:.3f} \u00b1 {self.stderr:.3f} nats"


@torch.no_grad()
def kl_gap(flow: Flow, name: str, x: torch.Tensor, batch_size: int = 65536) -> Gap:
    """KL(p || q) of toy dataset `name` (p) to the flow (q), estimated on test points x.

    x must be fresh samples of `name`, never seen in training. Where the dataset's density is
    known (datasets.has_log_density) the estimate is paired, mean(log p - log q); elsewhere it
    is NLL - H with the entropy's own error added.
    """
    from . import datasets

    check_points(x, flow.dim)
    if not datasets.has_log_density(name):
        value, stderr = nll(flow, x, batch_size)
        h, h_err = datasets.entropy(name), datasets.entropy_stderr(name)
        return Gap(value - h, math.sqrt(stderr**2 + h_err**2), paired=False)
    x = x.to(flow.device, flow.dtype)
    log_q = torch.cat([flow.log_prob(chunk) for chunk in x.split(batch_size)]).double()
    log_p = datasets.log_density(name, x.double()).to(log_q.device)
    diff = log_p - log_q
    if not torch.isfinite(diff).all():
        raise ValueError(
            f"{int((~torch.isfinite(diff)).sum())} points have a non-finite log p - log q: are "
            f"they samples of {name!r}? (log p is -inf off the data's support)"
        )
    n = len(diff)
    return Gap(diff.mean().item(), diff.std().item() / math.sqrt(n) if n > 1 else math.nan, True)
