"""Fused decoder head + Bernoulli log-lik + log-mean-exp (`fast/kernels/iw_nll.py`, App. B.3).

Truths: float64 torch written here (full logits, logsumexp), the NumPy reference
(`vaeprior.reference.distributions`) when importable, and torch autograd for the gradients.
On CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1 set before triton is
imported); outputs are NaN-poisoned before each launch so unwritten elements fail. The conv
head uses C = 4 channels on CPU (interpreter speed) and C = 32 on CUDA.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from kernel_support import import_kernels, poison_and_interpret

ik = import_kernels("iw_nll", "_loglik_fwd_kernel")

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
F = torch.nn.functional


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    poison_and_interpret(monkeypatch)


def make(S, B, H, *, conv=False, dtype=torch.float64, seed=0, offset=0.0, device="cpu"):
    """Fresh random head, hidden rows, binary x and (S, B) log p(z), log q(z|x) around `offset`."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(device)

    if conv:
        h, W, b = r(S * B, H, 28, 28), r(1, H, 1, 1, scale=0.5), r(1)
    else:
        h, W, b = r(S * B, H), r(784, H, scale=0.3), r(784)
    x = (torch.rand(B, 784, generator=g, dtype=torch.float64) < 0.4).double().to(device)
    lpz, lqz = r(S, B, scale=3) + offset, r(S, B, scale=3) - offset
    h, W, b = (t.to(dtype).requires_grad_() for t in (h, W, b))
    return h, W, b, x.to(dtype), lpz.to(dtype), lqz.to(dtype)


def loglik_f64(h, W, b, x):
    """(S*B,) log p(x|z) with the full logits (DESIGN.md decoder output), float64."""
    if h.dim() == 4:
        logits = (h * W.reshape(1, -1, 1, 1)).sum(1).reshape(h.shape[0], 784) + b
    else:
        logits = h @ W.T + b
    xr = x.repeat(h.shape[0] // x.shape[0], 1)
    return (xr * logits - F.softplus(logits)).sum(1)


def iw_nll_f64(h, W, b, x, lpz, lqz):
    S, B = lpz.shape
    log_w = loglik_f64(h, W, b, x).reshape(S, B) + lpz - lqz
    return -(torch.logsumexp(log_w, 0) - math.log(S)), log_w


def _grads(fn, h, W, b, x, g):
    ll = fn(h, W, b, x)
    return ll, torch.autograd.grad((ll * g).sum(), [h, W, b])


@pytest.mark.parametrize(("S", "B"), [(1, 1), (7, 5)])
@pytest.mark.parametrize("conv", [False, True])
def test_bernoulli_loglik_and_gradients_match_float64(S, B, conv):
    h, W, b, x, _, _ = make(S, B, 4 if conv else 32, conv=conv, seed=S + B)
    g = torch.randn(S * B, dtype=torch.float64)
    fn = ik.bernoulli_loglik_conv1x1 if conv else ik.bernoulli_loglik
    ll, grads = _grads(fn, h, W, b, x, g)
    ll_r, grads_r = _grads(loglik_f64, h, W, b, x, g)
    torch.testing.assert_close(ll, ll_r, rtol=1e-12, atol=1e-10)
    for name, a, r in zip("hWb", grads, grads_r, strict=True):
        torch.testing.assert_close(
            a, r, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"d/d{n}: {m}"
        )


def test_bernoulli_loglik_float32_accumulates_weight_grads_in_float32():
    h, W, b, x, _, _ = make(7, 5, 32, dtype=torch.float32, seed=1)
    g = torch.randn(35)
    ll, grads = _grads(ik.bernoulli_loglik, h, W, b, x, g)
    h64, W64, b64 = (t.detach().double().requires_grad_() for t in (h, W, b))
    ll_r, grads_r = _grads(loglik_f64, h64, W64, b64, x.double(), g.double())
    torch.testing.assert_close(ll.double(), ll_r, rtol=1e-5, atol=1e-3)
    for a, r in zip(grads, grads_r, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), r, rtol=1e-5, atol=1e-4)


def test_bernoulli_loglik_matches_numpy_reference():
    dist = pytest.importorskip("vaeprior.reference.distributions")
    h, W, b, x, _, _ = make(7, 5, 32, seed=2)
    logits = (h @ W.T + b).detach().numpy().reshape(7, 5, 784)
    ref = dist.bernoulli_log_prob(x.numpy()[None], logits).reshape(-1)
    with torch.no_grad():
        np.testing.assert_allclose(
            ik.bernoulli_loglik(h, W, b, x).numpy(), ref, rtol=1e-12, atol=1e-10
        )


@pytest.mark.parametrize(("S", "B"), [(1, 1), (1, 5), (7, 1), (7, 5), (64, 1), (64, 5)])
def test_iw_nll_and_log_weights_match_float64(S, B):
    h, W, b, x, lpz, lqz = make(S, B, 32, seed=10 * S + B)
    nll, log_w = ik.iw_nll(h, W, b, x, lpz, lqz, return_log_weights=True)
    nll_r, log_w_r = iw_nll_f64(h, W, b, x, lpz, lqz)
    torch.testing.assert_close(log_w, log_w_r.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(nll, nll_r.detach(), rtol=1e-12, atol=1e-10)
    assert not nll.requires_grad


def test_iw_nll_matches_numpy_log_mean_exp():
    dist = pytest.importorskip("vaeprior.reference.distributions")
    h, W, b, x, lpz, lqz = make(7, 5, 32, seed=4)
    _, log_w = iw_nll_f64(h, W, b, x, lpz, lqz)
    ref = -dist.log_mean_exp(log_w.detach().numpy(), axis=0)
    np.testing.assert_allclose(ik.iw_nll(h, W, b, x, lpz, lqz).numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("offset", [1000.0, -1000.0])
def test_iw_nll_streamed_log_sum_exp_stable_at_1000(offset):
    """log weights around +-2000 (exp overflows/underflows): the running max keeps it exact,
    also across the 16 S-splits that (S, B) = (64, 5) is cut into."""
    h, W, b, x, lpz, lqz = make(64, 5, 32, seed=5, offset=offset)
    nll = ik.iw_nll(h, W, b, x, lpz, lqz)
    nll_r, log_w = iw_nll_f64(h, W, b, x, lpz, lqz)
    assert torch.isinf(torch.exp(log_w)).any() or (torch.exp(log_w) == 0).any()
    torch.testing.assert_close(nll, nll_r.detach(), rtol=1e-13, atol=1e-10)


@pytest.mark.parametrize(("S", "B"), [(7, 5), (1, 1)])
def test_iw_nll_conv1x1_matches_float64(S, B):
    h, w, b, x, lpz, lqz = make(S, B, 4, conv=True, seed=S)
    nll, log_w = ik.iw_nll_conv1x1(h, w, b, x, lpz, lqz, return_log_weights=True)
    nll_r, log_w_r = iw_nll_f64(h, w, b, x, lpz, lqz)
    torch.testing.assert_close(log_w, log_w_r.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(nll, nll_r.detach(), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_torch_fallback_matches_float64_for_any_chunk(conv, chunk):
    h, W, b, x, lpz, lqz = make(7, 5, 4 if conv else 32, conv=conv, seed=chunk, offset=500.0)
    nll, log_w = ik.iw_nll_torch(h, W, b, x, lpz, lqz, chunk_size=chunk, return_log_weights=True)
    nll_r, log_w_r = iw_nll_f64(h, W, b, x, lpz, lqz)
    torch.testing.assert_close(log_w, log_w_r, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(nll, nll_r, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("conv", [False, True])
def test_weight_gradients_race_free_over_many_tiles(conv):
    """200 rows = 7 tiles over 4 programs accumulating partial sums: two backward passes agree
    bit for bit and equal the float64 autograd truth."""
    h, W, b, x, _, _ = make(40, 5, 4 if conv else 32, conv=conv, seed=9)
    g = torch.randn(200, dtype=torch.float64)
    fn = ik.bernoulli_loglik_conv1x1 if conv else ik.bernoulli_loglik
    _, g1 = _grads(fn, h, W, b, x, g)
    _, g2 = _grads(fn, h, W, b, x, g)
    _, g_r = _grads(loglik_f64, h, W, b, x, g)
    for a, c, r in zip(g1, g2, g_r, strict=True):
        assert torch.equal(a, c)
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


def test_bad_inputs_raise_clear_errors():
    h, W, b, x, lpz, lqz = make(2, 3, 16)
    with pytest.raises(ValueError, match="not a multiple of B"):
        ik.bernoulli_loglik(h[:5], W, b, x)
    with pytest.raises(ValueError, match=r"nn\.Linear\.weight"):
        ik.bernoulli_loglik(h, W.T, b, x)
    with pytest.raises(ValueError, match=r"must be \(S, B\)"):
        ik.iw_nll(h, W, b, x, lpz.T, lqz)
    with pytest.raises(ValueError, match="flat binarized"):
        ik.iw_nll_torch(h, W, b, x[:, :100], lpz, lqz)
    hc, w, bc, *_ = make(2, 3, 4, conv=True)
    with pytest.raises(ValueError, match=r"nn\.Conv2d"):
        ik.iw_nll_conv1x1(hc, w[:, :2], bc, x, lpz, lqz)


# ---------------------------------------------------------------------------------------------
# CUDA, paper sizes: |fast - ref| <= 2 |torch_same_dtype - ref| + atol against float64
# ---------------------------------------------------------------------------------------------
def _check_rule(fast, eager, ref, atol, what):
    err = (fast.double() - ref).abs()
    bound = 2 * (eager.double() - ref).abs() + atol
    assert not (err > bound).any(), f"{what}: worst excess {(err - bound).max():.3e}"


_DTYPES = [(torch.float32, False, 1e-4), (torch.float32, True, 1e-2), (torch.bfloat16, False, 1.0)]


@cuda
@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize(("dtype", "tf32", "atol"), _DTYPES)
def test_cuda_iw_nll_paper_size_rule(conv, dtype, tf32, atol, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)
    S, B = (1000, 128) if not conv else (100, 128)
    args64 = make(S, B, 32 if conv else 500, conv=conv, seed=3, device="cuda")
    with torch.no_grad():
        nll_r, _ = iw_nll_f64(*args64)
        lo = [t.detach().to(dtype) for t in args64]
        fast = (ik.iw_nll_conv1x1 if conv else ik.iw_nll)(*lo)
        eager = ik.iw_nll_torch(*lo)
    _check_rule(fast, eager, nll_r, atol, "nll")


@cuda
@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize(("dtype", "tf32", "atol"), _DTYPES)
def test_cuda_bernoulli_loglik_grads_rule(conv, dtype, tf32, atol, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)
    h, W, b, x, _, _ = make(1, 128, 32 if conv else 500, conv=conv, seed=4, device="cuda")
    g = torch.randn(128, dtype=torch.float64, device="cuda")
    ll_r, g_r = _grads(loglik_f64, h, W, b, x, g)
    lo = [t.detach().to(dtype).requires_grad_() for t in (h, W, b)]
    fn = ik.bernoulli_loglik_conv1x1 if conv else ik.bernoulli_loglik
    ll_f, g_f = _grads(fn, *lo, x.to(dtype), g.to(dtype))
    ll_e, g_e = _grads(loglik_f64, *lo, x.to(dtype), g.to(dtype))
    _check_rule(ll_f, ll_e, ll_r, atol, "ll")
    for name, a, e, r in zip("hWb", g_f, g_e, g_r, strict=True):
        assert a.dtype == dtype
        _check_rule(a, e, r, atol * 1e-2 * float(r.abs().max()), f"d/d{name}")


@cuda
def test_cuda_iw_nll_memory_flat_in_S():
    """Extra memory beyond the inputs stays O(B), not O(S * B * 784)."""
    peaks = []
    for S in (100, 1000):
        args = [t.detach().float() for t in make(S, 128, 500, seed=S, device="cuda")]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        ik.iw_nll(*args)
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - base)
    assert peaks[1] < 2 * peaks[0] + (1 << 20)


@pytest.mark.parametrize("model", ["dense", "conv"])
def test_training_loss_through_the_fused_head_equals_torch(model):
    """`VAE.loglik_backend = "triton"`: same training loss and same gradients for every
    parameter as the torch head (float64), so training can run on the fused kernel."""
    from vaeprior.fast.config import ModelConfig
    from vaeprior.fast.objective import training_loss
    from vaeprior.fast.vae import build_vae

    torch.manual_seed(0)
    vae = build_vae(ModelConfig(model=model, z_dim=6, prior="rnvp", flow_depth=2)).double()
    x = (torch.rand(3, 784, dtype=torch.float64) < 0.4).double()
    eps = torch.randn(2, 3, 6, dtype=torch.float64)
    vae.train()
    training_loss(vae, x, eps, 0.5)  # ActNorm data-dependent init, outside the comparison
    results = {}
    for backend in ("torch", "triton"):
        vae.loglik_backend = backend
        vae.zero_grad()
        loss, _ = training_loss(vae, x, eps, 0.5)
        loss.backward()
        results[backend] = (loss.detach(), {n: p.grad.clone() for n, p in vae.named_parameters()})
    (l_t, g_t), (l_f, g_f) = results["torch"], results["triton"]
    torch.testing.assert_close(l_f, l_t, rtol=1e-12, atol=1e-10)
    assert g_t.keys() == g_f.keys()
    for name in g_t:
        torch.testing.assert_close(g_f[name], g_t[name], rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize("conv", [False, True])
def test_iw_nll_returns_mean_reconstruction(conv):
    """return_recon: mean_s log p(x|z_s) per x, equal to the full-logits float64 value."""
    S, B = 7, 5
    h, W, b, x, lpz, lqz = make(S, B, 4 if conv else 32, conv=conv, seed=21)
    fn = ik.iw_nll_conv1x1 if conv else ik.iw_nll
    nll, recon = fn(h, W, b, x, lpz, lqz, return_recon=True)
    recon_r = loglik_f64(h, W, b, x).detach().view(S, B).mean(0)
    torch.testing.assert_close(recon, recon_r, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(
        nll, iw_nll_f64(h, W, b, x, lpz, lqz)[0].detach(), rtol=1e-12, atol=1e-10
    )
    nll2, logw, recon2 = fn(h, W, b, x, lpz, lqz, return_log_weights=True, return_recon=True)
    assert logw.shape == (S, B) and torch.equal(recon2, recon) and torch.equal(nll2, nll)
