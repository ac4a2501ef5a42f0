"""Distributions and LogMeanExp (Appendix B.3) against closed forms and scipy.stats."""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import expit, log_expit

from vaeprior.reference.distributions import (
    bernoulli_log_prob,
    gaussian_log_prob,
    leaky_relu,
    log_mean_exp,
    log_sigmoid,
    sigmoid,
    softplus,
    unit_gaussian_log_prob,
)


def test_softplus_and_log_sigmoid_moderate_and_extreme() -> None:
    x = np.linspace(-30, 30, 61)
    np.testing.assert_allclose(softplus(x), np.log1p(np.exp(x)), rtol=1e-14)
    np.testing.assert_allclose(log_sigmoid(x), log_expit(x), rtol=1e-14)
    np.testing.assert_allclose(sigmoid(x), expit(x), rtol=1e-14)
    big = np.array([-1000.0, 1000.0])
    np.testing.assert_array_equal(softplus(big), [0.0, 1000.0])
    np.testing.assert_array_equal(log_sigmoid(big), [-1000.0, 0.0])
    np.testing.assert_array_equal(sigmoid(big), [0.0, 1.0])


def test_leaky_relu() -> None:
    np.testing.assert_array_equal(leaky_relu(np.array([-2.0, 0.0, 3.0]), 0.2), [-0.4, 0.0, 3.0])


def test_gaussian_log_prob_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    x, mean, log_std = rng.standard_normal((3, 4, 5))
    expected = stats.norm.logpdf(x, mean, np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(gaussian_log_prob(x, mean, log_std), expected, rtol=1e-13)
    np.testing.assert_allclose(unit_gaussian_log_prob(x), stats.norm.logpdf(x).sum(-1), rtol=1e-13)
    np.testing.assert_allclose(
        gaussian_log_prob(x, 0.0 * x, 0.0 * x), unit_gaussian_log_prob(x), rtol=1e-15
    )


def test_bernoulli_log_prob_matches_scipy_and_extremes() -> None:
    rng = np.random.default_rng(1)
    logits = 5 * rng.standard_normal((3, 7))
    x = (rng.random((3, 7)) < 0.5).astype(float)
    expected = stats.bernoulli.logpmf(x, expit(logits)).sum(-1)
    np.testing.assert_allclose(bernoulli_log_prob(x, logits), expected, rtol=1e-12)
    # |logit| = 800: naive log(sigmoid) would give -inf; the exact answers are 0 and -800
    out = bernoulli_log_prob(np.array([[1.0], [0.0]]), np.array([[800.0], [800.0]]))
    np.testing.assert_array_equal(out, [0.0, -800.0])


def test_log_mean_exp_moderate() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 3, 4))
    for axis in (0, 1, 2):
        expected = np.log(np.mean(np.exp(a), axis=axis))
        np.testing.assert_allclose(log_mean_exp(a, axis=axis), expected, rtol=1e-13, atol=1e-15)


def test_log_mean_exp_extreme_values() -> None:
    """Around +-1000 exp overflows / underflows; compare with the analytic answers."""
    for c in (1000.0, -1000.0):
        a = np.array([c, c + np.log(2.0), c + np.log(3.0), c + np.log(6.0)])
        # mean(exp(a)) = exp(c) * (1 + 2 + 3 + 6) / 4 = 3 exp(c)
        np.testing.assert_allclose(log_mean_exp(a, axis=0), c + np.log(3.0), rtol=1e-15)
    a = np.array([[1000.0, -1000.0], [1000.0, -1000.0]])  # (S=2, B=2)
    np.testing.assert_allclose(log_mean_exp(a, axis=0), [1000.0, -1000.0], rtol=1e-15)
    one_dominates = np.array([1000.0, 0.0, -1000.0])
    np.testing.assert_allclose(log_mean_exp(one_dominates, 0), 1000.0 - np.log(3.0), rtol=1e-15)
    assert np.all(np.isfinite(log_mean_exp(np.array([-1e4, 1e4]), 0)))
    assert log_mean_exp(np.array([-np.inf, -np.inf]), 0) == -np.inf
