"""Table 8: active units, A_k = Var_x E_q(z|x)[z_k] > 0.01 over training images (App. B.3).

The estimator is `vaeprior.fast.evaluation.posterior.active_units` (the same numbers training
writes into results.json); this module writes active-units.json and the bar plot.
"""

from __future__ import annotations

from pathlib import Path

from vaeprior.fast.analysis import plots
from vaeprior.fast.analysis.common import write_outputs
from vaeprior.fast.evaluation.posterior import active_units


def run(args, vae, cfg, data, out: Path) -> list[Path]:
    """active-units.json (+ .png) on the run's fixed binarization of the training images."""
    r = active_units(vae, data.train_binary, samples=args.samples, seed=args.seed)
    payload = {**r, "n": len(data.train_binary), "table": "Table 8"}
    draw = lambda p: plots.plot_active_units(r["variances"], r["threshold"], p)
    return write_outputs(args, out, "active-units", payload, draw)
