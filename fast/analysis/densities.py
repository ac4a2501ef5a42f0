"""Building blocks of the analyses: q(z|x) of all pairs, aggregate posterior q(z), decoded means.

The heavy sampling happens here in torch, in chunks of a bounded number of rows; the estimator
math is `vaeprior.reference.analysis` (NumPy float64).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vaeprior.fast.analysis.common import Array, bar, spans, tensor, to_numpy
from vaeprior.reference import analysis as ref


@torch.no_grad()
def encode_all(vae: torch.nn.Module, x: Array, batch: int = 1024) -> tuple[Array, Array]:
    """Parameters of q(w|x) for all rows: x (N, 784) -> mean, log_std (N, Z) float64."""
    means, log_stds = [], []
    for a, b in spans(len(x), batch):
        m, s = vae.encode(tensor(x[a:b], vae))
        means.append(to_numpy(m))
        log_stds.append(to_numpy(s))
    return np.concatenate(means), np.concatenate(log_stds)


def _gaussian_matrix(w: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(w_m; mean_n, sigma_n^2): (M, N) float64, as `ref.gaussian_log_prob_matrix`."""
    w, mean, log_std = w.double(), mean.double(), log_std.double()
    prec = torch.exp(-2.0 * log_std)  # (N, Z)
    quad = (w * w) @ prec.T - 2.0 * w @ (mean * prec).T + (mean * mean * prec).sum(1)
    const = log_std.sum(1) + 0.5 * w.shape[1] * math.log(2.0 * math.pi)  # (N,)
    return -0.5 * quad - const[None, :]


def _posterior_inverse(vae: torch.nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w = f_eta^{-1}(z) and log|det df_eta^{-1}/dz| (M,) float64; identity for a Gaussian q."""
    if vae.posterior_flow is None:
        return z, z.new_zeros(z.shape[0], dtype=torch.float64)
    w, ld = vae.posterior_flow.inverse(z)
    return w, ld.double()


@torch.no_grad()
def posterior_log_prob_matrix(
    vae: torch.nn.Module, z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log q(z_m | x'_n) for every pair (Eq. B.1): z (M, Z), mean/log_std (N, Z) -> (M, N) float64.

    With an RNVP posterior, w = f_eta^{-1}(z) and log q(z|x') = log q(w|x') + log|det f^{-1}|;
    the flow does not depend on x', so it runs once per z.
    """
    w, ld = _posterior_inverse(vae, z)
    return _gaussian_matrix(w, mean, log_std) + ld[:, None]


@torch.no_grad()
def log_aggregate_posterior(
    vae: torch.nn.Module,
    z: torch.Tensor,
    mean: Array | torch.Tensor,
    log_std: Array | torch.Tensor,
    *,
    chunk_elems: int = ref.DEFAULT_CHUNK_ELEMS,
    progress: bool = False,
) -> Array:
    """log q(z) = LogMeanExp_n log q(z|x'_n) over all N parameter rows (Eq. B.4): z (M, Z) -> (M,).

    Streams blocks of at most `chunk_elems` pairs; the running log-sum-exp is the reference's
    `RunningLogMeanExp`. The posterior flow's log-det does not depend on x', so it is added
    once per z after the reduction.
    """
    n = len(mean)
    mean_t, log_std_t = tensor(mean, vae), tensor(log_std, vae)
    m_rows = max(1, min(len(z), int(math.sqrt(chunk_elems))))
    n_rows = max(1, chunk_elems // m_rows)
    out = []
    blocks = list(spans(len(z), m_rows))
    for a, b in bar(blocks, len(blocks), "log q(z)", progress):
        w, ld = _posterior_inverse(vae, z[a:b])
        acc = ref.RunningLogMeanExp(b - a)
        for c, d in spans(n, n_rows):
            block = _gaussian_matrix(w, mean_t[c:d], log_std_t[c:d])  # (Mc, Nc)
            acc.update_logsumexp(to_numpy(torch.logsumexp(block, dim=1)), d - c)
        out.append(acc.value() + to_numpy(ld))
    return np.concatenate(out)


@torch.no_grad()
def decode_means(
    vae: torch.nn.Module,
    z: torch.Tensor,
    generator: torch.Generator | None = None,
    x: torch.Tensor | None = None,
) -> Array:
    """Bernoulli means of p(x|z): z (N, Z) -> (N, 784) in [0, 1].

    For PixelVAE the decoder is autoregressive: x (given, or sampled pixel by pixel with
    `vae.sample_x`) fixes the context, and the returned means are each pixel's conditional
    probability given the pixels before it. Other decoders ignore x.
    """
    if vae.decoder.pixel is None:
        x = None
    elif x is None:
        x = vae.sample_x(z, generator)
    return to_numpy(torch.sigmoid(vae.decoder_logits(z, x)))
