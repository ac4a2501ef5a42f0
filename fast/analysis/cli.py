"""`vaeprior analyze RUN --what ...`: run the paper's analyses on a trained run, write JSON + PNG.

Each analysis is a module of this package with its estimator and a `run(args, vae, cfg, data,
out)` that writes DIR/<name>.json (+ DIR/<name>.png where the paper shows a picture, + .npz for
per-point arrays too large for JSON).
"""

from __future__ import annotations

import argparse
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `vaeprior analyze` (registered by the CLI)."""
    parser.add_argument("run_dir", type=Path, help="run directory written by `vaeprior train`")
    parser.add_argument(
        "--what", required=True, help=f"comma-separated analyses: {', '.join(ANALYSES)} or all"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (RUN_DIR/analysis)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N data points")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--samples", type=int, default=1000, help="z samples per x (paper: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--rows", type=int, default=6, help="samples: grid rows")
    parser.add_argument("--cols", type=int, default=6, help="samples: grid columns")
    parser.add_argument("--pairs", type=int, default=5, help="interpolation: training pairs")
    parser.add_argument("--steps", type=int, default=10, help="interpolation: steps per pair")
    parser.add_argument("--prior-samples", type=int, default=10000, help="low-posterior: z drawn")
    parser.add_argument("--keep", type=int, default=100, help="low-posterior: lowest q(z) kept")
    parser.add_argument("--n-x", type=int, default=1, help="aggregate-kl: binarizations per image")
    parser.add_argument("--n-z", type=int, default=10, help="aggregate-kl: z per binarized x")
    parser.add_argument("--no-plot", action="store_true", help="write JSON only, no PNG")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


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
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "analysis"
    if not args.no_plot and set(names) & PLOTTED:
        try:
            plots.require_matplotlib()
        except ImportError as e:  # fail before the long computations, as a one-line error
            raise ValueError(str(e)) from None
    vae, cfg = runs.load_run(args.run_dir, device=args.device)
    out.mkdir(parents=True, exist_ok=True)
    data = AnalysisData(cfg, args.limit)
    for name in names:
        written = ANALYSES[name](args, vae, cfg, data, out)
        print(f"{name}: wrote {', '.join(str(p) for p in written)}")
    return 0
