"""flowedu against the flow libraries people use: same model, same data, one process.

    python benchmarks/compare_libraries.py [--steps 2000] [--seeds 3] [--threads 1]

Every implementation is a RealNVP of 8 affine couplings whose s and t come from an MLP
1-128-128-2 (ReLU), trained with Adam (lr 1e-3, batch 512) on FFJORD's moons. The training
steps are interleaved (one step of each library in turn), so all of them see the same
machine load; the test NLL is measured on 20,000 fresh samples and held against the true
entropy of moons. Needs the `bench` extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from flowedu import datasets
from flowedu.realnvp import realnvp

HIDDEN = 128
N_LAYERS = 8


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


def run(seed: int, steps: int) -> dict[str, dict[str, float]]:
    """Train every implementation for `steps` interleaved steps; return times and NLLs."""
    models = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(seed)
        module, log_prob = build()
        fused = "fused" in name  # flowedu.train.fit uses the fused Adam kernel on CPU and CUDA
        opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=fused)
        models[name] = (module, log_prob, opt)
    train = datasets.sample("moons", steps * 512, seed=seed)
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
    test = datasets.sample("moons", 20_000, seed=10_000 + seed)
    out = {}
    for name, (_, log_prob, _) in models.items():
        with torch.no_grad():
            nll = -log_prob(test).mean().item()
        # The median is robust to the odd slow step when another process wakes up.
        out[name] = {"ms": 1000 * statistics.median(times[name]), "nll": nll}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [run(seed, args.steps) for seed in range(args.seeds)]
    entropy = datasets.entropy("moons")
    base_ms = statistics.mean(r["flowedu"]["ms"] for r in results)
    print(
        f"RealNVP, {N_LAYERS} affine couplings, MLP 1-{HIDDEN}-{HIDDEN}-2, Adam 1e-3, "
        f"batch 512, {args.steps} steps, moons; {args.seeds} seeds, {args.threads} thread(s); "
        f"true entropy {entropy:.4f} nats"
    )
    print("| implementation | ms/step (median) | ratio to flowedu | test NLL | gap to H |")
    print("| --- | --- | --- | --- | --- |")
    for name in BUILDERS:
        ms = statistics.mean(r[name]["ms"] for r in results)
        nll = statistics.mean(r[name]["nll"] for r in results)
        print(f"| {name} | {ms:.2f} | {ms / base_ms:.2f} | {nll:.4f} | {nll - entropy:.4f} |")


if __name__ == "__main__":
    main()
