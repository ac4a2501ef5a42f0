"""Appendix B.4 / Fig. 3: closest pairs of q(z|x), their distances and normalized distances."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeprior.fast.analysis import plots
from vaeprior.fast.analysis.common import (
    ROW_BUDGET,
    Array,
    bar,
    check_samples,
    summary,
    to_numpy,
    write_outputs,
)
from vaeprior.fast.analysis.densities import encode_all
from vaeprior.fast.evaluation.posterior import posterior_chunks
from vaeprior.reference import analysis as ref


def _posterior_centres(
    vae: torch.nn.Module, x: Array, samples: int, seed: int, progress: bool
) -> tuple[Array, Array, Array | None]:
    """mu(x) and per-dimension stds of q(z|x): exact for a Gaussian posterior, sampled for RNVP.

    Returns centres (N, Z), stds (N, Z) and log_std (N, Z) (None for an RNVP posterior).
    """
    if vae.posterior_flow is None:
        mean, log_std = encode_all(vae, x)
        return mean, np.exp(log_std), log_std
    centres, stds = [], []
    batch = max(1, ROW_BUDGET // samples)
    chunks = posterior_chunks(vae, x, samples, seed=seed, batch_size=batch, sample_chunk=samples)
    for c in bar(chunks, math.ceil(len(x) / batch), "posterior means", progress):
        centres.append(to_numpy(c.z.mean(0)))
        stds.append(to_numpy(c.z.std(0)))
    return np.concatenate(centres), np.concatenate(stds), None


def _projected_stds(vae, x: Array, u: Array, samples: int, seed: int) -> Array:
    """Std of u_i . z over z ~ q(z|x_i) for each row i (`samples` draws): (N,)."""
    out = np.empty(len(x))
    batch = max(1, ROW_BUDGET // (2 * samples))
    for c in posterior_chunks(vae, x, samples, seed=seed, batch_size=batch, sample_chunk=samples):
        out[c.rows] = ref.projection_std_sampled(to_numpy(c.z), u[c.rows])
    return out


@torch.no_grad()
def closest_pairs(
    vae: torch.nn.Module, x: Array, *, samples: int = 1000, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Closest pairs of q(z|x) over x, their distances and normalized distances (Eqs. B.2-B.3).

    j(i) = argmin_{j != i} ||mu_j - mu_i|| (exact, chunked); d_ij; Std[i;j] and Std[j;i] from
    `samples` draws of q(z|x_i), q(z|x_j) projected on u = d_ij / ||d_ij||; normalized distance
    2 d_ij / (Std[i;j] + Std[j;i]). For a Gaussian posterior the closed-form stds are returned
    too (`std_ij_exact`, `std_ji_exact`). The three draws (centres, x_i, x_j) use the counter
    noise with seeds seed, seed + 1, seed + 2.
    """
    check_samples(samples, 2)
    if len(x) < 2:
        raise ValueError("closest-pairs needs at least 2 data points: raise --limit")
    centres, dim_std, log_std = _posterior_centres(vae, x, samples, seed, progress)
    nbr, _ = ref.nearest_neighbours(centres)
    dist, u = ref.unit_directions(centres, centres[nbr])
    std_ij = _projected_stds(vae, x, u, samples, seed + 1)
    std_ji = _projected_stds(vae, np.asarray(x)[nbr], u, samples, seed + 2)
    result = {
        "neighbour": nbr,
        "distance": dist,
        "std_ij": std_ij,
        "std_ji": std_ji,
        "normalized_distance": ref.normalized_distance(dist, std_ij, std_ji),
        "posterior_std": dim_std,
        "samples": samples,
    }
    if log_std is not None:
        result["std_ij_exact"] = ref.projection_std_closed_form(log_std, u)
        result["std_ji_exact"] = ref.projection_std_closed_form(log_std[nbr], u)
    return result


def run(args, vae, cfg, data, out: Path) -> list[Path]:
    """closest-pairs.json (summaries), closest-pairs.npz (per point) and the Fig. 3 histograms."""
    x = data.train_binary
    r = closest_pairs(vae, x, samples=args.samples, seed=args.seed, progress=not args.no_progress)
    npz = out / "closest-pairs.npz"
    np.savez_compressed(npz, **{k: v for k, v in r.items() if isinstance(v, np.ndarray)})
    payload = {
        "n": len(r["distance"]),
        "samples": r["samples"],
        "posterior_std": summary(r["posterior_std"]),
        "distance": summary(r["distance"]),
        "normalized_distance": summary(r["normalized_distance"]),
        "arrays": npz.name,
        "figure": "Fig. 3",
    }
    if "std_ij_exact" in r:
        rel = np.abs(r["std_ij"] / r["std_ij_exact"] - 1.0)
        payload["std_sampled_vs_closed_form_rel_err"] = {
            "mean": float(rel.mean()),
            "max": float(rel.max()),
        }
    draw = lambda p: plots.plot_closest_pairs(
        r["posterior_std"], r["distance"], r["normalized_distance"], p
    )
    return [npz, *write_outputs(args, out, "closest-pairs", payload, draw)]
