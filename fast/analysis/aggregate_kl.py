"""Algorithm B.2 / Eq. B.4: Monte Carlo D_KL[q(z) || p_lambda(z)] (Table B.2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeprior.fast.analysis.common import (
    Array,
    bar,
    generator,
    param,
    spans,
    tensor,
    to_numpy,
    write_json,
)
from vaeprior.fast.analysis.densities import encode_all, log_aggregate_posterior
from vaeprior.fast.evaluation.posterior import posterior_chunks
from vaeprior.reference import analysis as ref

AGGREGATE_KL_NOTE = (
    "Monte Carlo estimate of Algorithm B.2 / Eq. B.4. q(z) is the empirical mixture over the "
    "n_x binarizations of each training image, so the value falls as n_x grows (Table B.2 of "
    "the paper: 15.28 at n_x=1 down to 13.39 at n_x=8); with barely overlapping posteriors it "
    "is about E_x KL[q(z|x)||p(z)] - log(N n_x). Compare values only at equal N and n_x."
)


@torch.no_grad()
def aggregate_kl(
    vae: torch.nn.Module,
    intensities: Array,
    *,
    n_x: int = 1,
    n_z: int = 10,
    seed: int = 0,
    chunk_elems: int = ref.DEFAULT_CHUNK_ELEMS,
    progress: bool = False,
) -> dict[str, Any]:
    """Monte Carlo D_KL[q(z) || p_lambda(z)] by Algorithm B.2: each training image binarized
    n_x times, n_z z ~ q(z|x) per binarized x, log q(z) = LogMeanExp over all N n_x binarized x'.

    Cost O((N n_x)^2 n_z Z). The estimate is that of the empirical mixture over the N n_x
    binarized images and drifts down with n_x (Table B.2); see `AGGREGATE_KL_NOTE` and
    `vaeprior.reference.analysis.aggregate_kl`.
    """
    if n_x < 1 or n_z < 1:
        raise ValueError(f"aggregate-kl needs --n-x >= 1 and --n-z >= 1, got {n_x}, {n_z}")
    xs = _binarize_repeated(vae, np.asarray(intensities), n_x, generator(vae, seed))
    mean, log_std = (tensor(a, vae) for a in encode_all(vae, xs))  # on the device once
    log_q, log_p = [], []
    batch = max(1, 4096 // n_z)
    chunks = posterior_chunks(vae, xs, n_z, seed=seed, batch_size=batch, sample_chunk=n_z)
    for c in bar(chunks, math.ceil(len(xs) / batch), "aggregate KL", progress):
        z = c.z.reshape(-1, c.z.shape[-1])  # (n_z * B, Z)
        log_p.append(to_numpy(vae.prior_log_prob(z)))
        log_q.append(log_aggregate_posterior(vae, z, mean, log_std, chunk_elems=chunk_elems))
    kl, stderr = ref.aggregate_kl(np.concatenate(log_q), np.concatenate(log_p))
    return {
        "kl": kl,
        "stderr": stderr,
        "n_x": n_x,
        "n_z": n_z,
        "n_images": len(intensities),
        "note": AGGREGATE_KL_NOTE,
    }


def _binarize_repeated(
    vae: torch.nn.Module, intensities: Array, n_x: int, g: torch.Generator
) -> torch.Tensor:
    """Each image binarized n_x times, image-major rows (i * n_x + r): (N n_x, 784) uint8."""
    shape = (len(intensities) * n_x, intensities.shape[1])
    xs = torch.empty(shape, dtype=torch.uint8, device=param(vae).device)
    for a, b in spans(len(intensities), 4096):
        mu = tensor(intensities[a:b], vae).repeat_interleave(n_x, dim=0)
        xs[a * n_x : b * n_x] = torch.bernoulli(mu, generator=g).to(torch.uint8)
    return xs


def run(args, vae, cfg, data, out: Path) -> list[Path]:
    """aggregate-kl.json."""
    r = aggregate_kl(
        vae,
        data.train_intensities,
        n_x=args.n_x,
        n_z=args.n_z,
        seed=args.seed,
        progress=not args.no_progress,
    )
    return [write_json(out, "aggregate-kl", {**r, "algorithm": "Algorithm B.2"})]
