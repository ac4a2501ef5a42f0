"""Training objective of Appendix B.3: negative warm-up ELBO + L2 + optional Reg[q(z)].

loss = -mean_x[ log p(x|z) + β (log p(z) - log q(z|x)) ] + L2 (+ Reg[q(z)]), one z per x.
During "standard" stages (post-hoc / iterative 1a) p(z) is the unit Gaussian N(0, I) whatever
prior the model carries, so its flow is neither used nor trained.
"""

from __future__ import annotations

import torch
from torch import nn

L2_FACTOR = 1e-4  # Appendix B.3, on kernels of non-linear hidden layers only


def warmup_elbo(lw: dict[str, torch.Tensor], beta: float) -> torch.Tensor:
    """Per-x warm-up ELBO mean_s[log p(x|z) + β (log p(z) - log q(z|x))]: (B,)."""
    return (lw["log_px_z"] + beta * (lw["log_pz"] - lw["log_qz"])).mean(0)


def l2_penalty(vae: nn.Module, factor: float = L2_FACTOR) -> torch.Tensor:
    """factor * Σ ||W||² / 2 over `vae.l2_parameters()` (tf l2_regularizer convention)."""
    params = list(vae.l2_parameters())
    if not params:
        return torch.zeros(())
    return factor * 0.5 * sum(p.square().sum() for p in params)


def reg_qz(z: torch.Tensor) -> torch.Tensor:
    """Reg[q(z)] (Appendix B.3): mean_k [Mean[z_k]² + (Var[z_k] - 1)²] over the batch's z.

    z (S, B, Z): Mean and Var are taken over all samples and data points of the batch,
    Monte-Carlo estimates of E_{p*(x)} E_{q(z|x)}.
    """
    flat = z.reshape(-1, z.shape[-1])  # (S*B, Z)
    mean = flat.mean(0)
    var = (flat - mean).square().mean(0)
    return (mean.square() + (var - 1.0).square()).mean()


def training_loss(
    vae: nn.Module,
    x: torch.Tensor,
    eps: torch.Tensor,
    beta: float,
    *,
    unit_prior: bool = False,
    use_reg_qz: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scalar loss to minimise and detached statistics (elbo with β = 1, warm-up elbo, l2)."""
    lw = vae.log_weights(x, eps, unit_prior=unit_prior)
    welbo = warmup_elbo(lw, beta).mean()
    l2 = l2_penalty(vae).to(welbo)
    loss = -welbo + l2
    stats = {
        "welbo": welbo.detach(),
        "elbo": warmup_elbo(lw, 1.0).mean().detach(),
        "l2": l2.detach(),
    }
    if use_reg_qz:
        reg = reg_qz(lw["z"])
        loss = loss + reg
        stats["reg_qz"] = reg.detach()
    return loss, stats
