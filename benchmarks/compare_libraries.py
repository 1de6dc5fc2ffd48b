"""flowedu against the flow libraries people use: same model, same data, one process.

    python benchmarks/compare_libraries.py [--family realnvp|spline] [--steps N] [--seeds 3]
                                           [--threads 1]

--family realnvp (the default): every implementation is a RealNVP of 8 affine couplings
whose s and t come from an MLP 1-128-128-2 (ReLU), trained with Adam (lr 1e-3, batch 512,
2000 steps by default) on FFJORD's moons, on the raw data.

--family spline (or --spline): neural spline flows, 6 rational-quadratic spline layers of
16 bins, conditioners MLP 128-128 (ReLU), trained with Adam (lr 2e-3, constant, batch 512,
4000 steps by default) on rings and on checkerboard. Every library gets the same
standardised data: the mean and sd are fitted on the training samples and applied to every
input, and the log-det of that map (-sum log sd) is added back, so the NLLs are in the data's
own coordinates and comparable with the true entropy. The implementations, and where they
are not like-for-like (each library's own layer, as its users would write it):
- flowedu: the `spline` recipe of flowedu.recipes.SHIPPED (spline_flow, 6 couplings, tail
  bound 4, identity tails, halves alternating); each coupling splines the second half given
  the first, whose coordinate the conditioner sees clipped to [-4, 4]; conditioners
  zero-initialised (each layer starts as the identity). Its standardisation layer is left
  out, since the data come standardised here.
- zuko: NSF(features=2, transforms=6, bins=16, hidden_features=(128, 128)). With 2 features
  its autoregressive layer is a coupling, but not the same one: a masked MLP (MADE) outputs
  the splines of both coordinates, the first one's an unconditional (learned, input-free)
  spline, the second's conditioned on the first; the order reverses every layer. Its spline
  domain is fixed at [-5, 5] (NSF takes no bound), its minimum slope 1e-3, its MLP default-
  initialised. More parameters than flowedu's for the same widths (the MADE's outputs
  cover both coordinates, and its masked weights count).
- nflows: PiecewiseRationalQuadraticCouplingTransform, tails="linear", tail_bound=4, 16 bins,
  masks alternating, conditioner the same MLP 1-128-128-47 (default-initialised; like
  nflows' own nets it declares hidden_features, so nflows scales the width and height
  logits by 1/sqrt(128)). Its "linear" tails are the identity, as flowedu's.
- normflows: CoupledRationalQuadraticSpline(2, num_blocks=1, num_hidden_channels=128,
  num_bins=16, tail_bound=4), masks alternating. Its conditioner is normflows' ResidualNet,
  not an MLP: 1->128, one residual block of two 128->128 layers, 128->47, so it is one layer
  deeper and has more weights (num_blocks cannot be fewer without dropping to one hidden
  layer); and it also applies an unconditional spline to the copied half (normflows sets
  apply_unconditional_transform=True). Base N(0, I), not trainable.
Parameters are counted and printed. One step is forward, backward and Adam update on one
batch (torch.optim.Adam, not fused, for every library; flowedu is also timed with the fused
kernel that flowedu.train.fit uses).

The training steps are interleaved (one step of each library in turn), so all of them see
the same machine load; the test NLL is measured on 20,000 fresh samples and held against the
true entropy of the data (flowedu.datasets.entropy); where the data's density is known in
closed form the gap is estimated paired, mean(log p - log q), with its standard error.
Needs the `bench` extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from flowedu import datasets
from flowedu.realnvp import realnvp
from flowedu.recipes import SHIPPED

HIDDEN = 128
N_LAYERS = 8
# The spline comparison: flowedu's shipped spline recipe, and the peers built to match it.
SPLINE_RECIPE, SPLINE_KWARGS = SHIPPED["spline"]
SPLINE_LAYERS = SPLINE_KWARGS["n_layers"]
SPLINE_BINS = SPLINE_KWARGS["n_bins"]
SPLINE_BOUND = SPLINE_KWARGS["bound"]


def mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, n_out),
    )  # fmt: skip


class ContextFreeMLP(nn.Module):
    """nflows calls its conditioner as net(x, context); this MLP ignores the context."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.net = mlp(n_in, n_out)
        # nflows' own nets declare their width; its spline couplings read it to scale the
        # bin logits by 1/sqrt(width) (and warn when it is missing).
        self.hidden_features = HIDDEN

    def forward(self, x, context=None):
        return self.net(x)


def build_flowedu():
    flow = realnvp(dim=2, n_layers=N_LAYERS, hidden=(HIDDEN, HIDDEN))
    return flow, flow.log_prob


def build_zuko():
    import zuko

    flow = zuko.flows.RealNVP(features=2, transforms=N_LAYERS, hidden_features=(HIDDEN, HIDDEN))
    return flow, lambda x: flow().log_prob(x)


def build_normflows():
    import normflows as nf

    layers = []
    for _ in range(N_LAYERS):
        net = nf.nets.MLP([1, HIDDEN, HIDDEN, 2], init_zeros=True)
        layers += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(2, mode="swap")]
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(2), layers)
    return model, model.log_prob


def build_nflows():
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import AffineCouplingTransform

    transforms = [
        AffineCouplingTransform(
            mask=torch.tensor([1, 0]) if i % 2 == 0 else torch.tensor([0, 1]),
            transform_net_create_fn=ContextFreeMLP,
        )
        for i in range(N_LAYERS)
    ]
    flow = Flow(CompositeTransform(transforms), StandardNormal([2]))
    return flow, flow.log_prob


BUILDERS = {
    "flowedu": build_flowedu,
    "flowedu + fused Adam (as fit trains)": build_flowedu,
    "zuko": build_zuko,
    "normflows": build_normflows,
    "nflows": build_nflows,
}


def build_flowedu_spline():
    # The data come standardised (see the docstring), so no Standardize layer.
    flow = SPLINE_RECIPE(dim=2, **SPLINE_KWARGS)
    return flow, flow.log_prob


def build_zuko_spline():
    import zuko

    flow = zuko.flows.NSF(
        features=2, transforms=SPLINE_LAYERS, bins=SPLINE_BINS, hidden_features=(HIDDEN, HIDDEN)
    )
    return flow, lambda x: flow().log_prob(x)


def build_normflows_spline():
    import normflows as nf

    layers = [
        nf.flows.CoupledRationalQuadraticSpline(
            2, 1, HIDDEN, num_bins=SPLINE_BINS, tail_bound=SPLINE_BOUND, reverse_mask=i % 2 == 1
        )
        for i in range(SPLINE_LAYERS)
    ]
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), layers)
    return model, model.log_prob


def build_nflows_spline():
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform

    transforms = [
        PiecewiseRationalQuadraticCouplingTransform(
            mask=torch.tensor([1, 0]) if i % 2 == 0 else torch.tensor([0, 1]),
            transform_net_create_fn=ContextFreeMLP,
            num_bins=SPLINE_BINS,
            tails="linear",
            tail_bound=SPLINE_BOUND,
        )
        for i in range(SPLINE_LAYERS)
    ]
    flow = Flow(CompositeTransform(transforms), StandardNormal([2]))
    return flow, flow.log_prob


SPLINE_BUILDERS = {
    "flowedu": build_flowedu_spline,
    "flowedu + fused Adam (as fit trains)": build_flowedu_spline,
    "zuko NSF": build_zuko_spline,
    "normflows": build_normflows_spline,
    "nflows": build_nflows_spline,
}

# family -> (builders, datasets, Adam learning rate, default steps, standardise the data)
FAMILIES = {
    "realnvp": (BUILDERS, ("moons",), 1e-3, 2000, False),
    "spline": (SPLINE_BUILDERS, ("rings", "checkerboard"), 2e-3, 4000, True),
}


def run(
    seed: int,
    steps: int,
    builders: dict = BUILDERS,
    dataset: str = "moons",
    lr: float = 1e-3,
    standardise: bool = False,
) -> dict[str, dict[str, float]]:
    """Train every implementation for `steps` interleaved steps; return times and NLLs.

    standardise=True fits the training samples' mean and sd, feeds every library the
    standardised points, and adds the map's log-det back, so log q is that of the data."""
    models = {}
    for name, build in builders.items():
        torch.manual_seed(seed)
        module, log_prob = build()
        fused = "fused" in name  # flowedu.train.fit uses the fused Adam kernel on CPU and CUDA
        opt = torch.optim.Adam(module.parameters(), lr=lr, fused=fused)
        models[name] = (module, log_prob, opt)
    train = datasets.sample(dataset, steps * 512, seed=seed)
    mean, sd = train.mean(0), train.std(0)
    if not standardise:
        mean, sd = torch.zeros_like(mean), torch.ones_like(sd)
    train = (train - mean) / sd
    log_det = -sd.log().sum()  # log|det d((x - mean) / sd)/dx|
    times = {name: [] for name in models}
    for step in range(steps):
        x = train[step * 512 : (step + 1) * 512]
        for name, (_, log_prob, opt) in models.items():
            t0 = time.perf_counter()
            loss = -log_prob(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times[name].append(time.perf_counter() - t0)
    test = datasets.sample(dataset, 20_000, seed=10_000 + seed)
    test_std = (test - mean) / sd
    known = datasets.has_log_density(dataset)
    log_p = datasets.log_density(dataset, test.double()) if known else None
    out = {}
    for name, (module, log_prob, _) in models.items():
        with torch.no_grad():
            log_q = (log_prob(test_std) + log_det).double()
        row = {"params": sum(p.numel() for p in module.parameters()), "nll": -log_q.mean().item()}
        # The median is robust to the odd slow step when another process wakes up.
        row["ms"] = 1000 * statistics.median(times[name])
        if log_p is not None:  # paired estimate of KL(p || q), and its standard error
            diff = log_p - log_q
            row["gap"], row["gap_se"] = diff.mean().item(), diff.std().item() / len(diff) ** 0.5
        out[name] = row
    return out


def print_realnvp(results: list[dict], steps: int, seeds: int, threads: int) -> None:
    entropy = datasets.entropy("moons")
    base_ms = statistics.mean(r["flowedu"]["ms"] for r in results)
    print(
        f"RealNVP, {N_LAYERS} affine couplings, MLP 1-{HIDDEN}-{HIDDEN}-2, Adam 1e-3, "
        f"batch 512, {steps} steps, moons; {seeds} seeds, {threads} thread(s); "
        f"true entropy {entropy:.4f} nats"
    )
    print("| implementation | ms/step (median) | ratio to flowedu | test NLL | gap to H |")
    print("| --- | --- | --- | --- | --- |")
    for name in BUILDERS:
        ms = statistics.mean(r[name]["ms"] for r in results)
        nll = statistics.mean(r[name]["nll"] for r in results)
        print(f"| {name} | {ms:.2f} | {ms / base_ms:.2f} | {nll:.4f} | {nll - entropy:.4f} |")


def mean_sd(values: list[float], digits: int) -> str:
    """mean +- sd over seeds, or the one value (the header says how many seeds)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} \u00b1 {statistics.stdev(values):.{digits}f}"


def print_spline(dataset: str, results: list[dict], steps: int, seeds: int, threads: int) -> None:
    entropy = datasets.entropy(dataset)
    base_ms = statistics.mean(r["flowedu"]["ms"] for r in results)
    seeds_text = "one seed" if seeds == 1 else f"{seeds} seeds, mean \u00b1 sd over seeds"
    print(
        f"\nSpline flows, {SPLINE_LAYERS} layers of {SPLINE_BINS}-bin RQ splines, MLP "
        f"{HIDDEN}-{HIDDEN}, Adam 2e-3, batch 512, {steps} steps, {dataset} (standardised "
        f"for all); {seeds_text}; {threads} thread(s); test on 20,000 fresh samples; true "
        f"entropy {entropy:.4f} nats"
    )
    paired = "gap" in results[0]["flowedu"]
    if not paired:
        gap_head = "gap to H (NLL - H)"
    elif seeds == 1:
        gap_head = "gap to H (paired, \u00b1 se)"
    else:  # each seed's gap is paired; the spread shown is between seeds
        gap_head = "gap to H (paired, mean \u00b1 sd over seeds)"
    print(
        f"| implementation | parameters | ms/step (median) | ratio to flowedu | test NLL | "
        f"{gap_head} |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name in SPLINE_BUILDERS:
        rows = [r[name] for r in results]
        ms = statistics.mean(row["ms"] for row in rows)
        nll = mean_sd([row["nll"] for row in rows], 4)
        if not paired:
            gap = mean_sd([row["nll"] - entropy for row in rows], 4)
        elif len(rows) == 1:
            gap = f"{rows[0]['gap']:.4f} \u00b1 {rows[0]['gap_se']:.4f}"
        else:
            gap = mean_sd([row["gap"] for row in rows], 4)
        print(f"| {name} | {rows[0]['params']:,} | {ms:.2f} | {ms / base_ms:.2f} | {nll} | {gap} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="realnvp")
    parser.add_argument(
        "--spline", action="store_const", const="spline", dest="family",
        help="the same as --family spline",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=None, help="2000 (realnvp), 4000 (spline)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    builders, names, lr, default_steps, standardise = FAMILIES[args.family]
    steps = default_steps if args.steps is None else args.steps
    for value, flag in ((steps, "--steps"), (args.seeds, "--seeds"), (args.threads, "--threads")):
        if value < 1:
            parser.error(f"{flag} must be a positive integer, got {value}")
    torch.set_num_threads(args.threads)
    for dataset in names:
        results = [
            run(seed, steps, builders, dataset, lr, standardise) for seed in range(args.seeds)
        ]
        if args.family == "realnvp":
            print_realnvp(results, steps, args.seeds, args.threads)
        else:
            print_spline(dataset, results, steps, args.seeds, args.threads)


if __name__ == "__main__":
    main()
