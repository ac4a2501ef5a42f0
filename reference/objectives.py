"""Training objectives and evaluation estimators (Eqs. 1-5, Appendix B.3), all per x.

Every estimator is a Monte Carlo average over the S noise draws `eps (S, B, Z)` given as an
argument, so the fast path can be fed identical noise. Returned arrays are `(B,)`.
"""

from __future__ import annotations

import numpy as np

from .config import VAEConfig
from .dense_vae import Params, decode_logits, posterior_sample, prior_log_prob
from .distributions import bernoulli_log_prob, log_mean_exp


def log_weights(
    params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log p(x|z), log p(z), log q(z|x) at z = z(eps), each (S, B)."""
    x = np.asarray(x, dtype=np.float64)  # (B, X)
    z, log_qz = posterior_sample(params, cfg, x, eps)  # (S, B, Z), (S, B)
    log_px_z = bernoulli_log_prob(x, decode_logits(params, cfg, z))  # (S, B, X) -> (S, B)
    return log_px_z, prior_log_prob(params, cfg, z), log_qz


def elbo(params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Eq. 3 / Eq. 5: mean_s [log p(x|z) + log p(z) - log q(z|x)]."""
    return warmup_elbo(params, cfg, x, eps, beta=1.0)


def warmup_elbo(
    params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray, beta: float
) -> np.ndarray:
    """B.3 warm-up ELBO: mean_s [log p(x|z) + beta (log p(z) - log q(z|x))]."""
    log_px_z, log_pz, log_qz = log_weights(params, cfg, x, eps)
    return np.mean(log_px_z + beta * (log_pz - log_qz), axis=0)


def iw_nll(params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """B.3 NLL: -LogMeanExp_s [log p(x|z) + log p(z) - log q(z|x)] (importance weighted)."""
    log_px_z, log_pz, log_qz = log_weights(params, cfg, x, eps)
    return -log_mean_exp(log_px_z + log_pz - log_qz, axis=0)


def reconstruction(params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """B.3 reconstruction term: mean_s log p(x|z)."""
    return evaluate(params, cfg, x, eps)["recon"]


def kl(params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """B.3 KL estimate: mean_s [log q(z|x) - log p(z)] (Table 7 "kl")."""
    return evaluate(params, cfg, x, eps)["kl"]


def klzx(params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Table 7 "klz|x" = KL(q(z|x) || p(z|x)) = log p(x) - ELBO, estimated as (-NLL) - ELBO."""
    return evaluate(params, cfg, x, eps)["klzx"]


def evaluate(
    params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray
) -> dict[str, np.ndarray]:
    """All B.3 metrics from one set of log-weights: nll, elbo, recon, kl, klzx, each (B,)."""
    log_px_z, log_pz, log_qz = log_weights(params, cfg, x, eps)  # (S, B) each
    log_w = log_px_z + log_pz - log_qz  # (S, B)
    nll = -log_mean_exp(log_w, axis=0)
    lower = np.mean(log_w, axis=0)
    return {
        "nll": nll,
        "elbo": lower,
        "recon": np.mean(log_px_z, axis=0),
        "kl": np.mean(log_qz - log_pz, axis=0),
        "klzx": -nll - lower,
    }
