"""Evaluation of Appendix B.3: importance-weighted NLL (S = 1000), ELBO, recon, KL, active units.

Memory stays bounded whatever S and N: the data are processed `batch_size` rows at a time and
the samples `sample_chunk` at a time, the log-mean-exp being accumulated with a running max
and a float64 running sum (the flash-attention cross-entropy pattern).

The noise is counter-based: eps[s, i, k] is a function of (seed, data row i, sample s, dim k)
only (splitmix64 hash + Box-Muller), so results do not depend on the chunk sizes or the
device, and a direct unchunked computation sees exactly the same ε.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from vaeprior.fast import backends
from vaeprior.fast.evaluation.posterior import PosteriorChunk, active_units, posterior_chunks
from vaeprior.fast.models.distributions import unit_gaussian_log_prob
from vaeprior.fast.runs import EVAL, atomic_write_json, load_run


def _seed_from(generator: torch.Generator | None) -> int:
    if generator is None:
        return 0
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


def _chunk_terms(
    vae: nn.Module, c: PosteriorChunk, backend: str, unit_prior: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x|z) and log q(z|x) - log p(z) of one chunk, each (ns, nb) float64."""
    log_px = vae.log_px_z(c.z, c.x, backend=backend).double()
    log_pz = unit_gaussian_log_prob(c.z) if unit_prior else vae.prior_log_prob(c.z)
    return log_px, (c.log_qz - log_pz).double()


@torch.no_grad()
def evaluate(
    vae: nn.Module,
    x: torch.Tensor,
    *,
    samples: int = 1000,
    batch_size: int = 128,
    sample_chunk: int | None = None,
    backend: str = "auto",
    generator: torch.Generator | None = None,
    unit_prior: bool = False,
) -> dict[str, float]:
    """Means over x (N, 784) of NLL (LogMeanExp over S, Appendix B.3), ELBO, recon, KL, klz|x.

    ELBO, recon (E log p(x|z)) and kl (E[log q - log p]) are S-sample averages; klzx is the
    ELBO gap -NLL - ELBO. `unit_prior` evaluates with p(z) = N(0, I) (standard stages).
    """
    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be >= 1, got {samples}, {batch_size}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"evaluate needs x of shape (N, 784) with N >= 1, got {tuple(x.shape)}")
    backends.resolve(backend, x, "iw_nll")  # validates the choice before any work
    seed, was_training = _seed_from(generator), vae.training
    n = x.shape[0]
    dev = next(vae.parameters()).device
    run_max = torch.full((n,), -math.inf, dtype=torch.float64, device=dev)  # per x, over s
    run_sum = torch.zeros(n, dtype=torch.float64, device=dev)  # sum_s exp(log w - run_max)
    recon, kl = torch.zeros_like(run_sum), torch.zeros_like(run_sum)
    vae.eval()
    try:
        chunks = posterior_chunks(
            vae, x, samples, seed=seed, batch_size=batch_size, sample_chunk=sample_chunk
        )
        for c in chunks:
            log_px, log_ratio = _chunk_terms(vae, c, backend, unit_prior)  # (ns, nb) each
            logw = log_px - log_ratio
            top = torch.maximum(run_max[c.rows], logw.amax(0))
            run_sum[c.rows] = run_sum[c.rows] * torch.exp(run_max[c.rows] - top) + torch.exp(
                logw - top
            ).sum(0)
            run_max[c.rows] = top
            recon[c.rows] += log_px.sum(0)
            kl[c.rows] += log_ratio.sum(0)
    finally:
        vae.train(was_training)
    nll = -(torch.log(run_sum) + run_max - math.log(samples))  # (N,)
    totals = {"nll": float(nll.sum()), "recon": float(recon.sum()) / samples}
    totals["kl"] = float(kl.sum()) / samples
    n = x.shape[0]
    out = {k: v / n for k, v in totals.items()}
    out["elbo"] = out["recon"] - out["kl"]
    out["klzx"] = -out["nll"] - out["elbo"]
    return {**out, "n": n, "samples": samples}


def evaluate_run(
    run_dir: str | Path,
    *,
    samples: int = 1000,
    limit: int | None = None,
    split: str = "test",
    backend: str = "auto",
    device: str | None = None,
) -> dict:
    """Evaluate a trained run on `split` (first `limit` rows) and write run_dir/eval.json."""
    from vaeprior.fast.data import load_device_data, split_tensor

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    vae, cfg = load_run(run_dir, device)
    dev = next(vae.parameters()).device
    data = load_device_data(cfg.dataset, cfg.data_dir, dev, validation=split == "validation")
    x = split_tensor(data, split, cfg.seed, limit)
    result = evaluate(vae, x, samples=samples, backend=backend)
    train_x = split_tensor(data, "train", cfg.seed, limit)
    result["active_units"] = active_units(vae, train_x, samples=samples)["count"]
    result["split"] = split
    atomic_write_json(result, Path(run_dir) / EVAL)
    return result


def summary_line(result: dict) -> str:
    """One-line human summary of an evaluation."""
    au = f" AU {result['active_units']}" if "active_units" in result else ""
    return (
        f"NLL {result['nll']:.3f}  ELBO {result['elbo']:.3f}  recon {result['recon']:.3f}  "
        f"KL {result['kl']:.3f}  klz|x {result['klzx']:.3f}{au}  "
        f"(n={result['n']}, S={result['samples']})"
    )
