"""The importance-weighted NLL (Appendix B.3) against the exact likelihood by quadrature.

For a DenseVAE with a 1- or 2-dimensional latent, log p(x) = log ∫ p(x|z) p(z) dz is computed
on a dense trapezoid grid (log-sum-exp of log integrand + log weights), with the Bernoulli
likelihood and the Gaussian prior written out here, independently of the reference. The grid
error is measured by halving the step. The S-sample IW estimate must then converge to it, lie
below it on average (a lower bound in expectation), and sit above the ELBO of the same samples.
Since log p(x) does not depend on q, convergence also checks the RNVP posterior density (Eq. B.1);
the RNVP prior density (Eq. 4) must integrate to one on the grid.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from vaeprior.reference.config import VAEConfig
from vaeprior.reference.dense_vae import decode_logits, init_params, prior_log_prob
from vaeprior.reference.distributions import log_mean_exp
from vaeprior.reference.objectives import elbo, iw_nll, log_weights

X_DIM, HIDDEN, B = 12, 16, 4
S_LIST = (1, 10, 100, 5000)
WEIGHT_SCALE = 0.5
REPLICATES = {1: 20000, 10: 2000, 100: 400, 5000: 8}


def trapezoid_grid(dim: int, half_width: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid points (n**dim, dim) on [-w, w]^dim and their log trapezoid weights (n**dim,)."""
    t = np.linspace(-half_width, half_width, n)
    w = np.full(n, t[1] - t[0])
    w[[0, -1]] /= 2
    if dim == 1:
        return t[:, None], np.log(w)
    zz = np.stack(np.meshgrid(t, t, indexing="ij"), axis=-1).reshape(-1, 2)
    return zz, np.log(np.outer(w, w)).ravel()


def log_prior_on_grid(params: dict, cfg: VAEConfig, z: np.ndarray) -> np.ndarray:
    if cfg.prior == "gaussian":  # written out: not the reference's function
        return -0.5 * np.sum(z**2, axis=-1) - 0.5 * z.shape[-1] * np.log(2 * np.pi)
    return prior_log_prob(params, cfg, z)  # Eq. 4, checked by `prior_mass` below


def exact_log_px(params: dict, cfg: VAEConfig, x: np.ndarray, half_width: float, n: int):
    """log ∫ p(x|z) p(z) dz for each row of x (B,), and log ∫ p(z) dz, by the trapezoid rule."""
    z, log_w = trapezoid_grid(cfg.z_dim, half_width, n)  # (N, Z), (N,)
    logits = decode_logits(params, cfg, z)  # (N, X)
    log_px_z = x @ logits.T - np.logaddexp(0, logits).sum(-1)  # (B, N): sum_d x_d l_d - softplus
    log_pz = log_prior_on_grid(params, cfg, z)  # (N,)
    return logsumexp(log_px_z + log_pz + log_w, axis=1), logsumexp(log_pz + log_w)


def make_model(z_dim: int, prior: str, posterior: str, seed: int):
    cfg = VAEConfig(
        x_dim=X_DIM, z_dim=z_dim, hidden=HIDDEN, prior=prior, posterior=posterior,
        flow_depth=2, flow_hidden=8,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng, zero_init=False)
    for k in params:  # small weights: a smooth posterior that a random encoder covers
        if k.startswith(("enc.", "dec.")) and k.endswith(".W"):
            params[k] = WEIGHT_SCALE * params[k]
    x = (rng.random((B, X_DIM)) < 0.5).astype(np.float64)
    return cfg, params, x, rng


def iw_replicates(params, cfg, x, rng, S: int, reps: int) -> np.ndarray:
    """log p-hat (-IW-NLL) of `reps` independent S-sample estimates per x: (reps, B).

    The replicates ride along the batch axis (x tiled), which batch invariance makes exact.
    """
    x_rep = np.tile(x, (reps, 1))  # (reps * B, X), row r * B + b
    eps = rng.standard_normal((S, reps * B, cfg.z_dim))
    return -iw_nll(params, cfg, x_rep, eps).reshape(reps, B)


def iw_with_standard_error(params, cfg, x, rng, S: int, log_px: np.ndarray):
    """One S-sample estimate of log p(x) per x, and its delta-method standard error
    std(w / p(x)) / sqrt(S), both (B,)."""
    eps = rng.standard_normal((S, B, cfg.z_dim))
    log_px_z, log_pz, log_qz = log_weights(params, cfg, x, eps)
    log_w = log_px_z + log_pz - log_qz  # (S, B)
    ratio = np.exp(log_w - log_px)  # w / p(x), mean 1
    return log_mean_exp(log_w, axis=0), ratio.std(axis=0) / np.sqrt(S)


CASES = [
    # (z_dim, prior, posterior, half_width, grid n, seed)
    (1, "gaussian", "gaussian", 9.0, 4001, 0),
    (2, "gaussian", "gaussian", 9.0, 301, 1),
    (2, "rnvp", "gaussian", 9.0, 301, 2),
    (2, "rnvp", "rnvp", 9.0, 301, 3),
]


@pytest.mark.parametrize(("z_dim", "prior", "posterior", "half_width", "n", "seed"), CASES)
def test_iw_nll_converges_to_quadrature(z_dim, prior, posterior, half_width, n, seed) -> None:
    cfg, params, x, rng = make_model(z_dim, prior, posterior, seed)
    log_px, _ = exact_log_px(params, cfg, x, half_width, n)
    log_px_fine, prior_mass_fine = exact_log_px(params, cfg, x, half_width, 2 * n - 1)
    quad_err = np.abs(log_px - log_px_fine).max()
    # grid error, measured by halving the step (O(h^2): the LeakyReLU kinks); the fine grid's
    # own error is about a third of it, far below the Monte Carlo tolerances used below
    assert quad_err < 2e-5, quad_err
    # the prior is a normalised density: a strong independent check of Eq. 4 for the RNVP prior
    assert abs(prior_mass_fine) < 1e-6, prior_mass_fine

    estimates = {S: iw_replicates(params, cfg, x, rng, S, REPLICATES[S]) for S in S_LIST}
    rmse = [np.sqrt(np.mean((estimates[S] - log_px_fine) ** 2)) for S in S_LIST]
    assert all(a > b for a, b in itertools.pairwise(rmse)), rmse  # error shrinks as S grows
    assert rmse[-1] < rmse[0] / 20, rmse

    # S = 5000 within 4 delta-method standard errors (estimated from the samples themselves),
    # and S = 50000 too, where the standard error is 0.02 nats at most
    for S, max_se in ((5000, 0.06), (50_000, 0.02)):
        est, se = iw_with_standard_error(params, cfg, x, rng, S, log_px_fine)
        assert np.all(se < max_se), (S, se)
        assert np.all(np.abs(est - log_px_fine) < 4 * se + quad_err), (S, est - log_px_fine, se)

    # a lower bound in expectation: E[log p-hat] <= log p(x) for every x (up to 3 standard
    # errors of the replicate mean); at S = 1 (the ELBO) the gap, KL(q(z|x) || p(z|x)), is
    # clearly significant (> 3 standard errors) for every x
    for S in (1, 10, 100):
        gap = log_px_fine - estimates[S].mean(0)  # (B,)
        sem = estimates[S].std(0) / np.sqrt(REPLICATES[S])
        assert np.all(gap > -3 * sem), (S, gap, sem)
        if S == 1:
            assert np.all(gap > 3 * sem), (gap, sem)

    # ELBO <= IW bound on the same samples (exact, Jensen), and ELBO(S=5000) < log p(x)
    eps = rng.standard_normal((5000, B, cfg.z_dim))
    lower = elbo(params, cfg, x, eps)
    assert np.all(lower <= -iw_nll(params, cfg, x, eps) + 1e-12)
    assert np.all(lower < log_px_fine)
