"""The analyses' estimator math (reference/analysis.py) against brute force and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from vaeprior.reference import analysis as A
from vaeprior.reference.distributions import gaussian_log_prob, log_mean_exp


def _brute_nn(q: np.ndarray, p: np.ndarray, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((q[:, None, :] - p[None, :, :]) ** 2).sum(-1))  # (M, N) by broadcasting
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    j = np.argmin(d, axis=1)
    return j, d[np.arange(len(q)), j]


@pytest.mark.parametrize("chunk", [1, 7, 50, 10**6])
def test_closest_pairs_match_brute_force(chunk: int) -> None:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(50, 5))
    idx, dist = A.nearest_neighbours(mu, chunk_elems=chunk)
    j, d = _brute_nn(mu, mu, exclude_self=True)
    np.testing.assert_array_equal(idx, j)
    np.testing.assert_allclose(dist, d, rtol=1e-12)
    assert np.all(idx != np.arange(50))


def test_nearest_query_against_other_set_and_duplicates() -> None:
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(37, 4))
    q = rng.normal(size=(9, 4))
    idx, dist = A.nearest_neighbours(q, pts, chunk_elems=11)
    j, d = _brute_nn(q, pts, exclude_self=False)
    np.testing.assert_array_equal(idx, j)
    np.testing.assert_allclose(dist, d, rtol=1e-12)
    # A duplicated point is its twin's neighbour at distance 0 (only i itself is excluded).
    dup = np.concatenate([pts, pts[:1]])
    idx, dist = A.nearest_neighbours(dup, chunk_elems=5)
    assert idx[0] == 37 and idx[37] == 0 and dist[0] == 0.0
    with pytest.raises(ValueError, match="need query"):
        A.nearest_neighbours(q, pts[:, :3])


def test_projection_std_sampled_matches_gaussian_closed_form() -> None:
    rng = np.random.default_rng(2)
    n, z_dim, s = 20, 6, 20000
    mu, log_std = rng.normal(size=(n, z_dim)), rng.normal(scale=0.7, size=(n, z_dim))
    nbr = mu + rng.normal(size=(n, z_dim))
    dist, u = A.unit_directions(mu, nbr)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(dist, np.linalg.norm(nbr - mu, axis=1), rtol=1e-12)
    z = mu + np.exp(log_std) * rng.normal(size=(s, n, z_dim))  # (S, N, Z)
    sampled = A.projection_std_sampled(z, u)
    exact = A.projection_std_closed_form(log_std, u)
    # relative error of a sample std is ~ 1/sqrt(2S) = 0.005; 4.5 sigma bound:
    np.testing.assert_allclose(sampled, exact, rtol=0.023)
    # Along axis k the projected std is sigma_k itself.
    e = np.zeros((n, z_dim))
    e[:, 3] = 1.0
    np.testing.assert_allclose(A.projection_std_closed_form(log_std, e), np.exp(log_std[:, 3]))


def test_normalized_distance_values() -> None:
    out = A.normalized_distance(
        np.array([2.0, 0.0, 3.0]), np.array([1.0, 0.0, 0.5]), [3.0, 0.0, 1.0]
    )
    np.testing.assert_allclose(out, [1.0, 0.0, 4.0])
    dist, u = A.unit_directions(np.zeros((1, 3)), np.zeros((1, 3)))
    assert dist[0] == 0.0 and np.all(u == 0.0)


def test_running_moments_equal_full_mean_and_variance() -> None:
    rng = np.random.default_rng(3)
    rows = rng.normal(loc=[1.0, -2.0, 5.0], scale=[0.1, 2.0, 30.0], size=(1003, 3))
    mom = A.RunningMoments(3)
    for start in range(0, 1003, 97):
        mom.update(rows[start : start + 97])
    assert mom.count == 1003
    np.testing.assert_allclose(mom.mean, rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(mom.var, rows.var(0), rtol=1e-10)


def test_gaussian_log_prob_matrix_matches_elementwise() -> None:
    rng = np.random.default_rng(4)
    w = rng.normal(size=(7, 5))
    mean, log_std = rng.normal(size=(11, 5)), rng.normal(scale=1.5, size=(11, 5))
    full = gaussian_log_prob(w[:, None, :], mean[None], log_std[None])  # (7, 11)
    np.testing.assert_allclose(A.gaussian_log_prob_matrix(w, mean, log_std), full, rtol=1e-10)


def test_running_log_mean_exp_equals_full() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(scale=200.0, size=(6, 101))  # large spread: needs the max shift
    acc = A.RunningLogMeanExp(6)
    for start in range(0, 101, 13):
        acc.update(a[:, start : start + 13])
    np.testing.assert_allclose(acc.value(), log_mean_exp(a, axis=1), rtol=1e-12)


def _kl_gauss(m: np.ndarray, s: np.ndarray, mp: np.ndarray, sp: np.ndarray) -> float:
    return float(np.sum(np.log(sp / s) + (s**2 + (m - mp) ** 2) / (2 * sp**2) - 0.5))


def test_aggregate_kl_single_gaussian_posterior_exact() -> None:
    """All q(z|x) equal N(m, s^2): q(z) = N(m, s^2) and Eq. B.4 is a Gaussian-Gaussian KL."""
    rng = np.random.default_rng(6)
    m, s = np.array([0.5, -1.0, 2.0]), np.array([0.3, 1.2, 0.8])
    mp, sp = np.array([0.0, 0.2, 1.0]), np.array([1.0, 1.5, 0.7])
    n_x, n_z = 40, 250
    z = m + s * rng.normal(size=(n_x * n_z, 3))  # z ~ q(z|x) for each x sample
    cross = A.gaussian_log_prob_matrix(z, np.tile(m, (n_x, 1)), np.tile(np.log(s), (n_x, 1)))
    acc = A.RunningLogMeanExp(z.shape[0])
    for start in range(0, n_x, 9):
        acc.update(cross[:, start : start + 9])
    log_p = gaussian_log_prob(z, mp, np.log(sp))
    est, se = A.aggregate_kl(acc.value(), log_p)
    exact = _kl_gauss(m, s, mp, sp)
    assert 0 < se < 0.05
    assert abs(est - exact) < 4 * se


def test_aggregate_kl_mixture_against_quadrature() -> None:
    """q(z) a 3-component 1-D mixture (one component per 'x'), p Gaussian: KL by quadrature."""
    rng = np.random.default_rng(7)
    means, stds = np.array([-2.0, 0.5, 1.5]), np.array([0.4, 1.0, 0.3])
    mp, sp = 0.3, 1.5
    n_z = 20000
    comp = np.repeat(np.arange(3), n_z)
    z = (means[comp] + stds[comp] * rng.normal(size=comp.size))[:, None]  # (3 n_z, 1)
    cross = A.gaussian_log_prob_matrix(z, means[:, None], np.log(stds)[:, None])
    acc = A.RunningLogMeanExp(z.shape[0])
    acc.update(cross[:, :2])
    acc.update(cross[:, 2:])
    est, se = A.aggregate_kl(acc.value(), gaussian_log_prob(z, [mp], [np.log(sp)]))

    def log_q(t: float) -> float:
        return float(
            log_mean_exp(
                gaussian_log_prob(np.full((3, 1), t), means[:, None], np.log(stds)[:, None])
            )
        )

    def integrand(t: float) -> float:
        lq = log_q(t)
        return np.exp(lq) * (lq - float(gaussian_log_prob([t], [mp], [np.log(sp)])))

    exact, err = integrate.quad(integrand, -12.0, 12.0, points=list(means), limit=200)
    assert err < 1e-8
    assert se < 0.01
    assert abs(est - exact) < 4 * se


def test_aggregate_kl_self_term_drift_with_many_separated_posteriors() -> None:
    """Table B.2 drift: narrow, separated q(z|x) give KL ~ E KL[q(z|x)||p] - log N."""
    rng = np.random.default_rng(8)
    n, n_z, s = 64, 20, 1e-3
    centres = rng.normal(size=(n, 2)) * 3.0
    z = np.repeat(centres, n_z, axis=0) + s * rng.normal(size=(n * n_z, 2))
    cross = A.gaussian_log_prob_matrix(z, centres, np.full((n, 2), np.log(s)))
    acc = A.RunningLogMeanExp(z.shape[0])
    acc.update(cross)
    est, _ = A.aggregate_kl(acc.value(), gaussian_log_prob(z, np.zeros(2), np.zeros(2)))
    mean_kl = np.mean([_kl_gauss(c, np.full(2, s), np.zeros(2), np.ones(2)) for c in centres])
    assert abs(est - (mean_kl - np.log(n))) < 0.05


def test_lowest_selects_k_smallest_sorted() -> None:
    rng = np.random.default_rng(9)
    v = rng.normal(size=1000)
    idx = A.lowest(v, 10)
    np.testing.assert_array_equal(idx, np.argsort(v)[:10])
    with pytest.raises(ValueError, match="k must be"):
        A.lowest(v, 0)
