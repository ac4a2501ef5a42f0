"""Latent-space diagnostics of Appendix B.3: active units and the Reg[q(z)] regulariser."""

from __future__ import annotations

import numpy as np


def _as_matrix(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"{name} must be shaped (N, Z) with N >= 1, got {a.shape}")
    return a


def active_units(mean_z: np.ndarray, threshold: float = 0.01) -> tuple[int, np.ndarray]:
    """B.3 / Burda et al.: A_k = Var_x(E_q[z_k|x]); unit k is active when A_k > threshold.

    mean_z (N, Z) holds E_q[z|x_i] per data point; returns (count, variances (Z,)).
    """
    mean_z = _as_matrix(mean_z, "mean_z")
    variances = np.var(mean_z, axis=0)  # (Z,)
    return int(np.sum(variances > threshold)), variances


def reg_qz(z: np.ndarray) -> float:
    """B.3 Reg[q(z)] = 1/Dim(z) sum_k Mean[z_k]^2 + (Var[z_k] - 1)^2.

    z (N, Z): samples pooled over x ~ p*(x) and z ~ q(z|x); Mean/Var are over those N rows.
    """
    z = _as_matrix(z, "z")
    mean = np.mean(z, axis=0)  # (Z,)
    var = np.var(z, axis=0)  # (Z,)
    return float(np.mean(mean**2 + (var - 1.0) ** 2))
