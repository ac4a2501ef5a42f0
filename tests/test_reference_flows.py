"""Real NVP reference (Appendix B.2): invertibility, log-dets vs finite-difference Jacobians,
ActNorm's data-dependent init, the DESIGN.md formula on a hand example, Eq. 4 / Eq. B.1."""

from __future__ import annotations

import numpy as np
import pytest

from vaeprior.reference.distributions import unit_gaussian_log_prob
from vaeprior.reference.flows import (
    ActNorm,
    CouplingLayer,
    FlowBlock,
    InvertibleDense,
    RealNVP,
    flow_posterior,
    flow_prior_log_prob,
)

FD_STEP = 1e-5
LOGDET_TOL = 1e-6
ROUNDTRIP_TOL = 1e-10


def fd_jacobian(f, x: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian J[n, i, j] = d f_i / d x_j at each row of x (N, D).

    The step is FD_STEP times the rms of x, so it scales with the inputs (the inverse of a
    contracting flow sees small y).
    """
    n, d = x.shape
    h = FD_STEP * np.sqrt(np.mean(x**2))
    step = h * np.eye(d)  # (D, D)
    plus = (x[:, None, :] + step).reshape(n * d, d)
    minus = (x[:, None, :] - step).reshape(n * d, d)
    diff = (f(plus)[0] - f(minus)[0]).reshape(n, d, -1) / (2 * h)  # (N, j, i)
    return np.transpose(diff, (0, 2, 1))


def fd_logdet(f, x: np.ndarray) -> np.ndarray:
    sign, logabsdet = np.linalg.slogdet(fd_jacobian(f, x))
    assert np.all(sign != 0)
    return logabsdet


def check_layer(layer, x: np.ndarray) -> float:
    """Round trip, log-det vs finite differences, log-det cancellation; returns the FD error."""
    y, ld = layer.forward(x)
    x_back, ld_inv = layer.inverse(y)
    scale = max(1.0, np.abs(x).max(), np.abs(y).max())
    np.testing.assert_allclose(x_back, x, rtol=0, atol=ROUNDTRIP_TOL * scale)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-12 * max(1.0, np.abs(ld).max()))
    assert ld.shape == x.shape[:-1]
    err = np.abs(fd_logdet(layer.forward, x) - ld).max()
    assert err < LOGDET_TOL, err
    # the inverse's log-det is that of the inverse map, at y
    err_inv = np.abs(fd_logdet(layer.inverse, y) - ld_inv).max()
    assert err_inv < LOGDET_TOL, err_inv
    return err


def random_coupling(d: int, rng: np.random.Generator, hidden: int = 16) -> CouplingLayer:
    dl, dr = d // 2, d - d // 2
    return CouplingLayer(
        rng.standard_normal((dl, hidden)) / np.sqrt(max(dl, 1)),
        0.3 * rng.standard_normal(hidden),
        0.3 * rng.standard_normal((hidden, dr)),
        0.3 * rng.standard_normal(dr),
        0.3 * rng.standard_normal((hidden, dr)),
        0.3 * rng.standard_normal(dr),
    )


@pytest.mark.parametrize("d", [2, 33, 40, 64])
def test_invertible_dense_general_matrix(d: int) -> None:
    rng = np.random.default_rng(d)
    W = rng.standard_normal((d, d))  # not orthogonal: log|det W| != 0
    layer = InvertibleDense(W)
    x = rng.standard_normal((3, d))
    check_layer(layer, x)
    _, ld = layer.forward(x)
    np.testing.assert_allclose(ld, np.log(np.abs(np.linalg.det(W))), rtol=1e-10)
    np.testing.assert_allclose(layer.forward(x)[0], x @ W, rtol=1e-14)


@pytest.mark.parametrize("d", [2, 33, 40, 64])
def test_coupling_layer(d: int) -> None:
    rng = np.random.default_rng(100 + d)
    check_layer(random_coupling(d, rng), rng.standard_normal((3, d)))


@pytest.mark.parametrize("d", [2, 33, 40, 64])
def test_actnorm_layer(d: int) -> None:
    rng = np.random.default_rng(200 + d)
    layer = ActNorm(0.5 * rng.standard_normal(d), rng.standard_normal(d))
    check_layer(layer, rng.standard_normal((3, d)))


@pytest.mark.parametrize("d", [2, 33, 40, 64])
def test_flow_block(d: int) -> None:
    rng = np.random.default_rng(300 + d)
    block = RealNVP.random(d, 1, rng, hidden=32, zero_init=False).blocks[0]
    assert isinstance(block, FlowBlock)
    check_layer(block, rng.standard_normal((3, d)))


@pytest.mark.parametrize("d", [2, 33, 40, 64])
@pytest.mark.parametrize("k", [0, 1, 5, 50])
def test_realnvp(d: int, k: int) -> None:
    rng = np.random.default_rng(1000 * k + d)
    flow = RealNVP.random(d, k, rng, hidden=256 if k <= 5 else 32, zero_init=False)
    n = 4 if k <= 5 else 2
    if k == 50:
        # 50 random blocks contract some directions by ~1e-4 (condition number ~1e4-1e5), which
        # leaves a FD check with no digits to spare; ActNorm's data-dependent init (as in
        # training) keeps the map well-conditioned. Random ActNorm parameters are tested at K<=5.
        flow.initialize(rng.standard_normal((256, d)))
    x = rng.standard_normal((n, d))
    check_layer(flow, x)
    if k == 0:
        y, ld = flow.forward(x)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(ld, 0.0)


def test_coupling_hand_example() -> None:
    """D = 2, H = 1, numbers worked by hand from DESIGN.md's formula (slope 0.2, shift 2)."""
    layer = CouplingLayer(
        A=np.array([[1.0]]),
        a=np.array([0.0]),
        S=np.array([[0.0]]),
        s0=np.array([-2.0]),  # s + 2 = 0 -> scale sigmoid(0) = 0.5
        T=np.array([[1.0]]),
        t0=np.array([0.0]),
    )
    y, ld = layer.forward(np.array([[-1.0, 4.0]]))
    # h = leaky_relu(-1) = -0.2, t = -0.2, y_r = 4 * 0.5 - 0.2 = 1.8
    np.testing.assert_allclose(y, [[-1.0, 1.8]], rtol=1e-15)
    np.testing.assert_allclose(ld, [np.log(0.5)], rtol=1e-15)


def test_block_matches_design_formula() -> None:
    """One block against DESIGN.md's formula written out with scipy-free NumPy primitives."""
    rng = np.random.default_rng(7)
    d, dl = 5, 2
    block = RealNVP.random(d, 1, rng, hidden=8, zero_init=False).blocks[0]
    c, an = block.coupling, block.actnorm
    x = rng.standard_normal((6, d))
    u = x @ block.dense.W
    h = np.maximum(u[:, :dl] @ c.A + c.a, 0.2 * (u[:, :dl] @ c.A + c.a))
    s, t = h @ c.S + c.s0, h @ c.T + c.t0
    v = np.concatenate([u[:, :dl], u[:, dl:] / (1 + np.exp(-(s + 2.0))) + t], axis=1)
    y_expected = (v + an.bias) * np.exp(an.log_scale)
    ld_expected = (
        np.linalg.slogdet(block.dense.W)[1]
        + np.sum(np.log(1 / (1 + np.exp(-(s + 2.0)))), axis=1)
        + np.sum(an.log_scale)
    )
    y, ld = block.forward(x)
    np.testing.assert_allclose(y, y_expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ld, ld_expected, rtol=1e-13, atol=1e-14)


def test_zero_init_block_is_design_init() -> None:
    """zero_init=True: W orthogonal, S, T, ... zero, so y = (x W) with y_r scaled by sigmoid(2)."""
    rng = np.random.default_rng(3)
    d = 6
    flow = RealNVP.random(d, 1, rng)
    b = flow.blocks[0]
    np.testing.assert_allclose(b.dense.W @ b.dense.W.T, np.eye(d), atol=1e-14)
    for name in ("a", "S", "s0", "T", "t0"):
        assert not np.any(getattr(b.coupling, name))
    assert b.coupling.A.shape == (d // 2, 256)
    limit = np.sqrt(6 / (d // 2 + 256))
    assert np.abs(b.coupling.A).max() <= limit
    x = rng.standard_normal((4, d))
    u = x @ b.dense.W
    y, ld = flow.forward(x)
    sig2 = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(y, np.concatenate([u[:, :3], sig2 * u[:, 3:]], 1), rtol=1e-13)
    np.testing.assert_allclose(ld, 3 * np.log(sig2), rtol=1e-12)


@pytest.mark.parametrize("d", [2, 33])
def test_actnorm_initialize_standardises_its_batch(d: int) -> None:
    rng = np.random.default_rng(d)
    x = 3.0 + 2.5 * rng.standard_normal((50, d))
    layer = ActNorm(np.zeros(d), np.zeros(d))
    layer.initialize(x)
    y, _ = layer.forward(x)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-13)
    var = x.var(0)
    np.testing.assert_allclose(y.var(0), var / (var + 1e-6), rtol=1e-12)  # the 1e-6 of the init
    np.testing.assert_allclose(y.var(0), 1.0, atol=1e-6)


def test_realnvp_initialize_standardises_every_block() -> None:
    rng = np.random.default_rng(11)
    d = 8
    flow = RealNVP.random(d, 3, rng, hidden=16, zero_init=False)
    x = 1.0 + 3.0 * rng.standard_normal((64, d))
    flow.initialize(x)
    for block in flow.blocks:
        x, _ = block.forward(x)
        np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(x.var(0), 1.0, atol=1e-5)


def test_params_roundtrip_and_missing_key() -> None:
    rng = np.random.default_rng(5)
    flow = RealNVP.random(4, 2, rng, hidden=8, zero_init=False)
    params = flow.to_params("prior")
    assert sorted(params) == sorted(
        f"prior.{k}.{n}"
        for k in range(2)
        for n in ("W", "A", "a", "S", "s0", "T", "t0", "log_scale", "bias")
    )
    again = RealNVP.from_params(params, "prior", 2)
    x = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(again.forward(x)[0], flow.forward(x)[0])
    del params["prior.1.T"]
    with pytest.raises(ValueError, match=r"prior\.1"):
        RealNVP.from_params(params, "prior", 2)


def test_wrong_dimension_is_a_clear_error() -> None:
    flow = RealNVP.random(4, 1, np.random.default_rng(0), hidden=8)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        flow.forward(np.zeros((2, 5)))


def test_leading_axes_are_batch_axes() -> None:
    """(S, B, D) inputs give the same numbers as the flattened (S*B, D) rows."""
    rng = np.random.default_rng(9)
    flow = RealNVP.random(6, 2, rng, hidden=8, zero_init=False)
    x = rng.standard_normal((3, 4, 6))
    y, ld = flow.forward(x)
    y_flat, ld_flat = flow.forward(x.reshape(12, 6))
    np.testing.assert_array_equal(y.reshape(12, 6), y_flat)
    np.testing.assert_array_equal(ld.reshape(12), ld_flat)


def test_prior_and_posterior_formulas() -> None:
    """Eq. 4 and Eq. B.1 against the change of variables written with a FD Jacobian."""
    rng = np.random.default_rng(4)
    d = 3
    flow = RealNVP.random(d, 2, rng, hidden=16, zero_init=False)
    z = rng.standard_normal((5, d))
    w, _ = flow.forward(z)
    expected = unit_gaussian_log_prob(w) + fd_logdet(flow.forward, z)
    np.testing.assert_allclose(flow_prior_log_prob(flow, z), expected, atol=1e-7)
    log_qw = rng.standard_normal(5)
    z_out, log_qz = flow_posterior(flow, z, log_qw)
    np.testing.assert_array_equal(z_out, w)
    np.testing.assert_allclose(log_qz, log_qw - fd_logdet(flow.forward, z), atol=1e-7)
