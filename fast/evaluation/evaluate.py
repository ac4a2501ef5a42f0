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
from vaeprior.fast.models.distributions import unit_gaussian_log_prob
from vaeprior.fast.runs import EVAL, atomic_write_json, load_run
from vaeprior.reference.metrics import active_units as reference_active_units

ROWS_PER_CHUNK = 8192  # S_chunk * B decoder rows alive at once (DenseVAE)
CONV_ROWS_PER_CHUNK = 1024  # conv decoders keep (rows, 32..64, 28, 28) activations
AU_THRESHOLD = 0.01  # active unit: Var_x E_q[z_k | x] > 0.01 (Burda et al.; Appendix B.3)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


_C1, _C2, _C3 = (_signed(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _srl(x: torch.Tensor, r: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> r) & ((1 << (64 - r)) - 1)


def _mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping arithmetic)."""
    x = x + _C1
    x = (x ^ _srl(x, 30)) * _C2
    x = (x ^ _srl(x, 27)) * _C3
    return x ^ _srl(x, 31)


def counter_normal(
    seed: int,
    row0: int,
    n_rows: int,
    s0: int,
    n_samples: int,
    z_dim: int,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal eps (n_samples, n_rows, Z) for rows row0.. and samples s0.. (sample-major).

    eps[s, i, k] depends only on (seed, row0 + i, s0 + s, k): Box-Muller of two hashed
    53-bit uniforms. Supports up to 2^20 samples per x and Z < 1024.
    """
    if s0 + n_samples > (1 << 20) or z_dim >= (1 << 10):
        raise ValueError("counter_normal supports at most 2^20 samples and Z < 1024")
    kw = {"device": device, "dtype": torch.int64}
    s = torch.arange(s0, s0 + n_samples, **kw).view(-1, 1, 1)
    i = torch.arange(row0, row0 + n_rows, **kw).view(1, -1, 1)
    k = torch.arange(z_dim, **kw).view(1, 1, -1)
    key = (((i << 20) + s) << 11) + (k << 1)  # (S, B, Z), even; +1 for the second uniform
    salt = _mix64(torch.tensor(seed % (1 << 62), **kw))
    u1 = _srl(_mix64(key ^ salt), 11).double()  # 53-bit integers
    u2 = _srl(_mix64((key + 1) ^ salt), 11).double()
    scale = 2.0**-53
    radius = torch.sqrt(-2.0 * torch.log1p(-u1 * scale))  # 1 - u in (0, 1]
    return (radius * torch.cos(2.0 * math.pi * u2 * scale)).to(dtype)


def _seed_from(generator: torch.Generator | None) -> int:
    if generator is None:
        return 0
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


@torch.no_grad()
def _batch_sums(
    vae: nn.Module,
    x: torch.Tensor,
    row0: int,
    seed: int,
    samples: int,
    sample_chunk: int,
    backend: str,
    unit_prior: bool,
) -> dict[str, torch.Tensor]:
    """Per-x NLL and sample-means of log p(x|z), log q - log p for one data batch: (B,) float64."""
    p = next(vae.parameters())
    b = x.shape[0]
    run_max = torch.full((b,), -math.inf, dtype=torch.float64, device=x.device)
    run_sum = torch.zeros(b, dtype=torch.float64, device=x.device)
    recon, kl = torch.zeros_like(run_sum), torch.zeros_like(run_sum)
    for s0 in range(0, samples, sample_chunk):
        ns = min(sample_chunk, samples - s0)
        eps = counter_normal(seed, row0, b, s0, ns, vae.cfg.z_dim, device=x.device, dtype=p.dtype)
        z, log_qz = vae.posterior_sample(x, eps)  # (ns, B, Z), (ns, B)
        log_px = vae.log_px_z(z, x, backend=backend).double()  # (ns, B)
        log_pz = unit_gaussian_log_prob(z) if unit_prior else vae.prior_log_prob(z)
        log_ratio = (log_qz - log_pz).double()
        logw = log_px - log_ratio
        new_max = torch.maximum(run_max, logw.amax(0))
        run_sum = run_sum * torch.exp(run_max - new_max) + torch.exp(logw - new_max).sum(0)
        run_max = new_max
        recon += log_px.sum(0)
        kl += log_ratio.sum(0)
    nll = -(torch.log(run_sum) + run_max - math.log(samples))
    return {"nll": nll, "recon": recon / samples, "kl": kl / samples}


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
    rows = ROWS_PER_CHUNK if vae.cfg.model == "dense" else CONV_ROWS_PER_CHUNK
    chunk = sample_chunk or max(1, rows // min(batch_size, x.shape[0]))
    seed, was_training = _seed_from(generator), vae.training
    vae.eval()
    totals = {"nll": 0.0, "recon": 0.0, "kl": 0.0}
    try:
        for r0 in range(0, x.shape[0], batch_size):
            xb = x[r0 : r0 + batch_size].to(next(vae.parameters()).dtype)
            sums = _batch_sums(vae, xb, r0, seed, samples, chunk, backend, unit_prior)
            for key in totals:
                totals[key] += float(sums[key].sum())
    finally:
        vae.train(was_training)
    n = x.shape[0]
    out = {k: v / n for k, v in totals.items()}
    out["elbo"] = out["recon"] - out["kl"]
    out["klzx"] = -out["nll"] - out["elbo"]
    return {**out, "n": n, "samples": samples}


@torch.no_grad()
def posterior_means(
    vae: nn.Module, x: torch.Tensor, *, samples: int = 1000, batch_size: int = 128, seed: int = 0
) -> torch.Tensor:
    """E_q[z|x] per x: (N, Z). The Gaussian mean, or a `samples`-sample average after an RNVP."""
    was_training = vae.training
    vae.eval()
    out = []
    try:
        for r0 in range(0, x.shape[0], batch_size):
            xb = x[r0 : r0 + batch_size]
            if vae.posterior_flow is None:
                out.append(vae.encode(xb)[0].double())
                continue
            total = torch.zeros(xb.shape[0], vae.cfg.z_dim, dtype=torch.float64, device=x.device)
            chunk = max(1, ROWS_PER_CHUNK // xb.shape[0])
            for s0 in range(0, samples, chunk):
                ns = min(chunk, samples - s0)
                eps = counter_normal(
                    seed, r0, xb.shape[0], s0, ns, vae.cfg.z_dim, device=x.device, dtype=xb.dtype
                )
                total += vae.posterior_sample(xb, eps)[0].double().sum(0)
            out.append(total / samples)
    finally:
        vae.train(was_training)
    return torch.cat(out)


def active_units(
    vae: nn.Module, x: torch.Tensor, *, samples: int = 1000, threshold: float = AU_THRESHOLD
) -> int:
    """Number of k with Var_x(E_q[z_k|x]) > threshold (Appendix B.3), over the rows of x."""
    means = posterior_means(vae, x, samples=samples)  # (N, Z) float64
    return reference_active_units(means.cpu().numpy(), threshold)[0]


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
    x = split_tensor(data, split, cfg.seed)[:limit]
    result = evaluate(vae, x, samples=samples, backend=backend)
    train_x = split_tensor(data, "train", cfg.seed)[:limit]
    result["active_units"] = active_units(vae, train_x, samples=samples)
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
