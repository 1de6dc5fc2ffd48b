"""Train a flow in a background thread, so the page keeps animating while it learns.

The thread trains a new flow built from the same recipe as the one shown (a fresh identity
start, so the class sees the loss fall), never the shown flow itself: if training is stopped
or fails, the flow on screen is untouched, and on success the caller swaps the new one in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .frames import release_freed_memory

N_TEST = 20_000  # fresh points on which a newly trained flow's test NLL is measured


@dataclass
class TrainResult:
    """How a background run ended. `flow` is set only when status == "done"."""

    status: str  # "done", "stopped" or "failed"
    message: str
    flow: object = None
    metadata: dict = field(default_factory=dict)


def import_torch(threads: int | None = 1) -> float:
    """Import torch (and flowedu's training code) if it is not loaded yet; return the seconds
    it took. The dashboard's kernel shows the shipped flows without torch and calls this,
    in a background thread, the first time Train is pressed. threads: torch's CPU threads
    (None: its default); one per kernel keeps a shared server's cores from oversubscribing.
    """
    import sys

    start = time.perf_counter()
    fresh = "torch" not in sys.modules
    import torch

    import flowedu.train  # noqa: F401  (fit, nll and the recipes come with it)

    if threads is not None and fresh:
        torch.set_num_threads(threads)
    return time.perf_counter() - start if fresh else 0.0


def default_steps(device) -> int:
    """A run that takes well under a minute: 1500 steps on a CPU, 4000 on a GPU."""
    return 1500 if device.type == "cpu" else 4000


class BackgroundTrainer:
    """Train a copy of `flow` on `dataset` with flowedu.train.fit in a daemon thread.

    on_progress(step, loss) is called every `report_every` steps and on_done(result) once at
    the end, both from the training thread. stop() ends the run after the current step.
    """

    def __init__(
        self,
        flow,
        dataset: str,
        steps: int | None = None,
        device=None,
        fresh: bool = True,
        seed: int = 0,
        report_every: int = 50,
        on_progress: Callable[[int, float], None] | None = None,
        on_done: Callable[[TrainResult], None] | None = None,
    ):
        from flowedu.datasets import NAMES
        from flowedu.train import pick_device

        if dataset not in NAMES:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(NAMES)}")
        self.flow, self.dataset, self.fresh, self.seed = flow, dataset, fresh, seed
        self.device = pick_device(device)
        self.steps = steps if steps is not None else default_steps(self.device)
        self.report_every = report_every
        self.on_progress, self.on_done = on_progress, on_done
        self.result: TrainResult | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowedu-train", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> BackgroundTrainer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to end after its current step; the shown flow is kept."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> TrainResult | None:
        self._thread.join(timeout)
        return self.result

    def _new_flow(self):
        import copy

        from flowedu.recipes import from_config

        if self.fresh and self.flow.config.get("builder"):
            return from_config(self.flow.config)  # same recipe, identity start
        return copy.deepcopy(self.flow)  # fine-tune a copy

    def _run(self) -> None:
        try:
            self.result = self._train()
        except Exception as err:  # any failure leaves the shown flow as it was
            self.result = TrainResult("failed", f"training failed: {err}. Kept the previous flow.")
        if self.on_done is not None:
            self.on_done(self.result)
        release_freed_memory(collect=True)

    def _train(self) -> TrainResult:
        import torch

        from flowedu import __version__, datasets
        from flowedu.train import fit, nll

        flow = self._new_flow()
        batch_size, lr = 512, 1e-3
        start = time.perf_counter()
        history = fit(
            flow,
            self.dataset,
            steps=self.steps,
            batch_size=batch_size,
            lr=lr,
            seed=self.seed,
            device=self.device,
            progress=False,
            report_every=self.report_every,
            callback=self.on_progress,
            stop=self._stop,
        )
        if history.stopped_early:
            return TrainResult(
                "stopped",
                f"Stopped at step {history.steps} of {self.steps}: kept the previous flow.",
            )
        flow = flow.to("cpu").eval()
        test = datasets.sample(self.dataset, N_TEST, seed=10_000 + self.seed)  # never trained on
        test_nll, stderr = nll(flow, test)
        entropy = datasets.entropy(self.dataset)
        metadata = dict(
            dataset=self.dataset,
            device_name=history.device_name,
            steps=history.steps,
            batch_size=batch_size,
            seconds=round(history.seconds, 1),
            test_nll=test_nll,
            test_nll_stderr=stderr,
            entropy=entropy,
            gap=test_nll - entropy,
            n_layers=flow.config.get("n_layers"),
            hidden=flow.config.get("hidden"),
            n_params=sum(p.numel() for p in flow.parameters()),
            lr=lr,
            seed=self.seed,
            torch_version=torch.__version__,
            flowedu_version=__version__,
            source="trained in this dashboard",
        )
        seconds = time.perf_counter() - start
        return TrainResult(
            "done",
            f"Trained {history.steps} steps on {history.device_name} in {seconds:.0f} s: "
            f"test NLL {test_nll:.3f}.",
            flow=flow,
            metadata=metadata,
        )
