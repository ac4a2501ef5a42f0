"""Fused Real NVP kernel (`fast/kernels/flow.py`) against float64 truths (App. B.2, DESIGN.md).

Tensors live on `kernel_support.DEVICE`: on a CUDA machine the compiled kernels run on CUDA
tensors, on CPU Triton's interpreter runs them (TRITON_INTERPRET=1). Paper-size CUDA rules skip
with the reason when no GPU is present. Every launch allocates its outputs filled with NaN
(POISON_OUTPUTS), so an element the kernel forgets to write fails the comparisons.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_support import DEVICE, import_kernels, poison_and_interpret

from vaeprior.fast.models.realnvp import PARAM_NAMES
from vaeprior.fast.models.realnvp import realnvp_forward as realnvp_torch
from vaeprior.reference.config import LEAKY_SLOPE as SLOPE
from vaeprior.reference.config import SCALE_SHIFT as SHIFT

fk = import_kernels("flow", "_realnvp_fwd_kernel")

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    # the ahead-of-time capture (bench/gpu/aot.py, used by other test modules) reloads the
    # kernel module in place with compiled kernels: take it back to the interpreter on CPU
    import_kernels("flow", "_realnvp_fwd_kernel")
    poison_and_interpret(monkeypatch)


def make_params(K, D, H, dtype=torch.float64, seed=0, s_scale=1.0, device=DEVICE):
    """Fresh random parameters (never the zero init): non-orthogonal W, everything non-zero.

    Order and shapes of `realnvp_forward`: W, A, a, ST = [S | T], st0 = [s0 | t0], log_scale,
    bias; `s_scale` scales S and s0 (saturates the coupling's sigmoid when large).
    """
    g = torch.Generator().manual_seed(seed)
    Dl, Dr = D // 2, D - D // 2

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    W = torch.linalg.qr(r(K, D, D))[0] * (1 + 0.1 * r(K, 1, D))  # non-orthogonal: logdet != 0
    A, a = r(K, Dl, H, scale=0.3), r(K, H, scale=0.1)
    S, s0 = r(K, H, Dr, scale=0.1 * s_scale), r(K, Dr, scale=s_scale)
    T, t0 = r(K, H, Dr, scale=0.1), r(K, Dr)
    ps = [W, A, a, torch.cat([S, T], dim=2), torch.cat([s0, t0], dim=1)]
    ps += [r(K, D, scale=0.1), r(K, D, scale=0.1)]
    return [p.to(device=device, dtype=dtype).requires_grad_() for p in ps]


def flow_f64(x, W, A, a, ST, st0, log_scale, bias):
    """DESIGN.md's Real NVP written out in float64 torch (independent of the kernel module);
    S, T, s0, t0 are sliced out of the merged heads."""
    Dl = x.shape[1] // 2
    Dr = x.shape[1] - Dl
    x = x.double()
    ld = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for k in range(W.shape[0]):
        S, T = ST[k, :, :Dr].double(), ST[k, :, Dr:].double()
        s0, t0 = st0[k, :Dr].double(), st0[k, Dr:].double()
        u = x @ W[k].double()
        pre = u[:, :Dl] @ A[k].double() + a[k].double()
        h = torch.where(pre > 0, pre, SLOPE * pre)
        z = h @ S + s0 + SHIFT
        y_r = u[:, Dl:] * torch.sigmoid(z) + h @ T + t0
        ls = log_scale[k].double()
        x = (torch.cat([u[:, :Dl], y_r], 1) + bias[k].double()) * torch.exp(ls)
        # log sigmoid exactly (-softplus(-z) would switch to -z past its threshold 20, off by
        # up to e^-20 = 2e-9 per saturated element)
        ld = ld + torch.nn.functional.logsigmoid(z).sum(1) + ls.sum()
        ld = ld + torch.linalg.slogdet(W[k].double())[1]
    return x, ld


def run_with_grads(fn, x, params, gy, gld):
    y, ld = fn(x, *params)
    grads = torch.autograd.grad((y * gy).sum() + (ld * gld).sum(), [x, *params])
    return y, ld, grads


def fused(x, *params):
    return fk.realnvp_forward(x, *params, slope=SLOPE, scale_shift=SHIFT)


def eager(x, *params):
    return realnvp_torch(x, *params, slope=SLOPE, scale_shift=SHIFT)


def _inputs(K, D, H, N, dtype, seed=0, s_scale=1.0, device=DEVICE):
    params = make_params(K, D, H, dtype, seed, s_scale, device)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N, D, generator=g, dtype=torch.float64).to(device, dtype).requires_grad_()
    gy = torch.randn(N, D, generator=g, dtype=torch.float64).to(device)
    gld = torch.randn(N, generator=g, dtype=torch.float64).to(device)
    return x, params, gy, gld


def _as64(ts):
    return [t.detach().double().requires_grad_() for t in ts]


# (K, D, H, N): D in {2, 16, 17, 32} tiles each half with BLOCK_D = 16, D in {33, 40, 64} with
# 32, D = 80 with 64; odd D splits unevenly (Dl < Dr); N = 1 and N not a multiple of BLOCK_N
SHAPES = [
    (1, 2, 16, 3),
    (2, 16, 32, 70),
    (1, 17, 32, 5),
    (2, 32, 16, 9),
    (1, 33, 256, 5),
    (3, 40, 256, 37),
    (2, 64, 256, 33),
    (1, 80, 32, 6),
    (1, 40, 32, 1),
]


@pytest.mark.parametrize(
    ("K", "D", "H", "N"), SHAPES, ids=[f"K{k}-D{d}-H{h}-N{n}" for k, d, h, n in SHAPES]
)
def test_forward_logdet_and_all_gradients_match_float64(K, D, H, N):
    x, params, gy, gld = _inputs(K, D, H, N, torch.float64)
    y, ld, grads = run_with_grads(fused, x, params, gy, gld)
    y_r, ld_r, grads_r = run_with_grads(flow_f64, x, params, gy, gld)
    torch.testing.assert_close(y, y_r, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld, ld_r, rtol=1e-10, atol=1e-10)
    for name, g, g_r in zip(["x", *PARAM_NAMES], grads, grads_r, strict=True):
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


def _round_bf16(t):
    """t rounded to bf16 (kept in t's dtype) as the kernel's .to(bfloat16) does it: to nearest
    even on CUDA, by truncation in Triton's CPU interpreter (its fp32 -> bf16 cast drops bits)."""
    if t.is_cuda:
        return t.to(torch.bfloat16).to(t.dtype)
    return (t.float().view(torch.int32) & -65536).view(torch.float32).to(t.dtype)


class _Operand(torch.autograd.Function):
    """A tl.dot operand: rounded to bf16 forward; gradient passed through."""

    @staticmethod
    def forward(ctx, t):
        return _round_bf16(t)

    @staticmethod
    def backward(ctx, g):
        return g


class _Product(torch.autograd.Function):
    """A tl.dot result: identity forward; its gradient is rounded to bf16, since the kernel's
    backward dots read that gradient as a bf16 operand."""

    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, g):
        return _round_bf16(g)


def flow_bf16_points_f64(x, W, A, a, ST, st0, log_scale, bias):
    """`flow_f64` with bf16 rounding at the dot operands, where the kernel rounds: the block
    input, u_l and h (and, in the backward, the gradients reaching each product)."""
    Dl = x.shape[1] // 2
    Dr = x.shape[1] - Dl
    ld = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for k in range(W.shape[0]):
        u = _Product.apply(_Operand.apply(x) @ W[k])
        pre = _Product.apply(_Operand.apply(u[:, :Dl]) @ A[k]) + a[k]
        h = torch.where(pre > 0, pre, SLOPE * pre)
        st = _Product.apply(_Operand.apply(h) @ ST[k]) + st0[k]
        z = st[:, :Dr] + SHIFT
        y_r = u[:, Dl:] * torch.sigmoid(z) + st[:, Dr:]
        x = (torch.cat([u[:, :Dl], y_r], 1) + bias[k]) * torch.exp(log_scale[k])
        ld = ld + torch.nn.functional.logsigmoid(z).sum(1) + log_scale[k].sum()
        ld = ld + torch.linalg.slogdet(W[k])[1]
    return x, ld


def test_bfloat16_rounds_only_dot_operands():
    """bf16 in and out: dot operands in bf16, everything else float32 (state, accumulators,
    coupling, ActNorm, weight gradients). Truth: the float64 formula rounding exactly the dot
    operands; what remains is float32 accumulation order and the final bf16 rounding of each
    output, within 4 bf16 units (2^-6) of the largest value. (Against plain float64 the same
    outputs differ by up to 7e-2 of the largest value: the bound tests the rounding points.)"""
    x, params, gy, gld = _inputs(3, 40, 64, 37, torch.bfloat16, seed=4)
    gy, gld = gy.bfloat16(), gld.bfloat16()
    y, ld, grads = run_with_grads(fused, x, params, gy, gld)
    y_r, ld_r, grads_r = run_with_grads(
        flow_bf16_points_f64, *_as64([x]), _as64(params), gy.double(), gld.double()
    )
    outputs = [("y", y, y_r), ("ld", ld, ld_r)]
    names = [f"d/d{n}" for n in ["x", *PARAM_NAMES]]
    outputs += list(zip(names, grads, grads_r, strict=True))
    for name, v, r in outputs:
        assert v.dtype == torch.bfloat16, name
        err = float((v.detach().double() - r.detach()).abs().max() / r.detach().abs().max())
        assert err <= 2**-6, f"{name}: max error {err:.2e} of the largest value > 2^-6"


def test_matches_numpy_reference_flow():
    ref = pytest.importorskip("vaeprior.reference.flows")
    K, D, N = 3, 33, 7
    Dr = D - D // 2
    x, params, _, _ = _inputs(K, D, 256, N, torch.float64, seed=3)
    W, A, a, ST, st0, ls, b = (p.detach().cpu().numpy() for p in params)
    split = {"W": W, "A": A, "a": a, "S": ST[..., :Dr], "s0": st0[:, :Dr], "T": ST[..., Dr:],
             "t0": st0[:, Dr:], "log_scale": ls, "bias": b}  # fmt: skip
    named = {f"prior.{k}.{n}": p[k] for n, p in split.items() for k in range(K)}
    flow = ref.RealNVP.from_params(named, "prior", K, slope=SLOPE, scale_shift=SHIFT)
    y_np, ld_np = flow.forward(x.detach().cpu().numpy())
    with torch.no_grad():
        y, ld = fused(x, *params)
    np.testing.assert_allclose(y.cpu().numpy(), y_np, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ld.cpu().numpy(), ld_np, rtol=1e-10, atol=1e-10)


def test_eager_torch_baseline_matches_float64():
    x, params, gy, gld = _inputs(2, 40, 32, 11, torch.float64, seed=8)
    y, ld, grads = run_with_grads(eager, x, params, gy, gld)
    y_r, ld_r, grads_r = run_with_grads(flow_f64, x, params, gy, gld)
    torch.testing.assert_close(y, y_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld, ld_r, rtol=1e-12, atol=1e-12)
    for g, g_r in zip(grads, grads_r, strict=True):
        torch.testing.assert_close(g, g_r, rtol=1e-12, atol=1e-12)


def test_inference_path_without_saved_activations_matches_training_path():
    x, params, _, _ = _inputs(3, 40, 64, 9, torch.float64, seed=5)
    with torch.no_grad():
        y0, ld0 = fused(x, *params)
    y1, ld1 = fused(x, *params)
    assert ld1.requires_grad
    torch.testing.assert_close(y0, y1.detach(), rtol=0, atol=0)
    torch.testing.assert_close(ld0, ld1.detach(), rtol=0, atol=0)


def test_deterministic_mode_is_bit_identical_over_many_tiles():
    """Under torch.use_deterministic_algorithms(True), 300 rows (several tiles per program)
    give bit-identical gradients on two backward passes, equal to the float64 truth."""
    x, params, gy, gld = _inputs(2, 33, 32, 300, torch.float64, seed=7)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        _, _, g1 = run_with_grads(fused, x, params, gy, gld)
        _, _, g2 = run_with_grads(fused, x, params, gy, gld)
    finally:
        torch.use_deterministic_algorithms(previous)
    _, _, g_r = run_with_grads(flow_f64, x, params, gy, gld)
    for a, b, r in zip(g1, g2, g_r, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


def test_atomic_mode_over_many_tiles_matches_float64():
    """The default (atomic) weight-gradient reduction over 300 rows = several tiles."""
    x, params, gy, gld = _inputs(2, 33, 32, 300, torch.float64, seed=9)
    _, _, g = run_with_grads(fused, x, params, gy, gld)
    _, _, g_r = run_with_grads(flow_f64, x, params, gy, gld)
    for a, r in zip(g, g_r, strict=True):
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
    with pytest.raises(ValueError, match=r"ST must be stacked .* \(2, 32, 40\)"):
        fused(x, *params[:3], params[3][..., :20], *params[4:])
    with pytest.raises(ValueError, match=r"x must be \(N, D\)"):
        fused(x[0], *params)


# ---------------------------------------------------------------------------------------------
# CUDA, paper sizes: |fast - ref| <= 2 |torch_same_dtype - ref| + atol against float64
# ---------------------------------------------------------------------------------------------
def _check_rule(fast, eager, ref, atol, what):
    """Element-wise |fast - ref| <= 2 |eager - ref| + atol; names the worst element."""
    err_fast = (fast.double() - ref).abs()
    bound = 2 * (eager.double() - ref).abs() + atol
    excess = err_fast - bound
    if (excess > 0).any():
        i = int(excess.argmax())
        idx = tuple(int(j) for j in np.unravel_index(i, tuple(ref.shape)))
        f, e, r = (float(t.reshape(-1)[i]) for t in (fast.double(), eager.double(), ref))
        raise AssertionError(
            f"{what}: {int((excess > 0).sum())} of {ref.numel()} elements exceed "
            f"2 |eager - ref| + {atol:.1e}; worst at {idx}: fast {f:.8e}, eager {e:.8e}, "
            f"ref {r:.8e} (excess {float(excess.max()):.3e})"
        )


def test_check_rule_names_the_worst_element():
    ref = torch.zeros(2, 3, dtype=torch.float64)
    eager_ = ref + 1e-3
    fast_ = ref.clone()
    fast_[1, 2] = 0.5
    _check_rule(ref + 1e-3, eager_, ref, 0.0, "ok")
    with pytest.raises(AssertionError, match=r"1 of 6 elements .* worst at \(1, 2\): fast 5"):
        _check_rule(fast_, eager_, ref, 0.0, "y")


@cuda
@pytest.mark.parametrize("D", [40, 64])
@pytest.mark.parametrize(
    ("dtype", "tf32", "atol"),
    [(torch.float32, False, 1e-5), (torch.float32, True, 1e-3), (torch.bfloat16, False, 5e-2)],
)
def test_cuda_paper_size_matches_float64_rule(D, dtype, tf32, atol, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)
    K, H, N = 20, 256, 16384
    x, params, gy, gld = _inputs(K, D, H, N, torch.float64, seed=D, device="cuda")
    y_r, ld_r, g_r = run_with_grads(eager, x, params, gy, gld)
    xs = x.detach().to(dtype).requires_grad_()
    ps = [p.detach().to(dtype).requires_grad_() for p in params]
    gys, glds = gy.to(dtype), gld.to(dtype)
    y_f, ld_f, g_f = run_with_grads(fused, xs, ps, gys, glds)
    y_e, ld_e, g_e = run_with_grads(eager, xs, ps, gys, glds)
    scale = ld_r.abs().max()
    _check_rule(y_f, y_e, y_r, atol, "y")
    _check_rule(ld_f, ld_e, ld_r, atol * scale, "logabsdet")
    for name, a, b, r in zip(["x", *PARAM_NAMES], g_f, g_e, g_r, strict=True):
        _check_rule(a, b, r, atol * r.abs().max(), f"d/d{name}")


@cuda
def test_cuda_deterministic_mode_bit_identical():
    x, params, gy, gld = _inputs(20, 40, 256, 128_000 // 8, torch.float32, seed=1, device="cuda")
    gy, gld = gy.float(), gld.float()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        _, _, g1 = run_with_grads(fused, x, params, gy, gld)
        _, _, g2 = run_with_grads(fused, x, params, gy, gld)
    finally:
        torch.use_deterministic_algorithms(previous)
    for a, b in zip(g1, g2, strict=True):
        assert torch.equal(a, b)
