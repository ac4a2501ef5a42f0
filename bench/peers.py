"""This project's Real NVP beside zuko, normflows and nflows on the CPU, in interleaved rounds.

Every library builds the same flow as closely as it allows: D = 40, K blocks (20 and 50) of
invertible linear map -> affine coupling (the first 20 features condition a 40 -> 256 -> 40
LeakyReLU network giving the other 20 features' scale and shift) -> per-feature affine map,
evaluated in its log-density direction (data -> base) with a standard normal base:

- vaeprior: `vaeprior.fast.models.flows.RealNVP` (InvertibleDense, sigmoid(s + 2) scale,
  ActNorm), log p = log N(f(x); 0, I) + log|det|.
- normflows 1.7: `LULinearPermute`, `AffineCouplingBlock(MLP([20, 256, 40], leaky=0.2),
  scale_map="sigmoid")`, `ActNorm`, in `NormalizingFlow.log_prob`.
- nflows 0.14: `LULinear`, `AffineCouplingTransform` (sigmoid(s + 2) + 1e-3 scale, a
  Linear-LeakyReLU-Linear net), `ActNorm`, in `Flow.log_prob`.
- zuko 1.6: `LULinearTransform`, `GeneralCouplingTransform(hidden_features=[256],
  activation=LeakyReLU)` (its monotonic affine scale), a per-feature `MonotonicAffineTransform`
  (zuko has no ActNorm), in `Flow().log_prob`.

Timed per library, K and batch (128 and 8192 rows): the log-prob forward (no grad), forward +
backward of the mean negative log-likelihood, and one training step (forward, backward, Adam:
once with torch's default Adam, once with fused=True, the same settings for every library).
All cases run in turn within a round; a case's number is the median over rounds of its
per-round median. A library that is not installed is skipped (they are not project
dependencies: `pip install zuko==1.6.* normflows==1.7.3 nflows==0.14`).

Run: `OMP_NUM_THREADS=1 python -m vaeprior.bench.peers [--rounds 7] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import statistics
from collections.abc import Callable

import torch
from torch import nn

from vaeprior.bench.cpu_speed import median_seconds
from vaeprior.fast.models.distributions import unit_gaussian_log_prob
from vaeprior.fast.models.flows import RealNVP

D, H, SLOPE = 40, 256, 0.2
DL = D // 2
LIBRARIES = ("vaeprior", "normflows", "nflows", "zuko")
MODES = ("log-prob fwd", "fwd+bwd", "Adam step", "Adam step (fused)")


class _LeakyNet(nn.Sequential):
    """Linear(n_in, 256) -> LeakyReLU(0.2) -> Linear(256, n_out); ignores nflows' context."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(nn.Linear(n_in, H), nn.LeakyReLU(SLOPE), nn.Linear(H, n_out))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


def _vaeprior(depth: int) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    flow = RealNVP(D, depth, H)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        y, ld = flow(x)
        return unit_gaussian_log_prob(y) + ld

    return flow, log_prob


def _normflows(depth: int) -> tuple[nn.Module, Callable]:
    nf = importlib.import_module("normflows")
    flows = []
    for _ in range(depth):
        flows += [
            nf.flows.LULinearPermute(D),
            nf.flows.AffineCouplingBlock(
                nf.nets.MLP([DL, H, 2 * (D - DL)], leaky=SLOPE), scale_map="sigmoid"
            ),
            nf.flows.ActNorm(D),
        ]
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(D, trainable=False), flows)
    return model, model.log_prob


def _nflows(depth: int) -> tuple[nn.Module, Callable]:
    nt = importlib.import_module("nflows.transforms")
    nfl = importlib.import_module("nflows.flows.base")
    base = importlib.import_module("nflows.distributions.normal").StandardNormal([D])
    mask = torch.arange(D) >= DL  # transform the right half, condition on the left
    layers = []
    for _ in range(depth):
        layers += [
            nt.LULinear(D, identity_init=True),
            nt.AffineCouplingTransform(mask, _LeakyNet),
            nt.ActNorm(D),
        ]
    model = nfl.Flow(nt.CompositeTransform(layers), base)
    return model, model.log_prob


def _zuko(depth: int) -> tuple[nn.Module, Callable]:
    zuko = importlib.import_module("zuko")
    mask = torch.arange(D) < DL  # True: the conditioning features
    transforms = []
    for _ in range(depth):
        lu = torch.eye(D) + 0.01 * torch.randn(D, D)
        transforms += [
            zuko.lazy.UnconditionalTransform(zuko.transforms.LULinearTransform, lu),
            zuko.flows.GeneralCouplingTransform(
                D, mask=mask, hidden_features=[H], activation=lambda: nn.LeakyReLU(SLOPE)
            ),
            zuko.lazy.UnconditionalTransform(
                zuko.transforms.MonotonicAffineTransform, torch.zeros(D), torch.zeros(D)
            ),
        ]
    base = zuko.lazy.UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.zeros(D), torch.ones(D), buffer=True
    )
    model = zuko.lazy.Flow(transforms, base)
    return model, lambda x: model().log_prob(x)


BUILDERS = {"vaeprior": _vaeprior, "normflows": _normflows, "nflows": _nflows, "zuko": _zuko}


def available() -> dict[str, str | None]:
    """Library -> version, or None when it cannot be imported."""
    out: dict[str, str | None] = {"vaeprior": "this checkout"}
    for name in LIBRARIES[1:]:
        try:
            importlib.import_module(name)
        except ImportError:
            out[name] = None
        else:
            out[name] = importlib.metadata.version(name)
    return out


def cases(library: str, depth: int, batch: int) -> dict[str, Callable[[], None]]:
    """The four timed callables of one (library, K, batch); ActNorms initialised."""
    torch.manual_seed(0)
    model, log_prob = BUILDERS[library](depth)
    x = torch.randn(batch, D, generator=torch.Generator().manual_seed(1))
    model.train()
    log_prob(x)  # data-dependent ActNorm init where the library has it
    opts = {
        "Adam step": torch.optim.Adam(model.parameters(), lr=1e-4),
        "Adam step (fused)": torch.optim.Adam(model.parameters(), lr=1e-4, fused=True),
    }

    def forward() -> None:
        with torch.no_grad():
            log_prob(x)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        (-log_prob(x).mean()).backward()

    def step(opt: torch.optim.Optimizer) -> Callable[[], None]:
        def run() -> None:
            opt.zero_grad(set_to_none=True)
            (-log_prob(x).mean()).backward()
            opt.step()

        return run

    out = {"log-prob fwd": forward, "fwd+bwd": forward_backward}
    out |= {mode: step(opt) for mode, opt in opts.items()}
    for fn in out.values():
        fn()  # warm-up, optimizer state
    return out


def measure(depths=(20, 50), batches=(128, 8192), rounds: int = 7) -> dict:
    """Medians (seconds) per (batch, K, mode, library), cases interleaved within each round."""
    libs = [lib for lib, v in available().items() if v is not None]
    timed = {}
    for batch in batches:
        for depth in depths:
            for lib in libs:
                for mode, fn in cases(lib, depth, batch).items():
                    timed[(batch, depth, mode, lib)] = fn
    per_case: dict[tuple, list[float]] = {key: [] for key in timed}
    loads = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for key, fn in timed.items():
            reps = 5 if key[0] <= 1024 else 2
            per_case[key].append(median_seconds(fn, reps))
    return {
        "libraries": available(),
        "loads": loads,
        "threads": torch.get_num_threads(),
        "medians": {"|".join(map(str, k)): statistics.median(v) for k, v in per_case.items()},
    }


def table(r: dict) -> str:
    libs = [lib for lib in LIBRARIES if r["libraries"].get(lib)]
    med = {tuple(k.split("|")): v for k, v in r["medians"].items()}
    head = " | ".join(f"{lib} ms" for lib in libs)
    others = [lib for lib in libs if lib != "vaeprior"]
    ratio_head = " | ".join(f"vaeprior / {lib}" for lib in others)
    lines = [
        f"| batch | K | case | {head} | {ratio_head} |",
        "| --- " * (3 + 2 * len(libs) - 1) + "|",
    ]
    keys = sorted({k[:3] for k in med}, key=lambda k: (int(k[0]), int(k[1]), MODES.index(k[2])))
    for batch, depth, mode in keys:
        ms = {lib: 1e3 * med[(batch, depth, mode, lib)] for lib in libs}
        cells = " | ".join(f"{ms[lib]:.2f}" for lib in libs)
        ratios = " | ".join(f"{ms['vaeprior'] / ms[lib]:.2f}" for lib in others)
        lines.append(f"| {batch} | {depth} | {mode} | {cells} | {ratios} |")
    missing = [lib for lib, v in r["libraries"].items() if v is None]
    lines.append("")
    lines.append(
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in r["libraries"].items() if v)
        + (f"; skipped (not installed): {', '.join(missing)}" if missing else "")
    )
    lines.append(
        f"Threads: {r['threads']}; 1-minute load average per round: "
        + ", ".join(f"{v:.2f}" for v in r["loads"])
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--depths", type=int, nargs="+", default=[20, 50])
    p.add_argument("--batches", type=int, nargs="+", default=[128, 8192])
    p.add_argument("--json", default=None, help="also write the raw numbers to this file")
    args = p.parse_args(argv)
    r = measure(tuple(args.depths), tuple(args.batches), args.rounds)
    print(table(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
