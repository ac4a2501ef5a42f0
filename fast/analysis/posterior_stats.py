"""Table B.1: posterior moments Mean[z_k] = E_x E_q[z_k], Var[z_k] = E_x E_q[(z_k - Mean)^2]."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from vaeprior.fast.analysis.common import (
    ROW_BUDGET,
    Array,
    bar,
    check_samples,
    to_numpy,
    write_json,
)
from vaeprior.fast.evaluation.posterior import posterior_chunks
from vaeprior.reference import analysis as ref


@torch.no_grad()
def posterior_stats(
    vae: torch.nn.Module, x: Array, *, samples: int = 1000, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Mean[z_k] and Var[z_k] over x and `samples` z ~ q(z|x) per x (Table B.1), streamed."""
    check_samples(samples)
    mom = ref.RunningMoments(vae.cfg.z_dim)
    batch = max(1, ROW_BUDGET // samples)
    chunks = posterior_chunks(vae, x, samples, seed=seed, batch_size=batch, sample_chunk=samples)
    for c in bar(chunks, math.ceil(len(x) / batch), "posterior stats", progress):
        mom.update(to_numpy(c.z.reshape(-1, c.z.shape[-1])))
    return {
        "mean": mom.mean,
        "var": mom.var,
        "avg_mean": float(mom.mean.mean()),
        "avg_var": float(mom.var.mean()),
        "samples": samples,
    }


def run(args, vae, cfg, data, out: Path) -> list[Path]:
    """posterior-stats.json on the test images."""
    r = posterior_stats(
        vae, data.test, samples=args.samples, seed=args.seed, progress=not args.no_progress
    )
    payload = {**r, "n": len(data.test), "split": "test", "table": "Table B.1"}
    return [write_json(out, "posterior-stats", payload)]
