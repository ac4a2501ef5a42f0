"""Fused Real NVP flow (Appendix B.2): all K blocks of InvertibleDense -> Coupling -> ActNorm.

What is fused and why
---------------------
One block (DESIGN.md, "Real NVP"; parameters stacked over blocks, [S | T] and [s0 | t0] merged):

    u = x W;  h = leaky_relu(u_l A + a);  [s | t] = h [S | T] + [s0 | t0]
    v = [u_l | u_r sigmoid(s + c) + t];  y = (v + bias) exp(log_scale)

Eager torch runs ~15 kernels per block and writes every intermediate, the (N, 256) hidden layer
above all: ~1 GB of HBM traffic per block at N = 128,000, D = 64. Here one program owns a row
tile and runs *all K blocks* on it: the tile stays in registers, block k's weights stream in
from L2, and the hidden layer is produced and consumed BLOCK_H columns at a time, so (N, H)
never exists. The kernel returns y and the data-dependent log-det sum_k sum_j log_sigmoid(s_kj
+ c); log|det W_k| and sum(log_scale_k) are added in torch (slogdet), so autograd owns them.

Tiles. A row is held as one (BLOCK_N, 2 BLOCK_D) tile [x_l | x_r], each half padded to BLOCK_D
= next power of two >= max(Dr, 16) (tl.dot's minimum side), and split into u_l, u_r only for
the coupling (`_split` / `_cat`: join, permute, reshape). W is one zero-padded (2 BLOCK_D,
2 BLOCK_D) tile, [S | T] a (BLOCK_H, 2 BLOCK_D) tile per chunk, A a (BLOCK_D, BLOCK_H) one:
there is no zero-padded full-D coupling product. D is a compile-time constant, so the column
masks fold away at D = 64 and loads vectorise at D = 40. Padding floor, by counting: at D = 40
(Dl = Dr = 20 -> 32) the dot FLOPs per row and block are 2 (64^2 + 32 H + 64 H) = 57,344 against
2 (40^2 + 20 H + 40 H) = 33,920 useful, 1.69x, for any power-of-two tiling of the halves; at
D = 64 the tiles are exact (1.00x forward, 1.095x backward: see below).

Loop order
----------
Forward, one program per row tile: for k in 0..K-1 [store the block input (training)] ->
[u_l|u_r] = [x_l|x_r] W (1 dot) -> for each hidden chunk j: pre = u_l A_j + a_j, h =
leaky_relu(pre), [s|t] += h [S|T]_j (2 dots) -> coupling, log-det, ActNorm (element-wise).
Backward, one row tile per program (persistent and grid-strided when deterministic): for k in
K-1..0: recompute u and [s|t] from the saved block input (the net streamed once) -> ActNorm
and coupling backward -> the net streamed again: pre recomputed, g_h = [g_s|g_t] [S|T]_j^T,
d[S|T]_j^T = [g_s|g_t]^T h_j, dA_j^T = g_pre^T u_l, g_ul += g_pre A_j^T (5 dots) -> dW =
[x_l|x_r]^T [g_ul|g_ur], dL/dx = [g_ul|g_ur] W^T. Weight-gradient products are written
transposed so that their M side is 64 (a Hopper warp-group MMA); 32-row products fall back to
register-operand MMAs and spill. pre is recomputed rather than held (h over all H is 64
registers per thread at 64 rows): 4 u_l A products per block where 3 are useful.

Saved activations, not inversion
--------------------------------
The training forward writes the K block inputs (K, N, D) in the dots' dtype (bf16 for bf16:
the block reads x only through its bf16-rounded dot operand, so this is exact) and the backward
reads them: K x the op's data traffic (the bytes target is missed by that factor in training).
Reconstructing the inputs by inverting each block from its output (Glow) would keep bytes near
the minimum at the same FLOPs (u W^-1 replaces x W; the net runs twice either way), but it is
not accurate enough, measured (float64 autograd as truth; max error / max value): a K = 50,
D = 40, H = 256 flow trained 600 Adam steps by maximum likelihood on MNIST PCA codes, 512 rows,
float32: stored inputs 1e-6 for every gradient; reconstructed dA 2.1e-2, da 5.3e-3, dx 3.7e-4,
d[S|T] 5.6e-4 (a perturbed u_l flips leaky_relu's branch). TF32 0.069 -> 0.10 and bf16 0.12 ->
0.17 for dA. On inputs off the training data (sigmoid(s + c) down to 7e-15) the reconstruction
overflows to NaN, and at the saturated sigmoid of the tests (s + c ~ -60: sigmoid ~ 1e-26)
u_r = (v_r - t) / sigmoid is lost entirely.

Weight-gradient reduction
-------------------------
Default: every row tile adds its contribution to each block's gradients with relaxed float
atomics (red.global.add.v4.f32 where aligned) into one zero-filled (K, NP) buffer, NP = D^2 +
Dl H + H + 2 Dr H + 2 Dr + 2 D: the buffer (1.4-11.6 MB) stays in L2 and HBM sees it twice
(zero-fill, write-back); the atomics' payload, n_tiles K NP x 4 B, is L2 traffic (13.9 GB at
D = 40, K = 50, N = 128,000, TF32 tiles), reported separately by `bench/gpu/cost_flow.py`.
Not bit-reproducible. Under `torch.use_deterministic_algorithms(True)`, as PyTorch does: a
persistent grid of P = #SM programs, each read-modify-writing its own (K, NP) slice tile after
tile, summed by torch in a fixed order: bit-identical reruns, P x the gradient memory (770 MB at
D = 64, K = 50) and that slice's traffic per tile.

Precision
---------
TF32 dots when `torch.backends.cuda.matmul.allow_tf32`, IEEE fp32 (CUDA-core FMAs) otherwise;
bf16 inputs keep bf16 dot operands (W, A, [S|T] passed in bf16) with fp32 accumulation and fp32
state; fp64 runs DMMA. In Triton's CPU interpreter two workarounds apply, through constexprs
that are constant (no extra compile) on the GPU: 16-bit dot operands are widened to fp32 first
(UPCAST: the interpreter's bf16 dot multiplies raw bits; the widening is exact), and loop bounds
are passed as constants (K_STATIC, TILES_STATIC: Triton 3.6's interpreter under NumPy >= 2.4
cannot iterate over a runtime bound). K and N are runtime values on the GPU: one compile per
(dtype, D) serves every depth and row count.

Registers, shared memory, bytes (the ahead-of-time sm_90 compile of every launch configuration)
-----------------------------------------------------------------------------------------------
Live tiles, fp32 registers per thread (elements / threads):
  forward, tf32 (128 rows, 2 BLOCK_D = 64, BLOCK_H = 64, 256 threads): row tile 32, u (then
  u_l, u_r) 32, [s|t] accumulator 32, pre / h chunk 32 = 128 + addresses and the dot operands'
  copies; 205-232 registers. bf16: 163-177; fp64 (64 rows): 166-238; IEEE (64 rows, chunks of
  16: the FMA dot keeps operand slices in registers): 187-207.
  backward, tf32 (32 rows, 32-column chunks, 128 threads): g, u_l|u_r, [s|t], sigmoid terms,
  [g_s|g_t] at 16 each, g_ul and g_ur 8 each, per chunk pre, g_h, g_pre, h at 8 each; 236-250
  registers. bf16 (64 rows, 256 threads): 246-250; fp64 (16 rows): 216-242; IEEE (16 rows,
  256 threads): 222-229. 0 bytes spilled everywhere (the deterministic variant: 211-254).
Shared memory (operand staging of the dots): forward 16 KB (bf16), 32 KB (IEEE), 48 KB (TF32),
64 KB (fp64); backward 20-40 KB. Limit 232,448 B.
HBM bytes per launch: forward x + y + logdet + the parameters once (+ K N D block inputs in
training); backward dL/dy + dL/dlogdet + dL/dx + the block inputs + parameters + the gradient
buffer twice. Each program re-reads every block's weights from L2 (n_tiles x 5.8 MB at D = 64,
K = 50, fp32): the small backward tiles make the backward L2-heavy. Counted per launch, with
the eager kernel list of the same op, in the repository's bench/gpu/cost_flow.py (the compile
report and the roofline table: bench/RESULTS.md).

Order: kernels -> launchers -> autograd.Function -> public `realnvp_forward`. The torch
implementation of the same function (the CPU path, the tests' and benchmarks' baseline) is
`vaeprior.fast.models.realnvp.realnvp_forward`, with the same parameter layout and names.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from vaeprior.fast.kernels import launch
from vaeprior.fast.models.realnvp import PARAM_NAMES, check_params, logdet_constant

__all__ = ["realnvp_forward"]


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@triton.jit
def _log_sigmoid_pair(z):
    """(log sigmoid(z), log sigmoid(-z)), stable: log_sigmoid(x) = min(x, 0) - log1p(e^-|x|)."""
    soft = tl.log(1.0 + tl.exp(-tl.abs(z)))
    return tl.minimum(z, 0.0) - soft, tl.minimum(-z, 0.0) - soft


@triton.jit
def _dot(a, b, acc, PREC: tl.constexpr, UPCAST: tl.constexpr):
    """acc + a @ b on tensor cores (fp32 accumulation). UPCAST (CPU interpreter only, whose bf16
    dot multiplies the raw uint16 bits) widens 16-bit operands to fp32 first: exact, since a
    product of two bf16 values is an fp32 value."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if a.dtype == tl.float64:  # (Triton 3.6 defaults out_dtype to float32 even here)
        return tl.dot(a, b, acc, input_precision=PREC, out_dtype=tl.float64)
    return tl.dot(a, b, acc, input_precision=PREC)


@triton.jit
def _cat(a, b):
    """[a | b] (M, 2 B) from two (M, B) tiles (join, permute, reshape: no memory traffic)."""
    return tl.reshape(tl.permute(tl.join(a, b), (0, 2, 1)), (a.shape[0], 2 * a.shape[1]))


@triton.jit
def _split(ab):
    """(a, b) from [a | b] (M, 2 B): the inverse of `_cat`."""
    M: tl.constexpr = ab.shape[0]
    B: tl.constexpr = ab.shape[1] // 2
    return tl.split(tl.permute(tl.reshape(ab, (M, 2, B)), (0, 2, 1)))


@triton.jit
def _halves(BLOCK_D: tl.constexpr, DL: tl.constexpr, DR: tl.constexpr):
    """Columns of a [left | right] tile (2 BLOCK_D,): the column each stands for in a row of
    width DL + DR, and whether it is real (padding columns are masked to 0)."""
    c2 = tl.arange(0, 2 * BLOCK_D)
    left = c2 < BLOCK_D
    col = tl.where(left, c2, c2 - BLOCK_D + DL)
    ok = tl.where(left, c2 < DL, c2 - BLOCK_D < DR)
    return col, ok


@triton.jit
def _load_rows(ptr, r, stride, col, ok, rmask, cdt):
    """(BLOCK_N, 2 BLOCK_D) row tile [x_l | x_r] at `ptr` (the tile's first row: 64-bit scalar
    arithmetic, so the per-element offsets stay 32-bit), padding masked to 0."""
    m = rmask[:, None] & ok[None, :]
    return tl.load(ptr + r[:, None] * stride + col[None, :], mask=m, other=0.0).to(cdt)


@triton.jit
def _store_rows(ptr, val, r, stride, col, ok, rmask):
    """Store a (BLOCK_N, 2 BLOCK_D) [left | right] tile into the row tile at `ptr`."""
    m = rmask[:, None] & ok[None, :]
    tl.store(ptr + r[:, None] * stride + col[None, :], val.to(ptr.dtype.element_ty), mask=m)


@triton.jit
def _load_w(W_k, D: tl.constexpr, xcol, xok):
    """W_k (D, D) as one (2 BLOCK_D, 2 BLOCK_D) tile [[W_ll, W_lr], [W_rl, W_rr]], zero-padded."""
    m = xok[:, None] & xok[None, :]
    return tl.load(W_k + xcol[:, None] * D + xcol[None, :], mask=m, other=0.0)


@triton.jit
def _coupling_st(
    u_l,  # (BLOCK_N, BLOCK_D) left half of the block input after InvertibleDense
    A_k,  # pointer to A[k] (Dl, H)
    a_k,  # pointer to a[k] (H,)
    ST_k,  # pointer to ST[k] (H, 2 Dr): [S | T]
    st0_k,  # pointer to st0[k] (2 Dr,): [s0 | t0]
    c,  # (BLOCK_D,) columns of a half
    ml,  # (BLOCK_D,) c < Dl
    scol,  # (2 BLOCK_D,) column of [S | T] each column of an [s | t] tile stands for
    sok,  # (2 BLOCK_D,) whether it is real
    DR: tl.constexpr,  # Dr = D - Dl
    slope,  # LeakyReLU negative slope
    H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PREC: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """[s | t] (BLOCK_N, 2 BLOCK_D) of the coupling net, the hidden layer streamed BLOCK_H
    columns at a time: per chunk pre = u_l A_j + a_j, h = leaky_relu(pre), [s | t] += h [S | T]_j."""
    ddt = A_k.dtype.element_ty
    ul = u_l.to(ddt)
    st = tl.zeros((BLOCK_N, 2 * BLOCK_D), dtype=u_l.dtype)
    hcol = tl.arange(0, BLOCK_H)
    for h0 in tl.range(0, H, BLOCK_H):
        hh = h0 + hcol
        A_j = tl.load(A_k + c[:, None] * H + hh[None, :], mask=ml[:, None], other=0.0)
        pre = _dot(ul, A_j, None, PREC, UPCAST).to(u_l.dtype) + tl.load(a_k + hh)[None, :]
        hid = tl.where(pre > 0, pre, pre * slope).to(ddt)  # (BLOCK_N, BLOCK_H)
        ST_j = tl.load(ST_k + hh[:, None] * (2 * DR) + scol[None, :], mask=sok[None, :], other=0.0)
        st = _dot(hid, ST_j, st, PREC, UPCAST)
    return st + tl.load(st0_k + scol, mask=sok, other=0.0)[None, :]


@triton.jit
def _fwd_block(
    k, x, ld, r, rmask, row0, N64, ACTS, W, A, a, ST, st0, LS, BIAS, store_acts,
    slope, scale_shift, D: tl.constexpr, H: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """Block k on the row tile x = [x_l | x_r] (BLOCK_N, 2 BLOCK_D): its output and ld plus
    the block's sum_j log_sigmoid(s_j + c). Arguments as in `_realnvp_fwd_kernel`."""
    DL: tl.constexpr = D // 2
    DR: tl.constexpr = D - DL
    c = tl.arange(0, BLOCK_D)
    ml = c < DL
    mr = c < DR
    xcol, xok = _halves(BLOCK_D, DL, DR)  # [x_l | x_r] tiles (rows, W, ActNorm)
    scol, sok = _halves(BLOCK_D, DR, DR)  # [s | t] tiles ([S | T], [s0 | t0])
    cdt = x.dtype
    ddt = W.dtype.element_ty
    if store_acts:  # block input, in the dtype the dots read: exact for the backward
        _store_rows(ACTS + (k * N64 + row0) * D, x.to(ddt), r, D, xcol, xok, rmask)
    # InvertibleDense: [u_l | u_r] = [x_l | x_r] W
    u = _dot(x.to(ddt), _load_w(W + k * D * D, D, xcol, xok), None, PREC, UPCAST).to(cdt)
    u_l, u_r = _split(u)
    # Coupling: v_r = u_r sigmoid(s + c) + t
    s, t = _split(
        _coupling_st(
            u_l, A + k * DL * H, a + k * H, ST + k * H * 2 * DR, st0 + k * 2 * DR,
            c, ml, scol, sok, DR, slope, H, BLOCK_N, BLOCK_D, BLOCK_H, PREC, UPCAST,
        )
    )  # fmt: skip
    logsig, _ = _log_sigmoid_pair(s + scale_shift)
    logsig = tl.where(mr[None, :], logsig, 0.0)
    v = _cat(u_l, u_r * tl.exp(logsig) + t)
    # ActNorm: (v + bias) exp(log_scale); padded columns stay 0
    ls = tl.load(LS + k * D + xcol, mask=xok, other=0.0)
    bias = tl.load(BIAS + k * D + xcol, mask=xok, other=0.0)
    return (v + bias[None, :]) * tl.exp(ls)[None, :], ld + tl.sum(logsig, axis=1)


@triton.jit(do_not_specialize=["N", "store_acts"])
def _realnvp_fwd_kernel(
    # data pointers
    X,  # (N, D) input rows, any float dtype (row stride stride_xn, unit column stride)
    Y,  # (N, D) output rows, dtype of X
    LD,  # (N,) data-dependent log-det sum_k sum_j log_sigmoid(s + c), compute dtype
    ACTS,  # (K, N, D) block inputs saved for the backward (dot dtype), unused unless store_acts
    W,  # (K, D, D) InvertibleDense, dot dtype (bf16 for bf16 inputs, else compute dtype)
    A,  # (K, Dl, H) coupling first layer, dot dtype
    a,  # (K, H) its bias, compute dtype
    ST,  # (K, H, 2 Dr) scale and shift heads [S | T], dot dtype
    st0,  # (K, 2 Dr) their biases [s0 | t0], compute dtype
    LS,  # (K, D) ActNorm log_scale, compute dtype
    BIAS,  # (K, D) ActNorm bias, compute dtype
    # shapes
    N,  # rows
    K,  # number of blocks (a runtime loop bound: one compile serves every depth)
    # strides
    stride_xn,  # row stride of X
    stride_yn,  # row stride of Y
    # flags
    store_acts,  # 1: write the block inputs to ACTS (training), 0: inference
    # constants
    slope,  # LeakyReLU negative slope (0.2)
    scale_shift,  # c in sigmoid(s + c) (2.0)
    # meta-parameters
    D: tl.constexpr,  # features (compile-time: masks and strides fold, loads vectorise)
    H: tl.constexpr,  # hidden width (power of two)
    BLOCK_N: tl.constexpr,  # rows per program
    BLOCK_D: tl.constexpr,  # next power of two >= max(Dr, 16): one half of a row
    BLOCK_H: tl.constexpr,  # hidden columns per chunk (divides H)
    PREC: tl.constexpr,  # tl.dot input_precision for fp32 operands: "ieee" or "tf32"
    UPCAST: tl.constexpr,  # CPU interpreter with 16-bit operands only (see _dot)
    K_STATIC: tl.constexpr,  # CPU interpreter only: K as a constant (see `_static`), else 0
):
    tl.static_assert(H % BLOCK_H == 0, "BLOCK_H must divide H")
    tl.static_assert(BLOCK_D >= 16, "tl.dot needs every tile dimension >= 16")
    tl.static_assert(BLOCK_H >= 16, "tl.dot needs every tile dimension >= 16")
    tl.static_assert(2 * BLOCK_D >= D, "two halves of BLOCK_D columns hold a row")
    DL: tl.constexpr = D // 2
    DR: tl.constexpr = D - DL
    pid = tl.program_id(0)
    row0 = tl.cast(pid, tl.int64) * BLOCK_N  # first row of the tile (64-bit: K N D may pass 2^31)
    r = tl.arange(0, BLOCK_N)
    rmask = r < N - row0
    N64 = tl.cast(N, tl.int64)
    xcol, xok = _halves(BLOCK_D, DL, DR)  # [x_l | x_r] tiles (rows, W, ActNorm)
    cdt = LD.dtype.element_ty  # compute dtype: float32, or float64 for float64 inputs

    # 1. the row tile [x_l | x_r]; padded rows and columns hold 0 throughout
    x = _load_rows(X + row0 * stride_xn, r, stride_xn, xcol, xok, rmask, cdt)
    ld = tl.zeros((BLOCK_N,), dtype=cdt)
    if K_STATIC > 0:
        for k in range(0, K_STATIC):
            x, ld = _fwd_block(
                k, x, ld, r, rmask, row0, N64, ACTS, W, A, a, ST, st0, LS, BIAS, store_acts,
                slope, scale_shift, D, H, BLOCK_N, BLOCK_D, BLOCK_H, PREC, UPCAST,
            )  # fmt: skip
    else:
        for k in range(0, K):
            x, ld = _fwd_block(
                k, x, ld, r, rmask, row0, N64, ACTS, W, A, a, ST, st0, LS, BIAS, store_acts,
                slope, scale_shift, D, H, BLOCK_N, BLOCK_D, BLOCK_H, PREC, UPCAST,
            )  # fmt: skip
    _store_rows(Y + row0 * stride_yn, x, r, stride_yn, xcol, xok, rmask)
    tl.store(LD + row0 + r, ld, mask=rmask)


@triton.jit
def _flush(ptr, val, mask, DETERMINISTIC: tl.constexpr):
    """Add a tile's weight-gradient contribution: a relaxed fp atomic into the one L2-resident
    gradient buffer, or (deterministic) a read-modify-write of this program's own slice."""
    if DETERMINISTIC:
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + val, mask=mask)
    else:
        tl.atomic_add(ptr, val, mask=mask, sem="relaxed")


@triton.jit
def _coupling_net_bwd(
    u_l,  # (BLOCK_N, BLOCK_D) the net's input
    gst,  # (BLOCK_N, 2 BLOCK_D) [dL/ds | dL/dt] (0 in padded columns)
    g_ul,  # (BLOCK_N, BLOCK_D) dL/du_l so far (the identity half); the net's part is added
    A_k,
    a_k,
    ST_k,  # A_k, a_k, ST_k: block k's parameters as in _coupling_st
    GA_k,  # gradient slices of block k: (Dl, H)
    Ga_k,  # (H,)
    GST_k,  # (H, 2 Dr)
    c,
    ml,
    scol,
    sok,
    DR: tl.constexpr,
    slope,
    H: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PREC: tl.constexpr,
    UPCAST: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
):
    """Backward of h = leaky_relu(u_l A + a), [s | t] = h [S | T]: streams H again, recomputing
    pre = u_l A_j + a_j chunk by chunk, and flushes each chunk's dA, da, d[S | T].

    The weight-gradient products are written transposed, d[S | T]_j^T = [g_s | g_t]^T h_j and
    dA_j^T = g_pre_j^T u_l, so that their M side (2 BLOCK_D = 64, BLOCK_H = 64) is a Hopper
    warp-group MMA: a 32-row product falls back to register-operand MMAs and spills."""
    ddt = A_k.dtype.element_ty
    cdt = u_l.dtype
    ul = u_l.to(ddt)
    gq = gst.to(ddt)
    gq_t = tl.trans(gq)  # (2 BLOCK_D, BLOCK_N)
    hcol = tl.arange(0, BLOCK_H)
    for h0 in tl.range(0, H, BLOCK_H):
        hh = h0 + hcol
        A_j = tl.load(A_k + c[:, None] * H + hh[None, :], mask=ml[:, None], other=0.0)
        pre = _dot(ul, A_j, None, PREC, UPCAST).to(cdt) + tl.load(a_k + hh)[None, :]
        hid = tl.where(pre > 0, pre, pre * slope).to(ddt)  # (BLOCK_N, BLOCK_H)
        ST_j = tl.load(ST_k + hh[:, None] * (2 * DR) + scol[None, :], mask=sok[None, :], other=0.0)
        g_h = _dot(gq, tl.trans(ST_j), None, PREC, UPCAST).to(cdt)  # (BLOCK_N, BLOCK_H)
        g_pre = tl.where(pre > 0, g_h, g_h * slope)
        gp = g_pre.to(ddt)
        gst_t = _dot(gq_t, hid, None, PREC, UPCAST)  # (2 BLOCK_D, BLOCK_H)
        _flush(GST_k + hh[None, :] * (2 * DR) + scol[:, None], gst_t, sok[:, None], DETERMINISTIC)
        _flush(Ga_k + hh, tl.sum(g_pre, axis=0), hh < H, DETERMINISTIC)
        ga_t = _dot(tl.trans(gp), ul, None, PREC, UPCAST)  # (BLOCK_H, BLOCK_D)
        _flush(GA_k + c[None, :] * H + hh[:, None], ga_t, ml[None, :], DETERMINISTIC)
        g_ul = _dot(gp, tl.trans(A_j), g_ul, PREC, UPCAST)
    return g_ul


@triton.jit
def _bwd_block(
    k, g, gld, r, rmask, row0, N64, ACTS, W, A, a, ST, st0, LS, BIAS, G, slope, scale_shift,
    D: tl.constexpr, H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr, DETERMINISTIC: tl.constexpr, PREC: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    """Block k backward on a row tile: dL/d(block input) from g = dL/d(block output); the
    block's weight gradients added into its slice of G. Arguments as in `_realnvp_bwd_kernel`."""
    DL: tl.constexpr = D // 2
    DR: tl.constexpr = D - DL
    # offsets of each parameter's gradient inside a block's slice of G
    OFF_A: tl.constexpr = D * D
    OFF_a: tl.constexpr = OFF_A + DL * H
    OFF_ST: tl.constexpr = OFF_a + H
    OFF_st0: tl.constexpr = OFF_ST + H * 2 * DR
    OFF_LS: tl.constexpr = OFF_st0 + 2 * DR
    OFF_B: tl.constexpr = OFF_LS + D
    NP: tl.constexpr = OFF_B + D
    c = tl.arange(0, BLOCK_D)
    ml = c < DL
    mr = c < DR
    xcol, xok = _halves(BLOCK_D, DL, DR)
    scol, sok = _halves(BLOCK_D, DR, DR)
    cdt = G.dtype.element_ty
    ddt = W.dtype.element_ty
    G_k = G + k * NP
    acts_k = ACTS + (k * N64 + row0) * D
    W_k = W + k * D * D
    # 1. recompute block k from its saved input
    x = _load_rows(acts_k, r, D, xcol, xok, rmask, ddt)
    u_l, u_r = _split(_dot(x, _load_w(W_k, D, xcol, xok), None, PREC, UPCAST).to(cdt))
    s, t = _split(
        _coupling_st(
            u_l, A + k * DL * H, a + k * H, ST + k * H * 2 * DR, st0 + k * 2 * DR,
            c, ml, scol, sok, DR, slope, H, BLOCK_N, BLOCK_D, BLOCK_H, PREC, UPCAST,
        )
    )  # fmt: skip
    logsig, logsig_neg = _log_sigmoid_pair(s + scale_shift)
    sig = tl.exp(logsig)  # sigmoid(s + c)
    oms = tl.exp(logsig_neg)  # 1 - sigmoid(s + c)
    # 2. ActNorm y = (v + bias) e^ls: d log_scale = sum_n g y, d bias = sum_n g e^ls
    e = tl.exp(tl.load(LS + k * D + xcol, mask=xok, other=0.0))[None, :]
    bias = tl.load(BIAS + k * D + xcol, mask=xok, other=0.0)[None, :]
    gv = g * e
    y = (_cat(u_l, u_r * sig + t) + bias) * e
    _flush(G_k + OFF_LS + xcol, tl.sum(g * y, axis=0), xok, DETERMINISTIC)
    _flush(G_k + OFF_B + xcol, tl.sum(gv, axis=0), xok, DETERMINISTIC)
    gv_l, gv_r = _split(gv)
    # 3. Coupling: v_r = u_r sigmoid(s + c) + t, log-det += log sigmoid(s + c)
    g_s = tl.where(mr[None, :], gv_r * u_r * sig * oms + gld * oms, 0.0)
    g_ur = gv_r * sig
    gst = _cat(g_s, gv_r)  # [dL/ds | dL/dt]
    _flush(G_k + OFF_st0 + scol, tl.sum(gst, axis=0), sok, DETERMINISTIC)
    g_ul = _coupling_net_bwd(
        u_l, gst, gv_l, A + k * DL * H, a + k * H, ST + k * H * 2 * DR,
        G_k + OFF_A, G_k + OFF_a, G_k + OFF_ST,
        c, ml, scol, sok, DR, slope, H, BLOCK_H, PREC, UPCAST, DETERMINISTIC,
    )  # fmt: skip
    # 4. InvertibleDense u = x W: dW = x^T g_u, dL/dx = g_u W^T. x and W are re-read
    # (L1/L2 hits) rather than held in registers over the net.
    gu = _cat(g_ul, g_ur).to(ddt)
    x = _load_rows(acts_k, r, D, xcol, xok, rmask, ddt)
    g_w = _dot(tl.trans(x), gu, None, PREC, UPCAST)  # (2 BLOCK_D, 2 BLOCK_D)
    _flush(G_k + xcol[:, None] * D + xcol[None, :], g_w, xok[:, None] & xok[None, :],
           DETERMINISTIC)  # fmt: skip
    g = _dot(gu, tl.trans(_load_w(W_k, D, xcol, xok)), None, PREC, UPCAST).to(cdt)
    return g


@triton.jit
def _bwd_tile(
    tile,  # row tile index (past the last tile: every row masked, nothing added)
    GY, GLD, GX, ACTS, W, A, a, ST, st0, LS, BIAS, G,  # as in _realnvp_bwd_kernel
    N, K, slope, scale_shift,
    D: tl.constexpr, H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr, DETERMINISTIC: tl.constexpr, PREC: tl.constexpr,
    UPCAST: tl.constexpr, K_STATIC: tl.constexpr,
):  # fmt: skip
    """One row tile through all blocks in reverse: dL/dx of the tile, its weight gradients
    added into G."""
    N64 = tl.cast(N, tl.int64)
    xcol, xok = _halves(BLOCK_D, D // 2, D - D // 2)
    cdt = G.dtype.element_ty
    row0 = tl.cast(tile, tl.int64) * BLOCK_N
    r = tl.arange(0, BLOCK_N)
    rmask = r < N - row0
    g = _load_rows(GY + row0 * D, r, D, xcol, xok, rmask, cdt)  # dL/d(block output)
    gld = tl.load(GLD + row0 + r, mask=rmask, other=0.0).to(cdt)[:, None]
    if K_STATIC > 0:
        for kk in range(0, K_STATIC):
            g = _bwd_block(
                K_STATIC - 1 - kk, g, gld, r, rmask, row0, N64, ACTS, W, A, a, ST, st0, LS,
                BIAS, G, slope, scale_shift, D, H, BLOCK_N, BLOCK_D, BLOCK_H, DETERMINISTIC,
                PREC, UPCAST,
            )  # fmt: skip
    else:
        for kk in range(0, K):
            g = _bwd_block(
                K - 1 - kk, g, gld, r, rmask, row0, N64, ACTS, W, A, a, ST, st0, LS, BIAS, G,
                slope, scale_shift, D, H, BLOCK_N, BLOCK_D, BLOCK_H, DETERMINISTIC, PREC,
                UPCAST,
            )  # fmt: skip
    _store_rows(GX + row0 * D, g, r, D, xcol, xok, rmask)


@triton.jit(do_not_specialize=["N", "n_tiles"])
def _realnvp_bwd_kernel(
    # data pointers
    GY,  # (N, D) dL/dy, any float dtype, contiguous
    GLD,  # (N,) dL/d logabsdet, any float dtype
    GX,  # (N, D) out: dL/dx, dtype of the forward's x
    ACTS,  # (K, N, D) block inputs saved by the forward (dot dtype)
    W,  # (K, D, D)
    A,  # (K, Dl, H)
    a,  # (K, H)
    ST,  # (K, H, 2 Dr)
    st0,  # (K, 2 Dr)
    LS,  # (K, D)
    BIAS,  # (K, D)
    G,  # (P, K, NP) parameter gradients, compute dtype, zeroed; per block the NP = |params|
    #     values [W (D, D) | A (Dl, H) | a (H) | ST (H, 2 Dr) | st0 (2 Dr) | LS (D) | BIAS (D)];
    #     P = 1 (atomics) or the number of programs (DETERMINISTIC)
    # shapes
    N,  # rows
    K,  # number of blocks
    n_tiles,  # cdiv(N, BLOCK_N); program p handles tiles p, p + P, ...
    # constants
    slope,
    scale_shift,
    # meta-parameters
    D: tl.constexpr,
    H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
    DETERMINISTIC: tl.constexpr,  # own partial slice per program (bit-reproducible), no atomics
    PREC: tl.constexpr,
    UPCAST: tl.constexpr,
    K_STATIC: tl.constexpr,  # CPU interpreter only: K and tiles per program as constants
    TILES_STATIC: tl.constexpr,  # (see `_static`), else 0
):
    tl.static_assert(H % BLOCK_H == 0, "BLOCK_H must divide H")
    tl.static_assert(BLOCK_D >= 16, "tl.dot needs every tile dimension >= 16")
    tl.static_assert(BLOCK_H >= 16, "tl.dot needs every tile dimension >= 16")
    tl.static_assert(BLOCK_N >= 16, "tl.dot needs every tile dimension >= 16")
    tl.static_assert(2 * BLOCK_D >= D, "two halves of BLOCK_D columns hold a row")
    NP: tl.constexpr = D * D + (D // 2) * H + H + 2 * (D - D // 2) * (H + 1) + 2 * D
    pid = tl.program_id(0)
    if DETERMINISTIC:  # this program's slice of the partial sums
        G += pid * K * NP
    if TILES_STATIC > 0:
        for i in range(0, TILES_STATIC):
            _bwd_tile(
                pid + i * tl.num_programs(0), GY, GLD, GX, ACTS, W, A, a, ST, st0, LS, BIAS, G,
                N, K, slope, scale_shift, D, H, BLOCK_N, BLOCK_D, BLOCK_H, DETERMINISTIC, PREC,
                UPCAST, K_STATIC,
            )  # fmt: skip
            if DETERMINISTIC:
                tl.debug_barrier()  # the slice is read back by other threads for the next tile
    else:
        for tile in range(pid, n_tiles, tl.num_programs(0)):
            _bwd_tile(
                tile, GY, GLD, GX, ACTS, W, A, a, ST, st0, LS, BIAS, G,
                N, K, slope, scale_shift, D, H, BLOCK_N, BLOCK_D, BLOCK_H, DETERMINISTIC, PREC,
                UPCAST, K_STATIC,
            )  # fmt: skip
            if DETERMINISTIC:
                tl.debug_barrier()


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------
_DOT_PARAMS = (0, 1, 3)  # W, A, ST: tl.dot operands (bf16 for bf16 inputs)


class Settings(NamedTuple):
    """Tiling and launch options of one kernel (see `_fwd_settings` / `_bwd_settings`)."""

    BLOCK_N: int
    BLOCK_D: int
    BLOCK_H: int
    num_warps: int
    num_stages: int


def _precision_key(dtype: torch.dtype) -> str:
    """'fp64', 'bf16' (also fp16), 'tf32' or 'ieee': what the tiles are sized for."""
    if dtype == torch.float64:
        return "fp64"
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16"
    return "tf32" if launch.input_precision(dtype) == "tf32" else "ieee"


def _block_d(D: int) -> int:
    """One half of a row, padded to a power of two >= 16 (tl.dot's minimum tile side)."""
    return max(16, triton.next_power_of_2(D - D // 2))


# Tiles per precision, read off the sm_90 compile (bench/gpu/aot.py, `ptxas -v` with Triton's
# flags) at D in {40, 64} (BLOCK_D = 32), H = 256: the largest row tile that compiles with 0
# bytes spilled. Registers per thread at those settings are in the module docstring.
#   key: (BLOCK_N, BLOCK_H, num_warps, num_stages)
_FWD = {
    # bf16 / TF32: warp-group MMAs (M = 64 per warp group), operands from shared memory
    "bf16": (128, 64, 8, 1),  # 163-177 regs; 128 rows: half the weight re-reads of 64
    "tf32": (128, 64, 8, 1),  # 205-232 regs
    # fp64: DMMA (mma.sync m8n8k4) with register operands, 8 B per element
    "fp64": (64, 64, 8, 1),  # 166-238 regs; 128 rows do not fit
    # IEEE fp32: CUDA-core FMA dots hold their operands' K-slices in registers: H by 16
    "ieee": (64, 16, 8, 1),  # 187-207 regs; BLOCK_H = 32 reaches 253 at D = 64
}
_BWD = {
    "bf16": (64, 64, 8, 1),  # 246-250 regs; 128 rows spill
    "tf32": (32, 32, 4, 1),  # 236-250 regs; (64, 32, 8) spills 350-410 B (fp32 operands)
    "fp64": (16, 16, 4, 1),  # 216-242 regs; (32, 16, 4) spills 108 B, (32, 32, 4) 320 B
    "ieee": (16, 16, 8, 1),  # 222-229 regs; (32, 16, 8) spills 270-280 B
}
# num_stages = 1 everywhere: the loops' loads are small and L2-resident; software pipelining
# would add a shared-memory buffer per stage for nothing. The deterministic backward (P
# programs, grid-strided) compiles at the same settings in 211-254 registers, 0 spilled.


def _settings(table: dict, D: int, H: int, dtype: torch.dtype) -> Settings:
    BLOCK_N, BLOCK_H, num_warps, num_stages = table[_precision_key(dtype)]
    return Settings(BLOCK_N, _block_d(D), min(H, BLOCK_H), num_warps, num_stages)


def _fwd_settings(D: int, H: int, dtype: torch.dtype) -> Settings:
    """Forward tiling for input dtype `dtype` (and TF32 when torch allows it); see `_FWD`."""
    return _settings(_FWD, D, H, dtype)


def _bwd_settings(D: int, H: int, dtype: torch.dtype) -> Settings:
    """Backward tiling; see `_BWD`."""
    return _settings(_BWD, D, H, dtype)


def _upcast(dot_dtype: torch.dtype) -> bool:
    """16-bit dot operands under the CPU interpreter: widen them to fp32 before tl.dot."""
    return launch.interpreting() and dot_dtype in (torch.bfloat16, torch.float16)


def _static(n: int) -> int:
    """A loop bound as a compile-time constant in the CPU interpreter, else 0 (a runtime bound:
    one compile serves every K and N). Triton 3.6's interpreter under NumPy >= 2.4 cannot
    iterate over a runtime bound (range() calls __index__ on a one-element array); 3.9's can."""
    return n if launch.interpreting() else 0


def _kernel_params(params: tuple[torch.Tensor, ...], x_dtype: torch.dtype) -> list[torch.Tensor]:
    """Contiguous kernel copies: W, A, ST in the dot dtype, the vectors in the compute dtype."""
    cdt = launch.compute_dtype(x_dtype)
    ddt = x_dtype if x_dtype in (torch.bfloat16, torch.float16) else cdt
    return [
        p.detach().to(ddt if i in _DOT_PARAMS else cdt).contiguous() for i, p in enumerate(params)
    ]


def _launch_forward(
    x: torch.Tensor, kparams: list[torch.Tensor], slope: float, scale_shift: float, store: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """y (N, D) in x.dtype, ld (N,) in the compute dtype, and the block inputs (K, N, D) when
    `store` (dot dtype: what the recomputation in the backward reads)."""
    N, D = x.shape
    K, _, H = kparams[1].shape
    cfg = _fwd_settings(D, H, x.dtype)
    if x.stride(1) != 1:
        x = x.contiguous()
    y = launch.empty((N, D), x, x.dtype)
    ld = launch.empty((N,), x, launch.compute_dtype(x.dtype))
    acts = launch.empty((K, N, D), x, kparams[0].dtype) if store else None
    _realnvp_fwd_kernel[(triton.cdiv(N, cfg.BLOCK_N),)](
        x, y, ld, acts if store else kparams[0], *kparams,
        N, K,
        x.stride(0), y.stride(0),
        int(store),
        float(slope), float(scale_shift),
        D=D, H=H, BLOCK_N=cfg.BLOCK_N, BLOCK_D=cfg.BLOCK_D, BLOCK_H=cfg.BLOCK_H,
        PREC=launch.input_precision(x.dtype),
        UPCAST=_upcast(kparams[0].dtype), K_STATIC=_static(K),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, **launch.FP_FUSION,
    )  # fmt: skip
    return y, ld, acts


def _launch_backward(
    gy: torch.Tensor,
    gld: torch.Tensor,
    acts: torch.Tensor,
    kparams: list[torch.Tensor],
    slope: float,
    scale_shift: float,
    x_dtype: torch.dtype,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """dL/dx (N, D) in x_dtype and the parameter gradients in the compute dtype.

    Default: every program atomically adds its tiles' weight gradients into one buffer (fast,
    summation order not fixed). Under `torch.use_deterministic_algorithms(True)`: a persistent
    grid of P programs, each owning a partial-sum slice it updates tile after tile, summed in a
    fixed order afterwards (bit-identical on reruns, P x the gradient memory and traffic).
    """
    K, N, D = acts.shape
    H = kparams[1].shape[2]
    cdt = launch.compute_dtype(x_dtype)
    cfg = _bwd_settings(D, H, x_dtype)
    n_tiles = triton.cdiv(N, cfg.BLOCK_N)
    deterministic = torch.are_deterministic_algorithms_enabled()
    P = min(n_tiles, launch.max_programs(acts.device)) if deterministic else 1
    grid = P if deterministic else n_tiles
    gx = launch.empty((N, D), acts, x_dtype)
    sizes = [p[0].numel() for p in kparams]  # per block: W, A, a, ST, st0, log_scale, bias
    G = torch.zeros((P, K, sum(sizes)), device=acts.device, dtype=cdt)
    _realnvp_bwd_kernel[(grid,)](
        gy.contiguous(), gld.contiguous(), gx, acts, *kparams, G,
        N, K, n_tiles,
        float(slope), float(scale_shift),
        D=D, H=H, BLOCK_N=cfg.BLOCK_N, BLOCK_D=cfg.BLOCK_D, BLOCK_H=cfg.BLOCK_H,
        DETERMINISTIC=deterministic, PREC=launch.input_precision(x_dtype),
        UPCAST=_upcast(kparams[0].dtype), K_STATIC=_static(K),
        TILES_STATIC=_static(triton.cdiv(n_tiles, grid)),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, **launch.FP_FUSION,
    )  # fmt: skip
    G = G.sum(0) if deterministic else G[0]  # (K, NP): fixed-order sum over the programs
    return gx, [g.view(p.shape) for g, p in zip(G.split(sizes, dim=1), kparams, strict=True)]


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------
class _RealNVPFunction(torch.autograd.Function):
    """(x, *params) -> (y, data-dependent logdet); the backward recomputes each block from its
    saved input (the forward writes the K block inputs)."""

    @staticmethod
    def forward(ctx, x, slope, scale_shift, *params):
        kparams = _kernel_params(params, x.dtype)
        y, ld, acts = _launch_forward(x.detach(), kparams, slope, scale_shift, store=True)
        ctx.save_for_backward(acts, *kparams)
        ctx.slope, ctx.scale_shift, ctx.x_dtype = slope, scale_shift, x.dtype
        ctx.param_dtypes = [p.dtype for p in params]
        return y, ld

    @staticmethod
    def backward(ctx, gy, gld):
        acts, *kparams = ctx.saved_tensors
        _, N, D = acts.shape
        if gy is None:
            gy = torch.zeros((N, D), device=acts.device, dtype=ctx.x_dtype)
        if gld is None:
            gld = torch.zeros((N,), device=acts.device, dtype=ctx.x_dtype)
        gx, grads = _launch_backward(
            gy, gld, acts, kparams, ctx.slope, ctx.scale_shift, ctx.x_dtype
        )
        grads = [g.to(dt) for g, dt in zip(grads, ctx.param_dtypes, strict=True)]
        return gx, None, None, *grads


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check_shapes(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> None:
    """Clear one-line errors for a wrong input: the layout's (`realnvp.check_params`), then the
    kernel's own limits (K >= 1, H a power of two >= 16)."""
    if x.dim() != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}: flatten leading dims")
    if len(params) != len(PARAM_NAMES):
        raise ValueError(f"expected the {len(PARAM_NAMES)} parameters {PARAM_NAMES}")
    check_params(x, params)
    K, H = params[0].shape[0], params[1].shape[-1]
    if K < 1:
        raise ValueError("realnvp_forward needs K >= 1 blocks (K = 0 is the identity)")
    if H < 16 or H & (H - 1):
        raise ValueError(f"hidden width H={H} must be a power of two >= 16 for the fused flow")


def realnvp_forward(
    x: torch.Tensor,
    W: torch.Tensor,
    A: torch.Tensor,
    a: torch.Tensor,
    ST: torch.Tensor,
    st0: torch.Tensor,
    log_scale: torch.Tensor,
    bias: torch.Tensor,
    *,
    slope: float,
    scale_shift: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real NVP forward over K stacked blocks (Appendix B.2; DESIGN.md "Real NVP").

    x (N, D); W (K, D, D), A (K, Dl, H), a (K, H), ST (K, H, 2 Dr) = [S | T],
    st0 (K, 2 Dr) = [s0 | t0], log_scale / bias (K, D). Returns y (N, D) and logabsdet (N,) =
    sum_k [log|det W_k| + sum_j log_sigmoid(s_kj + scale_shift) + sum_j log_scale_kj].
    Differentiable in x and every parameter. Block 0 is applied first.
    """
    params = (W, A, a, ST, st0, log_scale, bias)
    _check_shapes(x, params)
    needs_grad = x.requires_grad or any(p.requires_grad for p in params)
    if torch.is_grad_enabled() and needs_grad:
        y, ld = _RealNVPFunction.apply(x, slope, scale_shift, *params)
    else:  # inference: no block inputs are stored
        kparams = _kernel_params(params, x.dtype)
        y, ld, _ = _launch_forward(x, kparams, slope, scale_shift, store=False)
    cdt = launch.compute_dtype(x.dtype)
    const = logdet_constant(W.to(cdt), log_scale.to(cdt))
    return y, (ld + const).to(x.dtype)
