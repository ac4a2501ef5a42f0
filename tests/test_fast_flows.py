"""Torch Real NVP (Appendix B.2): inverses, log-dets against autograd Jacobians, ActNorm state."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from vaeprior.fast.models import flows
from vaeprior.fast.models.flows import ActNorm, RealNVP


def random_flow(dim: int, depth: int, seed: int, dtype=torch.float64, hidden: int = 16) -> RealNVP:
    """A RealNVP whose every parameter is non-trivial (the zero-initialised ones ~ N(0, 0.1^2))."""
    g = torch.Generator().manual_seed(seed)
    flow = RealNVP(dim, depth, hidden=hidden, generator=g).to(dtype)
    with torch.no_grad():
        for block in flow.blocks:
            for name in ("a", "S", "s0", "T", "t0", "log_scale", "bias"):
                p = block.param(name)
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=dtype))
            block.actnorm.initialized.fill_(True)
    return flow


def jacobian_logdets(flow: RealNVP, x: torch.Tensor) -> torch.Tensor:
    """log|det df/dx| of each row from the autograd Jacobian and slogdet: (N,)."""
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda r: flow(r[None])[0][0], row)  # (D, D)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


@pytest.mark.parametrize("dim", [2, 33, 40])
@pytest.mark.parametrize("depth", [0, 1, 5])
def test_round_trip_and_logdet_match_autograd_float64(dim: int, depth: int) -> None:
    flow = random_flow(dim, depth, seed=dim * 10 + depth)
    x = torch.randn(4, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, ld = flow(x)
    x_back, ld_inv = flow.inverse(y)
    assert y.shape == x.shape and ld.shape == (4,)
    torch.testing.assert_close(x_back, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, jacobian_logdets(flow, x), atol=1e-10, rtol=0)
    if depth == 0:
        assert torch.equal(y, x) and torch.equal(ld, torch.zeros(4, dtype=torch.float64))


def test_deep_flow_k50_logdet_matches_autograd_float64() -> None:
    flow = random_flow(33, 50, seed=50)
    x = torch.randn(2, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y, ld = flow(x)
    torch.testing.assert_close(flow.inverse(y)[0], x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld, jacobian_logdets(flow, x), atol=1e-10, rtol=0)


def test_deep_flow_k50_round_trip_float32() -> None:
    """A trained-like K=50 flow: coupling weights ~ N(0, 0.03^2), ActNorms data-initialised.

    (With N(0, 0.1^2) weights the sigmoid scales reach 1e-3 and the float32 round trip
    degrades to ~1e-3 by conditioning alone; float64 above stays at 1e-10.)
    """
    g = torch.Generator().manual_seed(51)
    flow = RealNVP(40, 50, hidden=256, generator=g)
    with torch.no_grad():
        for block in flow.blocks:
            for name in ("a", "S", "s0", "T", "t0"):
                p = block.param(name)
                p.copy_(0.03 * torch.randn(p.shape, generator=g))
    x = torch.randn(256, 40, generator=g)
    flow(x)  # ActNorm data-dependent init (training mode)
    y, ld = flow(x)
    x_back, ld_inv = flow.inverse(y)
    err = (x_back - x).abs().max().item()
    assert err <= 1e-4, f"float32 K=50 round trip error {err}"
    torch.testing.assert_close(ld_inv, -ld, atol=1e-3, rtol=1e-5)


def test_leading_dims_match_flattened_rows() -> None:
    flow = random_flow(7, 3, seed=4)
    w = torch.randn(3, 5, 7, dtype=torch.float64)  # (S, B, D)
    y, ld = flow(w)
    y_flat, ld_flat = flow(w.reshape(15, 7))
    assert y.shape == (3, 5, 7) and ld.shape == (3, 5)
    torch.testing.assert_close(y.reshape(15, 7), y_flat, atol=1e-14, rtol=0)
    torch.testing.assert_close(ld.reshape(15), ld_flat, atol=1e-14, rtol=0)


def test_inverse_then_forward_is_identity() -> None:
    flow = random_flow(33, 5, seed=5)
    y = torch.randn(6, 33, dtype=torch.float64)
    x, ld_inv = flow.inverse(y)
    y_back, ld = flow(x)
    torch.testing.assert_close(y_back, y, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, -ld_inv, atol=1e-12, rtol=0)


def test_coupling_matches_design_formula() -> None:
    """One block against DESIGN.md's straight-line formula, with the paper's Dense[256]."""
    flow = random_flow(9, 1, seed=6, hidden=256)
    b = flow.blocks[0]
    x = torch.randn(5, 9, dtype=torch.float64)
    u = x @ b.dense.W
    h = F.leaky_relu(u[:, :4] @ b.coupling.A + b.coupling.a, 0.2)
    s = h @ b.coupling.S + b.coupling.s0 + 2.0
    t = h @ b.coupling.T + b.coupling.t0
    v = torch.cat([u[:, :4], u[:, 4:] * torch.sigmoid(s) + t], dim=1)
    y_expected = (v + b.actnorm.bias) * torch.exp(b.actnorm.log_scale)
    ld_expected = (
        torch.linalg.slogdet(b.dense.W)[1]
        + torch.log(torch.sigmoid(s)).sum(1)
        + b.actnorm.log_scale.sum()
    )
    y, ld = flow(x)
    torch.testing.assert_close(y, y_expected, atol=1e-13, rtol=0)
    torch.testing.assert_close(ld, ld_expected, atol=1e-12, rtol=0)


def test_init_is_orthogonal_glorot_and_zero() -> None:
    flow = RealNVP(12, 2, hidden=256, generator=torch.Generator().manual_seed(0))
    b = flow.blocks[0]
    torch.testing.assert_close(b.dense.W @ b.dense.W.T, torch.eye(12), atol=1e-5, rtol=0)
    bound = (6.0 / (6 + 256)) ** 0.5
    assert b.coupling.A.abs().max() <= bound and b.coupling.A.abs().max() > 0.9 * bound
    for name in ("a", "S", "s0", "T", "t0", "log_scale", "bias"):
        assert torch.count_nonzero(b.param(name)) == 0, name
    assert not flow.initialized()


def test_actnorm_initialises_on_first_training_batch_only() -> None:
    g = torch.Generator().manual_seed(7)
    norm = ActNorm(6).double()
    x = 3.0 + 2.5 * torch.randn(200, 6, dtype=torch.float64, generator=g)
    norm.eval()
    y_eval, _ = norm(x)
    assert torch.equal(y_eval, x) and not bool(norm.initialized)  # eval mode: no init
    norm.train()
    y, ld = norm(x)
    assert bool(norm.initialized)
    torch.testing.assert_close(y.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
    var = x.var(0, unbiased=False)
    torch.testing.assert_close(y.var(0, unbiased=False), var / (var + 1e-6), atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, torch.full((200,), -0.5 * torch.log(var + 1e-6).sum().item(),
                                              dtype=torch.float64), atol=1e-12, rtol=0)  # fmt: skip
    before = norm.state_dict()
    norm(x * 10.0 + 1.0)  # a second batch must not re-initialise
    for k, v in norm.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_flow_actnorm_gives_each_block_unit_statistics() -> None:
    flow = RealNVP(10, 3, hidden=32, generator=torch.Generator().manual_seed(8)).double()
    z = 5.0 + 3.0 * torch.randn(500, 10, dtype=torch.float64)
    y, _ = flow(z)
    assert flow.initialized()
    torch.testing.assert_close(y.mean(0), torch.zeros(10, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(10, dtype=torch.float64),
                               atol=1e-5, rtol=0)  # fmt: skip


def test_actnorm_initialised_state_survives_state_dict_round_trip() -> None:
    flow = RealNVP(8, 3, hidden=16, generator=torch.Generator().manual_seed(9))
    flow.train()
    flow(2.0 + torch.randn(64, 8))  # data-dependent init
    buf = io.BytesIO()
    torch.save(flow.state_dict(), buf)
    buf.seek(0)
    fresh = RealNVP(8, 3, hidden=16, generator=torch.Generator().manual_seed(10))
    assert not fresh.initialized()
    fresh.load_state_dict(torch.load(buf))
    assert fresh.initialized()
    fresh.train()
    other = 7.0 + 4.0 * torch.randn(64, 8)
    y_fresh, ld_fresh = fresh(other)  # must NOT re-initialise on this batch
    y_orig, ld_orig = flow(other)
    torch.testing.assert_close(y_fresh, y_orig, atol=0, rtol=0)
    torch.testing.assert_close(ld_fresh, ld_orig, atol=0, rtol=0)
    for k, v in flow.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_stacked_params_layout_and_gradient() -> None:
    flow = random_flow(9, 4, seed=11, hidden=16)
    p = flow.stacked_params()
    shapes = {"W": (4, 9, 9), "A": (4, 4, 16), "a": (4, 16), "S": (4, 16, 5), "s0": (4, 5),
              "T": (4, 16, 5), "t0": (4, 5), "log_scale": (4, 9), "bias": (4, 9)}  # fmt: skip
    assert {k: tuple(v.shape) for k, v in p.items()} == shapes
    assert torch.equal(p["S"][2], flow.blocks[2].coupling.S)
    p["A"][3].sum().backward()
    assert torch.equal(flow.blocks[3].coupling.A.grad, torch.ones(4, 16, dtype=torch.float64))
    empty = RealNVP(9, 0, hidden=128).stacked_params()
    assert tuple(empty["W"].shape) == (0, 9, 9) and tuple(empty["T"].shape) == (0, 128, 5)


def _design_forward(x, W, A, a, S, s0, T, t0, log_scale, bias, *, slope, scale_shift):
    """DESIGN.md's block formula over stacked parameters: stands in for the Triton kernel."""
    ld = torch.zeros(x.shape[0], dtype=x.dtype)
    dl = A.shape[1]
    for k in range(W.shape[0]):
        u = x @ W[k]
        h = F.leaky_relu(u[:, :dl] @ A[k] + a[k], slope)
        s = h @ S[k] + s0[k] + scale_shift
        v = torch.cat([u[:, :dl], u[:, dl:] * torch.sigmoid(s) + h @ T[k] + t0[k]], dim=1)
        x = (v + bias[k]) * torch.exp(log_scale[k])
        ld = ld + torch.linalg.slogdet(W[k])[1] + F.logsigmoid(s).sum(1) + log_scale[k].sum()
    return x, ld


def test_triton_backend_hook_calls_kernel_with_stacked_params(monkeypatch) -> None:
    calls = []

    def fake_kernel(x, **kw):
        calls.append(x.shape)
        return _design_forward(x, **kw)

    monkeypatch.setattr(flows, "_load_triton_forward", lambda: fake_kernel)
    flow = random_flow(11, 3, seed=12)
    w = torch.randn(2, 3, 11, dtype=torch.float64)
    flow.backend = "torch"
    y_torch, ld_torch = flow(w)
    assert not calls
    flow.backend = "triton"
    y, ld = flow(w)
    assert calls == [(6, 11)]  # flattened rows
    torch.testing.assert_close(y, y_torch, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, ld_torch, atol=1e-12, rtol=0)
    flow.backend = "auto"  # CPU input: the torch path
    flow(w)
    assert len(calls) == 1


def test_triton_backend_waits_for_actnorm_init_and_falls_back(monkeypatch) -> None:
    def failing_kernel(x, **kw):
        raise AssertionError("kernel must not run before ActNorm init")

    monkeypatch.setattr(flows, "_load_triton_forward", lambda: failing_kernel)
    flow = RealNVP(6, 2, hidden=8)
    flow.backend = "triton"
    flow(torch.randn(16, 6))  # initialises through the torch path
    assert flow.initialized()
    monkeypatch.setattr(flows, "_load_triton_forward", lambda: None)  # kernel not importable
    y, ld = flow(torch.randn(4, 6))
    assert y.shape == (4, 6) and ld.shape == (4,)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="depth"):
        RealNVP(4, -1)
    flow = RealNVP(4, 1)
    with pytest.raises(ValueError, match="last dimension 4"):
        flow(torch.randn(3, 5))
    flow.backend = "cuda-please"
    with pytest.raises(ValueError, match="backend"):
        flow(torch.randn(3, 4))


@pytest.mark.cuda
def test_triton_backend_matches_torch_on_cuda() -> None:
    """The fused kernel (backend "auto" on a float32 CUDA input) against the torch path."""
    if not torch.cuda.is_available() or flows._load_triton_forward() is None:
        pytest.skip("needs a CUDA GPU and an importable vaeprior.fast.kernels.flow")
    g = torch.Generator().manual_seed(13)
    flow = RealNVP(40, 20, generator=g)
    with torch.no_grad():
        for block in flow.blocks:
            for name in ("a", "S", "s0", "T", "t0"):
                p = block.param(name)
                p.copy_(0.03 * torch.randn(p.shape, generator=g))
    flow = flow.cuda()
    z = torch.randn(3, 50, 40, device="cuda")
    flow(z)  # ActNorm init (torch path)
    results = {}
    for backend in ("torch", "auto"):
        flow.backend = backend
        flow.zero_grad()
        y, ld = flow(z)
        (y.square().sum() + ld.sum()).backward()
        results[backend] = (y, ld, flow.blocks[0].coupling.A.grad.clone())
    for a, b in zip(results["auto"], results["torch"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
