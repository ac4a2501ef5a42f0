"""Samples of q(z|x), shared by evaluation and the analyses: one noise source, one iterator.

The noise is counter-based: eps[s, i, k] is a function of (seed, data row i, sample s, dim k)
only (splitmix64 hash + Box-Muller), so every result is independent of how rows and samples
are chunked and of the device, and a direct unchunked computation sees exactly the same ε.
`posterior_chunks` walks a data set in bounded (samples x rows) blocks of z ~ q(z|x) (Eq. B.1)
drawn from it; `posterior_means` and `active_units` (Appendix B.3, Table 8) are built on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from vaeprior.reference.metrics import active_units as count_active_units

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


def rows_per_chunk(vae: nn.Module) -> int:
    """Decoder rows (samples x images) one chunk may hold for this architecture and device.

    On CUDA 4x more: a chunk then fills every SM with the fused kernels' 32-128-row tiles
    (8,192 rows are only 64-128 tiles for 132 SMs) and still holds at most ~400 MB.
    """
    rows = ROWS_PER_CHUNK if vae.cfg.model == "dense" else CONV_ROWS_PER_CHUNK
    return 4 * rows if next(vae.parameters()).is_cuda else rows


@dataclass
class PosteriorChunk:
    """z ~ q(z|x) for data rows `rows` and sample indices `samples` of a walk over x."""

    rows: slice  # rows of x
    samples: slice  # sample indices s (noise counters)
    x: torch.Tensor  # (nb, 784) those rows, model dtype and device
    z: torch.Tensor  # (ns, nb, Z)
    log_qz: torch.Tensor  # (ns, nb) log q(z|x), Eq. B.1


@torch.no_grad()
def posterior_chunks(
    vae: nn.Module,
    x: torch.Tensor,
    samples: int,
    *,
    seed: int = 0,
    batch_size: int = 128,
    sample_chunk: int | None = None,
    row_offset: int = 0,
) -> Iterator[PosteriorChunk]:
    """Walk x (N, 784) `batch_size` rows at a time, `samples` z per row in sample chunks.

    Each chunk holds `sample_chunk` samples of its rows (default: as many as keep about
    `rows_per_chunk(vae)` z rows alive). Row i
    of x uses the noise counters of data row `row_offset + i`, so a walk over a slice sees the
    same ε as a walk over the whole set. x may be uint8 or bool: each batch is converted to the
    model's dtype on its device as it is used.
    """
    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be >= 1, got {samples}, {batch_size}")
    p = next(vae.parameters())
    x = torch.as_tensor(x)  # NumPy arrays too
    for r0 in range(0, x.shape[0], batch_size):
        xb = x[r0 : r0 + batch_size].to(p.device, p.dtype)
        nb = xb.shape[0]
        step = sample_chunk or max(1, rows_per_chunk(vae) // nb)
        for s0 in range(0, samples, step):
            ns = min(step, samples - s0)
            eps = counter_normal(
                seed, row_offset + r0, nb, s0, ns, vae.cfg.z_dim, device=p.device, dtype=p.dtype
            )
            z, log_qz = vae.posterior_sample(xb, eps)  # (ns, nb, Z), (ns, nb)
            yield PosteriorChunk(slice(r0, r0 + nb), slice(s0, s0 + ns), xb, z, log_qz)


@torch.no_grad()
def posterior_means(
    vae: nn.Module,
    x: torch.Tensor,
    *,
    samples: int = 1000,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """E_q[z|x] per x: (N, Z) float64. The Gaussian mean, or a `samples`-sample average of z =
    f_eta(w) after an RNVP posterior (the flow of the mean is not the mean of the flow)."""
    was_training = vae.training
    vae.eval()
    try:
        p = next(vae.parameters())
        x = torch.as_tensor(x)
        if vae.posterior_flow is None:
            return torch.cat(
                [
                    vae.encode(x[r0 : r0 + batch_size].to(p.device, p.dtype))[0].double()
                    for r0 in range(0, x.shape[0], batch_size)
                ]
            )
        total = torch.zeros(x.shape[0], vae.cfg.z_dim, dtype=torch.float64, device=p.device)
        bar = tqdm(total=x.shape[0], desc="active units", unit="image", disable=not progress)
        for c in posterior_chunks(vae, x, samples, seed=seed, batch_size=batch_size):
            total[c.rows] += c.z.double().sum(0)
            if c.samples.stop == samples:  # the batch's last sample chunk
                bar.update(c.x.shape[0])
        bar.close()
        return total / samples
    finally:
        vae.train(was_training)


def active_units(
    vae: nn.Module,
    x: torch.Tensor,
    *,
    samples: int = 1000,
    threshold: float = AU_THRESHOLD,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """A_k = Var_x E_q(z|x)[z_k] over the rows of x (Table 8, Appendix B.3; Burda et al.).

    Returns {"count": #{k: A_k > threshold}, "variances": A (Z,) NumPy, "threshold",
    "samples"}; the count is `vaeprior.reference.metrics.active_units` of the posterior means.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    means = posterior_means(vae, x, samples=samples, seed=seed, progress=progress)  # (N, Z)
    count, variances = count_active_units(means.cpu().numpy(), threshold)
    return {"count": count, "variances": variances, "threshold": threshold, "samples": samples}
