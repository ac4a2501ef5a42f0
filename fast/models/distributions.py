"""Log-densities of the VAE in torch (Eqs. 1-5, Appendix B.3); the last axis is the event axis."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))^2), summed over the last axis: (..., D) -> (...)."""
    eps = (x - mean) * torch.exp(-log_std)
    return (-0.5 * eps.square() - log_std - _HALF_LOG_2PI).sum(-1)


def unit_gaussian_log_prob(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I), summed over the last axis: (..., D) -> (...)."""
    return (-0.5 * x.square() - _HALF_LOG_2PI).sum(-1)


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_d x_d l_d - softplus(l_d), Bernoulli logits (B.2): (..., D) -> (...).

    `x` broadcasts against `logits`, e.g. x (B, 784) with logits (S, B, 784).
    """
    # threshold 40, not torch's default 20: softplus(l) = l + log1p(e^-l) differs from l by
    # up to 2e-9 above 20, which float64 resolves (float64 agrees with l only from ~37 on)
    return (x * logits - F.softplus(logits, threshold=40.0)).sum(-1)


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x), dim)), max-shifted so it never overflows (the IW bound, Appendix B.3)."""
    m = x.amax(dim=dim, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    out = torch.log(torch.exp(x - m).mean(dim=dim, keepdim=True)) + m
    return out.squeeze(dim)
