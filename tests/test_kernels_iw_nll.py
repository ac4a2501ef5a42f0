"""Fused decoder head + Bernoulli log-lik + log-mean-exp (`fast/kernels/iw_nll.py`, App. B.3).

Truths: float64 torch written here (full logits, logsumexp), the NumPy reference
(`vaeprior.reference.distributions`) when importable, and torch autograd for the gradients.
Tensors live on `kernel_support.DEVICE`: on a CUDA machine the compiled kernels run on CUDA
tensors, on CPU Triton's interpreter runs them (TRITON_INTERPRET=1). Outputs are NaN-poisoned
before each launch so unwritten elements fail. The conv head uses C = 4 channels on the
interpreter (speed) and C = 32 at paper size on CUDA. bf16 / TF32 results are compared with
float64 math on the same (rounded) inputs.

Launch branches (`loglik_fwd_settings`, `iw_fwd_settings`, `loglik_bwd_settings`): the
interpreter sizes grids for 4 "SMs", so a dense launch takes the row-tile path once it has
4 row tiles of its dtype class (128 bf16, 64 fp32 / TF32, 32 fp64 rows) and the split path
below; `test_every_launch_branch_matches_float64` asserts which one each row reaches.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from kernel_support import DEVICE, import_kernels, poison_and_interpret

ik = import_kernels("iw_nll", "_loglik_fwd_kernel")

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
F = torch.nn.functional


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    # the ahead-of-time capture (bench/gpu/aot.py, used by other test modules) reloads the
    # kernel module in place with compiled kernels: take it back to the interpreter on CPU
    import_kernels("iw_nll", "_loglik_fwd_kernel")
    poison_and_interpret(monkeypatch)


def make(S, B, H, *, conv=False, dtype=torch.float64, seed=0, offset=0.0, device=DEVICE):
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
    h, W, b, x = (t.double() for t in (h, W, b, x))
    if h.dim() == 4:
        logits = (h * W.reshape(1, -1, 1, 1)).sum(1).reshape(h.shape[0], 784) + b
    else:
        logits = h @ W.T + b
    xr = x.repeat(h.shape[0] // x.shape[0], 1)
    return (xr * logits - F.softplus(logits)).sum(1)


def iw_nll_f64(h, W, b, x, lpz, lqz):
    S, B = lpz.shape
    log_w = loglik_f64(h, W, b, x).reshape(S, B) + lpz.double() - lqz.double()
    return -(torch.logsumexp(log_w, 0) - math.log(S)), log_w


def _grads(fn, h, W, b, x, g):
    ll = fn(h, W, b, x)
    return ll, torch.autograd.grad((ll * g).sum(), [h, W, b])


@contextlib.contextmanager
def tf32(on: bool):
    """torch.backends.cuda.matmul.allow_tf32 = on inside the block (what the launchers read)."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def deterministic(on: bool):
    """torch.use_deterministic_algorithms(on) inside the block (warn_only: torch's own CUDA ops
    in the float64 truths stay allowed)."""
    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(on, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved)


def _fp64_leaves(*ts):
    """float64 copies of rounded inputs, as fresh leaves (the truth sees what the kernel saw)."""
    return [t.detach().double().requires_grad_() for t in ts]


@pytest.mark.parametrize(("S", "B"), [(1, 1), (7, 5)])
@pytest.mark.parametrize("conv", [False, True])
def test_bernoulli_loglik_and_gradients_match_float64(S, B, conv):
    h, W, b, x, _, _ = make(S, B, 4 if conv else 32, conv=conv, seed=S + B)
    g = torch.randn(S * B, dtype=torch.float64, device=DEVICE)
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
    g = torch.randn(35, device=DEVICE)
    ll, grads = _grads(ik.bernoulli_loglik, h, W, b, x, g)
    ll_r, grads_r = _grads(loglik_f64, *_fp64_leaves(h, W, b), x, g.double())
    torch.testing.assert_close(ll.double(), ll_r, rtol=1e-5, atol=1e-3)
    for a, r in zip(grads, grads_r, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), r, rtol=1e-5, atol=1e-4)


def test_bernoulli_loglik_matches_numpy_reference():
    dist = pytest.importorskip("vaeprior.reference.distributions")
    h, W, b, x, _, _ = make(7, 5, 32, seed=2)
    logits = (h @ W.T + b).detach().cpu().numpy().reshape(7, 5, 784)
    ref = dist.bernoulli_log_prob(x.cpu().numpy()[None], logits).reshape(-1)
    with torch.no_grad():
        np.testing.assert_allclose(
            ik.bernoulli_loglik(h, W, b, x).cpu().numpy(), ref, rtol=1e-12, atol=1e-10
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
    ref = -dist.log_mean_exp(log_w.detach().cpu().numpy(), axis=0)
    np.testing.assert_allclose(ik.iw_nll(h, W, b, x, lpz, lqz).cpu().numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("offset", [1000.0, -1000.0])
def test_iw_nll_streamed_log_sum_exp_stable_at_1000(offset):
    """log weights around +-2000 (exp overflows/underflows): the running max keeps it exact,
    also across the sample splits that (S, B) = (64, 5) is cut into (16 on the interpreter)."""
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
def test_weight_gradients_deterministic_mode_is_bit_identical(conv):
    """Under torch.use_deterministic_algorithms the weight gradients come from per-program
    partial sums (no atomics): two backward passes agree bit for bit and equal the float64
    truth. Dense: 135 rows = 9 row tiles of 16 looped over by 4 programs (the row-tile
    kernel); conv: 40 rows = 10 row tiles."""
    S = 27 if not conv else 8
    h, W, b, x, _, _ = make(S, 5, 4 if conv else 32, conv=conv, seed=9)
    g = torch.randn(S * 5, dtype=torch.float64, device=DEVICE)
    fn = ik.bernoulli_loglik_conv1x1 if conv else ik.bernoulli_loglik
    if not conv:
        s = ik.loglik_bwd_settings(S * 5, 32, False, torch.float64, "ieee", 4, 50_000_000)
        assert not s["SPLIT"] and s["n_tiles"] > s["grid"][0]  # programs loop over row tiles
    _, g_r = _grads(loglik_f64, h, W, b, x, g)
    with deterministic(True):
        _, g1 = _grads(fn, h, W, b, x, g)
        _, g2 = _grads(fn, h, W, b, x, g)
    for a, c, r in zip(g1, g2, g_r, strict=True):
        assert torch.equal(a, c)
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


# (dtype, TF32, rows S*B, B, expected split?, deterministic, tolerance on ll, on gradients);
# the rows-mode M is the smallest multiple of B with 4 row tiles of the dtype class.
_BRANCHES = [
    pytest.param(torch.float64, False, 7 * 5, 5, True, True, 1e-10, 1e-10, id="fp64-split-det"),
    pytest.param(torch.float64, False, 26 * 5, 5, False, False, 1e-10, 1e-10, id="fp64-rows"),
    pytest.param(torch.float32, False, 7 * 5, 5, True, False, 1e-3, 1e-4, id="fp32-split"),
    pytest.param(torch.float32, False, 39 * 5, 5, False, True, 1e-3, 1e-4, id="fp32-rows-det"),
    pytest.param(torch.float32, True, 39 * 5, 5, False, False, 1e-3, 1e-4, id="tf32-rows"),
    pytest.param(torch.bfloat16, False, 7 * 5, 5, True, True, 4.0, 4e-2, id="bf16-split-det"),
    pytest.param(torch.bfloat16, False, 77 * 5, 5, False, False, 4.0, 4e-2, id="bf16-rows"),
]


@pytest.mark.parametrize(("dtype", "on_tf32", "M", "B", "split", "det", "tol_ll", "tol_g"),
                         _BRANCHES)  # fmt: skip
def test_every_launch_branch_matches_float64(dtype, on_tf32, M, B, split, det, tol_ll, tol_g):
    """Each dot class (fp64, IEEE fp32, TF32, bf16) on the split (small M) and the row-tile
    (large M) launches, forward and backward, with atomics or deterministic partials; against
    float64 math on the same rounded inputs. bf16 returns ll and dh in bf16 (|ll| is a few
    hundred: 2^-8 relative is ~1-2), dW accumulated in float32 then rounded."""
    H = 32
    with tf32(on_tf32):
        prec = ik._precision(torch.empty(0, dtype=dtype), False)
        n_sms, l2 = ik.launch.max_programs(DEVICE), ik.launch.l2_bytes(DEVICE)
        assert ik.loglik_fwd_settings(M, False, dtype, prec, n_sms)["SPLIT"] is split
        assert ik.loglik_bwd_settings(M, H, False, dtype, prec, n_sms, l2)["SPLIT"] is split
        h, W, b, x, _, _ = make(M // B, B, H, dtype=dtype, seed=M)
        g = torch.randn(M, dtype=torch.float64, device=DEVICE) / 10
        with deterministic(det):
            ll, grads = _grads(ik.bernoulli_loglik, h, W, b, x, g.to(dtype))
    ll_r, grads_r = _grads(loglik_f64, *_fp64_leaves(h, W, b), x, g.to(dtype).double())
    assert ll.dtype == dtype
    torch.testing.assert_close(ll.double(), ll_r, rtol=0, atol=tol_ll)
    for name, a, r in zip("hWb", grads, grads_r, strict=True):
        assert a.dtype == dtype, name
        torch.testing.assert_close(
            a.double(), r, rtol=tol_g, atol=tol_g, msg=lambda m, n=name: f"d/d{n}: {m}"
        )


@pytest.mark.parametrize(
    ("dtype", "S", "B", "conv", "block_b"),
    [
        pytest.param(torch.float64, 3, 40, False, 32, id="fp64-two-image-tiles"),
        pytest.param(torch.float32, 9, 5, False, 8, id="fp32-eight-samples-a-tile"),
        pytest.param(torch.bfloat16, 3, 5, False, 8, id="bf16"),
        pytest.param(torch.float64, 5, 5, True, 4, id="conv-two-image-tiles"),
    ],
)
def test_iw_tiles_of_samples_and_images(dtype, S, B, conv, block_b):
    """A sample tile is BLOCK_S samples x BLOCK_B images: B above BLOCK_B (several image
    tiles) and B below it (several samples per tile) give the float64 log weights and NLL."""
    H = 4 if conv else 32
    prec = ik._precision(torch.empty(0, dtype=dtype), conv)
    s = ik.iw_fwd_settings(S, B, conv, dtype, prec, ik.launch.max_programs(DEVICE))
    assert s["BLOCK_B"] == block_b
    h, W, b, x, lpz, lqz = make(S, B, H, conv=conv, dtype=dtype, seed=S * B)
    lpz, lqz = lpz.float(), lqz.float()
    nll, log_w = (ik.iw_nll_conv1x1 if conv else ik.iw_nll)(
        h, W, b, x, lpz, lqz, return_log_weights=True
    )
    nll_r, log_w_r = iw_nll_f64(h.detach(), W.detach(), b.detach(), x, lpz, lqz)
    tol = {torch.float64: 1e-5, torch.float32: 1e-3, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(log_w.double(), log_w_r, rtol=tol, atol=tol)
    torch.testing.assert_close(nll.double(), nll_r, rtol=tol, atol=tol)


@pytest.mark.parametrize("conv", [False, True])
def test_logsumexp_parts_stream_over_sample_chunks(conv):
    """Evaluation streams S in chunks: the parts of 3 chunks of 8 samples (float32 h, float64
    log p(z)) combine to the NLL and mean reconstruction of all 24 samples at once, and each
    part is (max log w, sum exp(log w - max), sum log p(x|z)) of its chunk."""
    S, B = 24, 5
    h, W, b, x, lpz, lqz = make(S, B, 4 if conv else 32, conv=conv, seed=31, offset=300.0)
    h32, W32, b32, x32 = (t.detach().float() for t in (h, W, b, x))
    rows = h32.shape[0] // S
    parts = []
    for s0 in range(0, S, 8):
        p = ik.iw_logsumexp_parts(
            h32[s0 * rows : (s0 + 8) * rows], W32, b32, x32, lpz[s0 : s0 + 8], lqz[s0 : s0 + 8]
        )
        assert all(t.dtype == torch.float64 and t.shape == (B,) for t in p)
        ll_c = loglik_f64(h32[s0 * rows : (s0 + 8) * rows], W32, b32, x32).view(8, B)
        lw_c = ll_c + lpz[s0 : s0 + 8].double() - lqz[s0 : s0 + 8].double()
        torch.testing.assert_close(p[0], lw_c.max(0).values, rtol=1e-6, atol=1e-3)
        torch.testing.assert_close(p[1], torch.exp(lw_c - p[0]).sum(0), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(p[2], ll_c.sum(0), rtol=1e-6, atol=1e-2)
        parts.append(p)
    nll, recon = ik.iw_nll_from_parts(parts, S)
    nll_r, _ = iw_nll_f64(h32, W32, b32, x32, lpz, lqz)
    torch.testing.assert_close(nll, nll_r, rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(recon, loglik_f64(h32, W32, b32, x32).view(S, B).mean(0),
                               rtol=1e-6, atol=1e-3)  # fmt: skip
    with pytest.raises(ValueError, match="at least one chunk"):
        ik.iw_nll_from_parts([], S)


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
    wide = torch.zeros(6, ik.MAX_HID + 1, dtype=torch.float64, device=DEVICE)
    with pytest.raises(ValueError, match="use the torch backend"):
        ik.bernoulli_loglik(wide, torch.zeros(784, ik.MAX_HID + 1, dtype=torch.float64), b, x)


# ---------------------------------------------------------------------------------------------
# CUDA, paper sizes: |fast - ref| <= 2 |torch_same_dtype - ref| + atol against float64
# ---------------------------------------------------------------------------------------------
def check_rule(fast, eager, ref, atol, what):
    """Every element within twice eager's own error plus atol; else name the worst element
    (index, fast, eager, truth) as Liger's assert_verbose_allclose does."""
    err = (fast.double() - ref).abs()
    bound = 2 * (eager.double() - ref).abs() + atol
    excess = err - bound
    if (excess > 0).any():
        i = int(excess.flatten().argmax())
        idx = tuple(int(v) for v in np.unravel_index(i, tuple(excess.shape)))
        f, e, r = (float(t.flatten()[i]) for t in (fast.double(), eager.double(), ref))
        n = int((excess > 0).sum())
        raise AssertionError(
            f"{what}: {n} of {excess.numel()} elements over 2|eager - ref| + {atol:.1e}; "
            f"worst at {idx}: fast {f:.8g}, eager {e:.8g}, float64 {r:.8g} "
            f"(excess {excess.max():.3e})"
        )


def test_check_rule_names_the_worst_element():
    ref = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    eager = ref + 0.1
    check_rule(ref + 0.15, eager, ref, 0.0, "ok")
    fast = ref.clone()
    fast[1, 0] += 0.5
    with pytest.raises(AssertionError, match=r"1 of 4 .*worst at \(1, 0\): fast 3.5, eager 3.1"):
        check_rule(fast, eager, ref, 0.0, "nll")


_DTYPES = [(torch.float32, False, 1e-4), (torch.float32, True, 1e-2), (torch.bfloat16, False, 1.0)]


@cuda
@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize(("dtype", "on_tf32", "atol"), _DTYPES)
def test_cuda_iw_nll_paper_size_rule(conv, dtype, on_tf32, atol):
    S, B = (1000, 128) if not conv else (100, 128)
    args64 = make(S, B, 32 if conv else 500, conv=conv, seed=3)
    with torch.no_grad(), tf32(on_tf32):
        nll_r, _ = iw_nll_f64(*args64)
        lo = [t.detach().to(dtype) for t in args64]
        fast = (ik.iw_nll_conv1x1 if conv else ik.iw_nll)(*lo)
        eager = ik.iw_nll_torch(*lo)
    check_rule(fast, eager, nll_r, atol, "nll")


@cuda
@pytest.mark.parametrize("M", [128, 128_000], ids=["split", "rows"])
@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize(("dtype", "on_tf32", "atol"), _DTYPES)
def test_cuda_bernoulli_loglik_grads_rule(M, conv, dtype, on_tf32, atol):
    if conv and M > 128:
        M = 12_800  # 1.3 GB of float64 h is enough to cover the conv launch
    h, W, b, x, _, _ = make(M // 128, 128, 32 if conv else 500, conv=conv, seed=4)
    g = torch.randn(M, dtype=torch.float64, device=DEVICE)
    ll_r, g_r = _grads(loglik_f64, h, W, b, x, g)
    lo = [t.detach().to(dtype).requires_grad_() for t in (h, W, b)]
    fn = ik.bernoulli_loglik_conv1x1 if conv else ik.bernoulli_loglik
    with tf32(on_tf32):
        ll_f, g_f = _grads(fn, *lo, x.to(dtype), g.to(dtype))
        ll_e, g_e = _grads(_eager_loglik, *lo, x.to(dtype), g.to(dtype))
    check_rule(ll_f, ll_e, ll_r, atol, "ll")
    for name, a, e, r in zip("hWb", g_f, g_e, g_r, strict=True):
        assert a.dtype == dtype
        check_rule(a, e, r, atol * 1e-2 * float(r.abs().max()), f"d/d{name}")


def _eager_loglik(h, W, b, x):
    """The torch head in the input dtype (what training runs without the kernel)."""
    if h.dim() == 4:
        logits = F.conv2d(h, W, b).reshape(h.shape[0], 784)
    else:
        logits = F.linear(h, W, b)
    return (x.repeat(h.shape[0] // x.shape[0], 1) * logits - F.softplus(logits)).sum(1)


@cuda
def test_cuda_iw_nll_memory_flat_in_S():
    """Extra memory beyond the inputs stays O(B), not O(S * B * 784)."""
    peaks = []
    for S in (100, 1000):
        args = [t.detach().float() for t in make(S, 128, 500, seed=S)]
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
    from vaeprior.fast.models.vae import build_vae
    from vaeprior.fast.training.objective import training_loss

    torch.manual_seed(0)
    vae = build_vae(ModelConfig(model=model, z_dim=6, prior="rnvp", flow_depth=2))
    vae = vae.double().to(DEVICE)
    x = (torch.rand(3, 784, dtype=torch.float64, device=DEVICE) < 0.4).double()
    eps = torch.randn(2, 3, 6, dtype=torch.float64, device=DEVICE)
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
