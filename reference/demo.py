"""Evaluate a DenseVAE with the NumPy reference on a few real test images (Appendix B.3 metrics).

    python -m vaeprior.reference.demo [--dataset mnist] [--n 16] [--samples 100] [--seed 0]
                                      [--data-dir D] [--params file.npz]
                                      [--prior rnvp] [--posterior rnvp] [--flow-depth K]

Without --params the weights are random (DESIGN.md's init, prior/posterior as asked); with it,
an .npz holding DESIGN.md's keys (the config is read off the array shapes). Prints the config
and the means over the n images of NLL, ELBO, recon, KL and klz|x.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from .config import POSTERIORS, PRIORS, VAEConfig
from .data import load_dataset
from .dense_vae import Params, init_params
from .objectives import evaluate

DEFAULT_Z_DIM = {"mnist": 40, "static-mnist": 40, "fashion-mnist": 64, "omniglot": 64}
METRICS = ("nll", "elbo", "recon", "kl", "klzx")


def _flow_depth(params: Params, prefix: str) -> int:
    return sum(1 for k in params if re.fullmatch(rf"{prefix}\.\d+\.W", k))


def config_from_params(params: Params) -> VAEConfig:
    """Read a VAEConfig off DESIGN.md-keyed arrays (sizes, which flows, flow depth)."""
    if "enc.l1.W" not in params or "enc.mean.W" not in params:
        raise ValueError("params file lacks enc.l1.W / enc.mean.W: save DESIGN.md's keys")
    depths = {p: _flow_depth(params, p) for p in ("prior", "posterior")}
    used = {d for d in depths.values() if d > 0}
    if len(used) > 1:
        raise ValueError(f"prior and posterior flows differ in depth {depths}: VAEConfig has one")
    any_flow = next((p for p in depths if depths[p] > 0), None)
    return VAEConfig(
        x_dim=params["enc.l1.W"].shape[0],
        z_dim=params["enc.mean.W"].shape[1],
        hidden=params["enc.l1.W"].shape[1],
        prior="rnvp" if depths["prior"] else "gaussian",
        posterior="rnvp" if depths["posterior"] else "gaussian",
        flow_depth=max(used, default=0),
        flow_hidden=params[f"{any_flow}.0.A"].shape[1] if any_flow else 256,
    )


def load_params(path: str | Path) -> tuple[Params, VAEConfig]:
    """Arrays of an .npz file (as float64) and the config they imply."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no params file at {path}: pass an .npz with DESIGN.md's keys")
    with np.load(path) as f:
        params = {k: np.asarray(f[k], dtype=np.float64) for k in f.files}
    return params, config_from_params(params)


def load_test_images(
    dataset: str, n: int, data_dir: str | None, rng: np.random.Generator
) -> np.ndarray:
    """The first n test rows as float64 in {0, 1} (binarized here if given intensities)."""
    x = np.asarray(load_dataset(dataset, data_dir=data_dir).test[:n], dtype=np.float64)  # (n, 784)
    if x.max() > 1.0:  # 0..255 intensities
        x = x / 255.0
    if np.any((x > 0.0) & (x < 1.0)):  # intensities in [0, 1]: binarize once (B.1)
        x = (rng.random(x.shape) < x).astype(np.float64)
    return x


def run(
    params: Params, cfg: VAEConfig, x: np.ndarray, samples: int, rng: np.random.Generator
) -> dict:
    """Means over the images of the B.3 metrics, from `samples` draws per image."""
    eps = rng.standard_normal((samples, x.shape[0], cfg.z_dim))  # (S, B, Z)
    return {k: float(np.mean(v)) for k, v in evaluate(params, cfg, x, eps).items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist", choices=sorted(DEFAULT_Z_DIM))
    ap.add_argument("--n", type=int, default=16, help="number of test images")
    ap.add_argument("--samples", type=int, default=100, help="z samples per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--params", default=None, help=".npz with DESIGN.md's keys (default: random)")
    ap.add_argument("--prior", default="gaussian", choices=PRIORS, help="for random weights")
    ap.add_argument(
        "--posterior", default="gaussian", choices=POSTERIORS, help="for random weights"
    )
    ap.add_argument("--flow-depth", type=int, default=20, help="K, for random weights")
    args = ap.parse_args(argv)
    if args.n < 1 or args.samples < 1:
        ap.error("--n and --samples must be >= 1")
    rng = np.random.default_rng(args.seed)
    if args.params:
        params, cfg = load_params(args.params)
    else:
        cfg = VAEConfig(
            z_dim=DEFAULT_Z_DIM[args.dataset],
            prior=args.prior,
            posterior=args.posterior,
            flow_depth=args.flow_depth,
        )
        params = init_params(cfg, rng)
    x = load_test_images(args.dataset, args.n, args.data_dir, rng)
    result = run(params, cfg, x, args.samples, rng)
    print(f"config: {cfg}")
    print(f"dataset: {args.dataset}, images: {x.shape[0]}, samples: {args.samples}")
    for k in METRICS:
        print(f"{k}: {result[k]:.6f}")
    return result


if __name__ == "__main__":
    main()
