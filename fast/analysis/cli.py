"""`vaeprior analyze RUN --what ...`: run the paper's analyses on a trained run, write JSON + PNG.

Each analysis is a module of this package with its estimator and a `run(args, vae, cfg, data,
out)` that writes DIR/<name>.json (+ DIR/<name>.png where the paper shows a picture, + .npz for
per-point arrays too large for JSON).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeprior.fast import data as fdata
from vaeprior.fast import runs
from vaeprior.fast.analysis import (
    active_units,
    aggregate_kl,
    closest_pairs,
    interpolation,
    low_posterior,
    metrics,
    plots,
    posterior_stats,
    samples,
)
from vaeprior.fast.analysis.common import check_samples
from vaeprior.fast.evaluation.evaluate import format_duration

ANALYSES = {
    "active-units": active_units.run,  # Table 8
    "posterior-stats": posterior_stats.run,  # Table B.1
    "closest-pairs": closest_pairs.run,  # Appendix B.4, Fig. 3
    "samples": samples.run,  # Fig. 1
    "interpolation": interpolation.run,  # Fig. 2
    "low-posterior": low_posterior.run,  # Appendix B.9, Figs. B.4-B.5
    "aggregate-kl": aggregate_kl.run,  # Algorithm B.2, Table B.2
    "metrics": metrics.run,  # Tables 7, B.11-B.14
}
PLOTTED = {"active-units", "closest-pairs", "samples", "interpolation", "low-posterior"}
DESCRIPTION = """\
Run the paper's analyses on a trained run; each writes DIR/NAME.json, and a PNG where the
paper shows a picture:

  active-units     Table 8: A_k = Var_x E_q[z_k] > 0.01 over the training images
  posterior-stats  Table B.1: mean and variance of each z_k under E_x q(z|x), test set
  closest-pairs    Appendix B.4, Fig. 3: closest q(z|x) centres and normalized distances
  samples          Fig. 1: samples of p(z) decoded, beside the closest training image
  interpolation    Fig. 2: interpolations between q(z|x) centres, with log p(z)
  low-posterior    Appendix B.9, Figs. B.4-B.5: prior samples where the aggregate q(z) is low
  aggregate-kl     Algorithm B.2, Table B.2: D_KL[q(z) || p(z)] by Monte Carlo
  metrics          Tables 7, B.11-B.14: test ELBO, recon, KL, klz|x (runs the evaluation)

On the full data sets at S = 1000 the posterior analyses take long on a CPU: --limit and
--samples shorten them. Example:

  vaeprior analyze runs/figs --what all --limit 2000 --samples 100 --out docs/analysis
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `vaeprior analyze` (registered by the CLI), in groups, each with its default."""
    parser.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="run folder written by `vaeprior train`"
    )
    g = parser.add_argument_group("analyses")
    g.add_argument(
        "--what",
        required=True,
        metavar="A,B,...",
        help=f"comma-separated analyses: {', '.join(ANALYSES)}, or all",
    )
    g.add_argument(
        "--samples",
        type=int,
        default=1000,
        metavar="S",
        help="z ~ q(z|x) samples per image (paper: 1000; closest-pairs needs >= 2)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    g = parser.add_argument_group("data")
    g.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="use N images spread over each split (default: all: 60,000 training images and "
        "100,000 test rows on MNIST)",
    )
    g = parser.add_argument_group("per-analysis options")
    g.add_argument("--rows", type=int, default=6, help="samples: grid rows (Fig. 1)")
    g.add_argument(
        "--cols", type=int, default=6, help="samples: grid columns, the last the closest image"
    )
    g.add_argument("--pairs", type=int, default=5, help="interpolation: training-image pairs")
    g.add_argument("--steps", type=int, default=10, help="interpolation: steps per pair (Fig. 2)")
    g.add_argument(
        "--prior-samples",
        type=int,
        default=10000,
        metavar="N",
        help="low-posterior: z drawn from the prior (Appendix B.9)",
    )
    g.add_argument(
        "--keep", type=int, default=100, metavar="N", help="low-posterior: lowest-q(z) z kept"
    )
    g.add_argument(
        "--n-x", type=int, default=1, metavar="N", help="aggregate-kl: binarizations per image"
    )
    g.add_argument(
        "--n-z", type=int, default=10, metavar="N", help="aggregate-kl: z per binarized image"
    )
    g = parser.add_argument_group("output")
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the JSON and PNG files (default: RUN_DIR/analysis)",
    )
    g.add_argument("--no-plot", action="store_true", help="write JSON only, no PNG")
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="hide progress bars (the per-analysis lines still print)",
    )
    g = parser.add_argument_group("hardware")
    g.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")


def parse_what(what: str) -> list[str]:
    """'a,b' -> ['a', 'b'] (validated); 'all' -> every analysis."""
    names = [w.strip() for w in what.split(",") if w.strip()]
    if names == ["all"]:
        return list(ANALYSES)
    bad = [n for n in names if n not in ANALYSES]
    if bad or not names:
        shown = ", ".join(bad) if bad else repr(what)
        raise ValueError(f"unknown analysis {shown} in --what: choose from {', '.join(ANALYSES)}")
    return list(dict.fromkeys(names))


class AnalysisData:
    """The run's dataset, loaded on first use: train intensities, the run's fixed binarization
    of them (`vaeprior.fast.data.fixed_binarization` with the run's seed, the very images of
    results.json's active units) and the binarized test set, each cut to `limit` rows."""

    def __init__(self, cfg: Any, limit: int | None) -> None:
        self.cfg, self.limit = cfg, limit
        self._ds: Any = None
        self._train_binary: np.ndarray | None = None

    def _load(self) -> Any:
        if self._ds is None:
            self._ds = fdata.load_dataset(self.cfg.dataset, self.cfg.data_dir)
        return self._ds

    def _cut(self, a: np.ndarray, copies: int | None = None) -> np.ndarray:
        """`limit` rows of `a` as `vaeprior.fast.data.split_tensor` picks them: spread evenly
        over the `copies` binarizations of the test set, one per stratum elsewhere."""
        if self.limit is None:
            return a
        jitter = copies is None
        return a[fdata.spread_rows(len(a), self.limit, copies or 1, jitter=jitter)]

    @property
    def train_intensities(self) -> np.ndarray:
        return self._cut(self._load().train)

    @property
    def train_binary(self) -> np.ndarray:
        if self._train_binary is None:
            ds = self._load()
            x = torch.as_tensor(np.asarray(ds.train, dtype=np.float32))
            xb = fdata.fixed_binarization(x, self.cfg.seed, getattr(ds, "dynamic", True))
            self._train_binary = self._cut(xb.numpy().astype(np.uint8))
        return self._train_binary

    @property
    def test(self) -> np.ndarray:
        return self._cut(self._load().test, fdata.test_copies(self._load()))


def run(args: argparse.Namespace) -> int:
    """Run the analyses named by --what on RUN_DIR; write DIR/<name>.json (+ .png, .npz)."""
    names = parse_what(args.what)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    # before the run and the data load: closest-pairs needs two samples for its std
    check_samples(args.samples, 2 if "closest-pairs" in names else 1)
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "analysis"
    if not args.no_plot and set(names) & PLOTTED:
        try:
            plots.require_matplotlib()
        except ImportError as e:  # fail before the long computations, as a one-line error
            raise ValueError(str(e)) from None
    vae, cfg = runs.load_run(args.run_dir, device=args.device)
    out.mkdir(parents=True, exist_ok=True)
    data = AnalysisData(cfg, args.limit)
    for i, name in enumerate(names, 1):
        if not args.no_progress:
            print(f"analyze [{i}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        written = ANALYSES[name](args, vae, cfg, data, out)
        seconds = time.perf_counter() - t0
        print(f"{name}: wrote {', '.join(str(p) for p in written)} ({format_duration(seconds)})")
    return 0
