"""Appendix B.9 / Figs. B.4-B.5: prior samples in regions of low aggregate posterior q(z)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeprior.fast import runs
from vaeprior.fast.analysis import plots
from vaeprior.fast.analysis.common import (
    Array,
    check_samples,
    generator,
    param,
    to_numpy,
    write_outputs,
)
from vaeprior.fast.analysis.densities import decode_means, encode_all, log_aggregate_posterior
from vaeprior.fast.evaluation.posterior import counter_normal
from vaeprior.reference import analysis as ref


@torch.no_grad()
def low_posterior(
    vae: torch.nn.Module,
    train_x: Array,
    *,
    base: torch.nn.Module | None = None,
    n_prior: int = 10000,
    keep: int = 100,
    samples: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Low posterior samples (App. B.9, after Rosca et al.): n_prior z ~ p(z), rank by q(z) =
    LogMeanExp over the training set of q(z|x), keep the `keep` lowest; for each, log p_lambda(z),
    one x ~ p(x|z) and its ELBO (`samples` draws).

    With `base` (the standard model a post-hoc prior was trained on), z come from the base's
    N(0, I) prior and are ranked by the base's q(z) (Fig. B.4); both models are then scored on
    the same z and x. Returns per-model {"log_pz", "elbo"} under "models", the kept z, their
    decoded means, and log q(z) of all n_prior z.
    """
    check_samples(samples)
    ref.lowest(np.zeros(n_prior), keep)  # validates 1 <= keep <= n_prior
    sampler = vae if base is None else base
    g = generator(vae, seed)
    z = sampler.prior_sample(n_prior, generator=g)  # (n_prior, Z)
    mean, log_std = encode_all(sampler, train_x)
    log_q = log_aggregate_posterior(sampler, z, mean, log_std, progress=progress)
    idx = ref.lowest(log_q, keep)
    z_low = z[torch.as_tensor(idx, device=z.device)]
    x = sampler.sample_x(z_low, g)  # (keep, 784), one x ~ p(x|z) per z
    models = {"run": vae} if base is None else {"base": base, "run": vae}
    scores = {}
    for name, m in models.items():
        p = param(m)
        eps = counter_normal(seed, 0, keep, 0, samples, m.cfg.z_dim, device=p.device, dtype=p.dtype)
        elbo = to_numpy(m.elbo(x.to(p.dtype), eps))
        scores[name] = {"log_pz": to_numpy(m.prior_log_prob(z_low)), "elbo": elbo}
    return {
        "models": scores,
        "index": idx,
        "z": to_numpy(z_low),
        "log_qz": log_q[idx],
        "log_qz_all": log_q,
        "z_all": to_numpy(z),
        "means": decode_means(sampler, z_low, g, x),
        "x": to_numpy(x),
    }


def run(args, vae, cfg, data, out: Path) -> list[Path]:
    """low-posterior.json and Fig. B.5 (Fig. B.4 beside the base run of a post-hoc prior)."""
    base = None
    if getattr(cfg, "base_run", None):
        base = runs.load_run(cfg.base_run, device=str(param(vae).device))[0]
    r = low_posterior(
        vae,
        data.train_binary,
        base=base,
        n_prior=args.prior_samples,
        keep=args.keep,
        samples=args.samples,
        seed=args.seed,
        progress=not args.no_progress,
    )
    payload = {
        "models": r["models"],
        "log_qz": r["log_qz"],
        "z": r["z"],
        "index": r["index"],
        "n_prior": args.prior_samples,
        "keep": args.keep,
        "n_train": len(data.train_binary),
        "base_run": str(cfg.base_run) if base is not None else None,
        "figure": "Fig. B.4" if base is not None else "Fig. B.5",
    }
    draw = lambda p: plots.plot_low_posterior(r["models"], r["means"], p)
    return write_outputs(args, out, "low-posterior", payload, draw)
