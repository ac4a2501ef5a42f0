"""Fused Real NVP kernel (`fast/kernels/flow.py`) against float64 truths (App. B.2, DESIGN.md).

On CPU every kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set below before triton
is imported); CUDA tests at paper sizes are skipped with the reason when no GPU is present.
Every launch allocates its outputs filled with NaN (POISON_OUTPUTS), so an element the kernel
forgets to write fails the comparisons.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_support import import_kernels, poison_and_interpret

fk = import_kernels("flow", "_realnvp_fwd_kernel")

SLOPE, SHIFT = 0.2, 2.0
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    poison_and_interpret(monkeypatch)


def make_params(K: int, D: int, H: int, dtype=torch.float64, seed: int = 0, s_scale: float = 1.0):
    """Fresh random parameters (never the zero init): orthogonal W, everything else non-zero."""
    g = torch.Generator().manual_seed(seed)
    Dl, Dr = D // 2, D - D // 2

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    W = torch.linalg.qr(r(K, D, D))[0] * (1 + 0.1 * r(K, 1, D))  # non-orthogonal: logdet != 0
    ps = [W, r(K, Dl, H, scale=0.3), r(K, H, scale=0.1), r(K, H, Dr, scale=0.1 * s_scale)]
    ps += [r(K, Dr, scale=s_scale), r(K, H, Dr, scale=0.1), r(K, Dr)]
    ps += [r(K, D, scale=0.1), r(K, D, scale=0.1)]
    return [p.to(dtype).requires_grad_() for p in ps]


def flow_f64(x, W, A, a, S, s0, T, t0, log_scale, bias):
    """DESIGN.md's Real NVP written out in float64 torch (independent of the kernel module)."""
    Dl = x.shape[1] // 2
    ld = torch.zeros(x.shape[0], dtype=torch.float64)
    for k in range(W.shape[0]):
        u = x @ W[k]
        pre = u[:, :Dl] @ A[k] + a[k]
        h = torch.where(pre > 0, pre, SLOPE * pre)
        z = h @ S[k] + s0[k] + SHIFT
        y_r = u[:, Dl:] * torch.sigmoid(z) + h @ T[k] + t0[k]
        x = (torch.cat([u[:, :Dl], y_r], 1) + bias[k]) * torch.exp(log_scale[k])
        ld = ld - torch.nn.functional.softplus(-z).sum(1) + log_scale[k].sum()
        ld = ld + torch.linalg.slogdet(W[k])[1]
    return x, ld


def run_with_grads(fn, x, params, gy, gld):
    y, ld = fn(x, *params)
    grads = torch.autograd.grad((y * gy).sum() + (ld * gld).sum(), [x, *params])
    return y, ld, grads


def fused(x, *params):
    return fk.realnvp_forward(x, *params, slope=SLOPE, scale_shift=SHIFT)


def eager(x, *params):
    return fk.realnvp_forward_torch(x, *params, slope=SLOPE, scale_shift=SHIFT)


def _inputs(K, D, H, N, dtype, seed=0, s_scale=1.0):
    params = make_params(K, D, H, dtype, seed, s_scale)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N, D, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    gy = torch.randn(N, D, generator=g, dtype=torch.float64)
    gld = torch.randn(N, generator=g, dtype=torch.float64)
    return x, params, gy, gld


def _as64(ts):
    return [t.detach().double().requires_grad_() for t in ts]


@pytest.mark.parametrize(
    ("K", "D", "H", "N"), [(1, 33, 256, 5), (3, 40, 256, 37), (3, 64, 256, 33), (1, 40, 32, 1)]
)
def test_forward_logdet_and_all_gradients_match_float64(K, D, H, N):
    x, params, gy, gld = _inputs(K, D, H, N, torch.float64)
    y, ld, grads = run_with_grads(fused, x, params, gy, gld)
    y_r, ld_r, grads_r = run_with_grads(flow_f64, x, params, gy, gld)
    torch.testing.assert_close(y, y_r, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld, ld_r, rtol=1e-10, atol=1e-10)
    for name, g, g_r in zip(["x", *fk._PARAM_NAMES], grads, grads_r, strict=True):
        torch.testing.assert_close(
            g, g_r, rtol=1e-9, atol=1e-9, msg=lambda m, n=name: f"d/d{n}: {m}"
        )


def test_float32_matches_float64_reference_to_1e5():
    x, params, gy, gld = _inputs(3, 40, 256, 37, torch.float32)
    y, ld, grads = run_with_grads(fused, x, params, gy.float(), gld.float())
    x64, p64 = _as64([x])[0], _as64(params)
    y_r, ld_r, grads_r = run_with_grads(flow_f64, x64, p64, gy, gld)
    assert y.dtype == torch.float32 and ld.dtype == torch.float32
    torch.testing.assert_close(y.double(), y_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ld.double(), ld_r, rtol=1e-5, atol=1e-4)
    for g, g_r in zip(grads, grads_r, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), g_r, rtol=1e-4, atol=1e-4)


def test_matches_numpy_reference_flow():
    ref = pytest.importorskip("vaeprior.reference.flows")
    K, D, N = 3, 33, 7
    x, params, _, _ = _inputs(K, D, 256, N, torch.float64, seed=3)
    named = {
        f"prior.{k}.{n}": p[k].detach().numpy()
        for n, p in zip(fk._PARAM_NAMES, params, strict=True)
        for k in range(K)
    }
    flow = ref.RealNVP.from_params(named, "prior", K, slope=SLOPE, scale_shift=SHIFT)
    y_np, ld_np = flow.forward(x.detach().numpy())
    with torch.no_grad():
        y, ld = fused(x, *params)
    np.testing.assert_allclose(y.numpy(), y_np, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ld.numpy(), ld_np, rtol=1e-10, atol=1e-10)


def test_inference_path_without_saved_activations_matches_training_path():
    x, params, _, _ = _inputs(3, 40, 64, 9, torch.float64, seed=5)
    with torch.no_grad():
        y0, ld0 = fused(x, *params)
    y1, ld1 = fused(x, *params)
    assert ld1.requires_grad
    torch.testing.assert_close(y0, y1.detach(), rtol=0, atol=0)
    torch.testing.assert_close(ld0, ld1.detach(), rtol=0, atol=0)


def test_weight_gradients_race_free_over_many_tiles():
    """300 rows = 10 tiles over 3 programs (each accumulates several tiles into its slice):
    two backward passes agree bit for bit, and both equal the float64 autograd truth."""
    x, params, gy, gld = _inputs(2, 33, 32, 300, torch.float64, seed=7)
    _, _, g1 = run_with_grads(fused, x, params, gy, gld)
    _, _, g2 = run_with_grads(fused, x, params, gy, gld)
    _, _, g_r = run_with_grads(flow_f64, x, params, gy, gld)
    for a, b, r in zip(g1, g2, g_r, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


def test_saturated_sigmoid_log_det_is_stable():
    """Scale pre-activations s + 2 of order +-60: log_sigmoid and its gradient stay exact."""
    x, params, gy, gld = _inputs(1, 40, 32, 6, torch.float64, seed=11, s_scale=60.0)
    _, ld, grads = run_with_grads(fused, x, params, gy, gld)
    _, ld_r, grads_r = run_with_grads(flow_f64, x, params, gy, gld)
    assert ld_r.abs().max() > 100  # really saturated
    torch.testing.assert_close(ld, ld_r, rtol=1e-12, atol=1e-10)
    for g, g_r in zip(grads, grads_r, strict=True):
        assert torch.isfinite(g).all()  # |S| ~ 6 amplifies rounding: scale atol by the gradient
        torch.testing.assert_close(g, g_r, rtol=1e-8, atol=1e-8 * float(g_r.abs().max()))


def test_bad_shapes_raise_clear_errors():
    x, params, _, _ = _inputs(1, 40, 48, 3, torch.float64)
    with pytest.raises(ValueError, match="power of two"):
        fused(x, *params)
    x, params, _, _ = _inputs(2, 40, 32, 3, torch.float64)
    with pytest.raises(ValueError, match="A must be stacked"):
        fused(x, params[0], params[1][:, :5], *params[2:])
    with pytest.raises(ValueError, match=r"x must be \(N, D\)"):
        fused(x[0], *params)


# ---------------------------------------------------------------------------------------------
# CUDA, paper sizes: |fast - ref| <= 2 |torch_same_dtype - ref| + atol against float64
# ---------------------------------------------------------------------------------------------
def _check_rule(fast, eager, ref, atol, what):
    err_fast = (fast.double() - ref).abs()
    bound = 2 * (eager.double() - ref).abs() + atol
    bad = err_fast > bound
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} elements, worst excess {(err_fast - bound).max():.3e}"
    )


@cuda
@pytest.mark.parametrize("D", [40, 64])
@pytest.mark.parametrize(
    ("dtype", "tf32", "atol"),
    [(torch.float32, False, 1e-5), (torch.float32, True, 1e-3), (torch.bfloat16, False, 5e-2)],
)
def test_cuda_paper_size_matches_float64_rule(D, dtype, tf32, atol, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)
    K, H, N = 20, 256, 16384
    x, params, gy, gld = _inputs(K, D, H, N, torch.float64, seed=D)
    dev = "cuda"
    x64 = x.detach().to(dev).requires_grad_()
    p64 = [p.detach().to(dev).requires_grad_() for p in params]
    gy, gld = gy.to(dev), gld.to(dev)
    y_r, ld_r, g_r = run_with_grads(eager, x64, p64, gy, gld)
    xs = x64.detach().to(dtype).requires_grad_()
    ps = [p.detach().to(dtype).requires_grad_() for p in p64]
    gys, glds = gy.to(dtype), gld.to(dtype)
    y_f, ld_f, g_f = run_with_grads(fused, xs, ps, gys, glds)
    y_e, ld_e, g_e = run_with_grads(eager, xs, ps, gys, glds)
    scale = ld_r.abs().max()
    _check_rule(y_f, y_e, y_r, atol, "y")
    _check_rule(ld_f, ld_e, ld_r, atol * scale, "logabsdet")
    for name, a, b, r in zip(["x", *fk._PARAM_NAMES], g_f, g_e, g_r, strict=True):
        _check_rule(a, b, r, atol * r.abs().max(), f"d/d{name}")


@cuda
def test_cuda_weight_gradients_deterministic():
    x, params, gy, gld = _inputs(20, 40, 256, 128_000 // 8, torch.float32, seed=1)
    x, params = (
        x.cuda().detach().requires_grad_(),
        [p.cuda().detach().requires_grad_() for p in params],
    )
    gy, gld = gy.float().cuda(), gld.float().cuda()
    _, _, g1 = run_with_grads(fused, x, params, gy, gld)
    _, _, g2 = run_with_grads(fused, x, params, gy, gld)
    for a, b in zip(g1, g2, strict=True):
        assert torch.equal(a, b)
