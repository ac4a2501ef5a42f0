"""Elementwise non-linearities and the log-densities of the paper's distributions (float64).

Every log-density sums over the last axis, so `x (..., D)` gives `(...)`.
"""

from __future__ import annotations

import numpy as np

LOG_2PI = float(np.log(2.0 * np.pi))


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)), stable for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return np.logaddexp(0.0, x)


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log sigmoid(x) = -softplus(-x): the coupling layer's log-det term (Appendix B.2)."""
    return -softplus(-np.asarray(x, dtype=np.float64))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed as exp(log_sigmoid(x)) so it never overflows."""
    return np.exp(log_sigmoid(x))


def leaky_relu(x: np.ndarray, slope: float) -> np.ndarray:
    """LeakyReLU with negative slope `slope` (0.2 everywhere in this project, see config)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0.0, x, slope * x)


def gaussian_log_prob(x: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """log N(x; mean, diag(exp(log_std)^2)), summed over the last axis: q_phi(z|x) of Eq. 3."""
    x, mean, log_std = (np.asarray(a, dtype=np.float64) for a in (x, mean, log_std))
    eps = (x - mean) * np.exp(-log_std)  # (..., D) standardised
    return np.sum(-0.5 * eps**2 - log_std - 0.5 * LOG_2PI, axis=-1)


def unit_gaussian_log_prob(x: np.ndarray) -> np.ndarray:
    """log N(x; 0, I), summed over the last axis: the standard prior p(z) (Eq. 3)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sum(-0.5 * x**2 - 0.5 * LOG_2PI, axis=-1)


def bernoulli_log_prob(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """log p_theta(x|z) = sum_d x_d l_d - softplus(l_d) for Bernoulli logits l (Appendix B.2)."""
    x, logits = np.asarray(x, dtype=np.float64), np.asarray(logits, dtype=np.float64)
    return np.sum(x * logits - softplus(logits), axis=-1)


def log_mean_exp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """LogMeanExp of Appendix B.3: f_max + log(1/L sum_j exp(f_j - f_max)), `axis` removed."""
    a = np.asarray(a, dtype=np.float64)
    a_max = np.max(a, axis=axis, keepdims=True)  # f_max
    a_max = np.where(np.isfinite(a_max), a_max, 0.0)  # all -inf: give -inf, not nan
    with np.errstate(divide="ignore"):  # log(0) = -inf is the right answer there
        out = a_max + np.log(np.mean(np.exp(a - a_max), axis=axis, keepdims=True))
    return np.squeeze(out, axis=axis)
