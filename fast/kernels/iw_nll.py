"""Fused decoder head + Bernoulli log-likelihood + log-mean-exp over samples (Eqs. 1-5, App. B.3).

What is fused and why
---------------------
The decoder's output layer l = h W^T + b (DenseVAE: Linear(500, 784); conv decoders: a 1x1
Conv2d(32 or 33, 1) on (C, 28, 28) maps) feeds log p(x|z) = sum_d x_d l_d - softplus(l_d), and
the importance-weighted NLL of Appendix B.3 log-mean-exps log w = log p(x|z) + log p(z) -
log q(z|x) over S = 1000 samples. Eager torch writes the (S*B, 784) logits and reads/writes them
again in every element-wise step: at S = 1000, B = 128 `iw_nll_torch` moves 2.7 GB (TF32) for
0.26 GB of h. Here one program owns a tile of sample rows, produces its logits one pixel tile
at a time on the tensor cores and folds them at once into the Bernoulli sum, then into a
running per-image (max, sum exp) and sum of log p(x|z) (the flash-attention cross-entropy
pattern): neither the logits nor the log weights exist in memory, and evaluation can stream S
in chunks through `iw_logsumexp_parts`.

Kernels and loop order (rows are sample-major: row s * B + b uses x[b], DESIGN.md)
-----------------------------------------------------------------------------------
- `_loglik_fwd_kernel`, `_iw_nll_fwd_kernel`: for each row tile (grid-strided, one wave of
  programs): for each pixel tile (784 = 6 x 128 + 16 = 12 x 64 + 16 = 3 x 256 + 16: main
  tiles plus a 16-pixel tail, no padded pixel): for each hidden chunk: acc += h[:, k] W[d, k]^T
  (K = 500 runs as 512); then + b, x l - softplus(l) summed over the tile. The IW-NLL kernel
  adds log p(z) - log q(z|x) and folds each (BLOCK_S samples x BLOCK_B images) tile into the
  per-image running state; torch combines the per-program partials. Small M (training batches)
  splits the pixel tiles over programs too (partial sums per pixel tile, added by torch).
- `_dense_bwd_rows_kernel` (large M): for each row tile: for each pixel tile: recompute l (the
  K loop above), dl = g (x - sigmoid(l)), db += sum dl; then one pass over the hidden chunks:
  dW[d, k] += dl^T h[:, k] and dh[:, k] += dl W[d, k]. dh accumulates in the program's own rows
  (the output rows for fp32/fp64, a float32 scratch for bf16; L2-resident, no race), written
  once in the output dtype by the last pixel tile. dW, db: a relaxed float atomic add into one
  L2-resident float32 (float64) buffer, or, under `torch.use_deterministic_algorithms(True)`,
  per-program partial slices read-modify-written tile after tile and summed by torch
  (bit-reproducible; as PyTorch, fast by default, deterministic on request).
- `_dense_bwd_split_kernel` (small M): one program per 16-pixel tile walks all row tiles;
  dW[d, :] and db[d] stay in registers (IEEE fp32: in its own rows of dW) and are written once;
  dh gets one contribution per pixel tile: atomics into a zeroed float32 buffer, or one slice
  per pixel tile when deterministic.
- `_conv_bwd_kernel`: the forward keeps the (M, 784) logits when a gradient is needed (1/C of
  h), so the backward reads h once: for each row tile, pixel tile: dl from the stored logits;
  for each channel: dh[:, c] = dl w[c] (written), dw[c] += sum dl h[:, c]; dw, db per row tile
  in registers, summed by torch (deterministic, no atomics).

Precision: bf16 operands go to the tensor cores as bf16 with float32 accumulation (dl is
rounded to bf16 for the backward products, as torch's autograd rounds grad_logits); float32
runs TF32 when `torch.backends.cuda.matmul.allow_tf32`, else IEEE FMAs; float64 runs DMMA.
Element-wise math (softplus, sigmoid, log-sum-exp) is float32 (float64 for float64 inputs).

Live tiles, registers, shared memory (sm_90 compile of every captured launch, 0 B spilled)
------------------------------------------------------------------------------------------
Block sizes, warps and stages come from one table per kernel (`_ROWS`, `_BWD_ROWS`, `_SPLIT`,
`_BWD_SPLIT`, `_CONV`) read by one settings function per kernel, with the reasons beside them.
Registers per thread as ptxas reports them (255 is the limit), shared memory per block:

| kernel (launch) | bf16 | TF32 | IEEE fp32 | fp64 | live tiles per program |
| --- | --- | --- | --- | --- | --- |
| forward, rows | 188 / 32 KB | 176 / 72 KB | 206 / 48 KB | 158 / 12 KB | acc 128x128 (bf16) or 64x128 (fp32) or 32x64 (fp64); x tile, softplus |
| forward, split | 128 / 48 KB | 156 / 48 KB | 128 / 16 KB | 168 / 12 KB | acc 64x64 (fp64 32x64) |
| IW-NLL | 182 / 32 KB | 179 / 72 KB | 202 / 48 KB | 128 / 12 KB | as forward rows + (BLOCK_B,) max, sum, sum ll |
| backward, rows | 239 / 58 KB | 254 / 108 KB | 208 / 56 KB | 215 / 52 KB | l, dl 64x128 (fp64 32x64), dl in two operand layouts, dW chunk 128x16, dh chunk 64x16 |
| backward, split | 192 / 68 KB | 170 / 68 KB | 102 / 8 KB | 206 / 32 KB | dW^T halves 2 x 256x16, h halves, l, dl |
| conv forward / IW / backward | 40-48 | 42-63 | 42-63 | 80-128 | 4 x 256 acc (+ dw vector of 64) |

(conv shared memory: <= 4 KB; every configuration <= 110,592 B of the 232,448 B sm_90 allows.)

Bytes moved at production shapes (bench/gpu/cost_iw_nll.py, H100 roofline; HBM / L2)
------------------------------------------------------------------------------------
| call | fused HBM | min | eager HBM | fused / eager time |
| --- | --- | --- | --- | --- |
| iw_nll dense, S=1000 B=128, TF32 | 259 MB | 259 MB | 2673 MB | 208 / 804 us |
| iw_nll dense, bf16 | 130 MB | 130 MB | 1337 MB | 104 / 402 us |
| bernoulli_loglik dense fwd, M=128000, TF32 | 258 MB | 258 MB | 3871 MB | 208 / 1162 us |
| dense backward, M=128000, TF32 | 518 MB | 516 MB | 4931 MB | 623 / 1484 us |
| iw_nll conv 32, fp32 | 12.85 GB | 12.85 GB | 15.26 GB | 3836 / 4555 us |

L2 side (not in the roofline): the dense forward re-reads h from L2 once per pixel tile (7x)
and W once per row tile (1000-2000x): 1.9 GB (bf16) / 5.3 GB (fp32) per 128,000 rows; the
large-M backward 11-16 GB plus 3.1 GB of dW atomics, and is more likely L2- than
compute-bound on an H100 (no GPU measurement exists yet).

Targets not met, and why: IEEE fp32 and fp64 products run on CUDA cores / DMMA in both the
fused kernel and eager's GEMM, so fused / eager time is bounded by eager's extra element-wise
traffic (0.45-0.73 forward); the backward recomputes the logits (3 products against eager's
2), so it cannot reach 1/3 (0.42 TF32 / bf16); the conv heads and the M = 128 batches are
dominated by reading h (conv) or W (dense, 1.6 MB against 0.4 MB of logits), which eager
reads too (0.38-0.88).

The Triton interpreter (TRITON_INTERPRET=1, CPU tests) multiplies bf16 dot operands as raw
bits (triton-lang/triton#11584); under it bf16 products are widened to float32 (`_mma`).

Order: helpers -> kernels -> settings -> launchers -> autograd.Function -> public functions;
the chunked eager torch fallback `iw_nll_torch` (CPU path and benchmark baseline) is at the end.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from vaeprior.fast.kernels import launch

__all__ = [
    "bernoulli_loglik",
    "bernoulli_loglik_conv1x1",
    "iw_logsumexp_parts",
    "iw_nll",
    "iw_nll_conv1x1",
    "iw_nll_from_parts",
    "iw_nll_torch",
]

N_PIXELS = 784  # 28 x 28 binarized pixels (Python int, for the launchers)
NPIX = tl.constexpr(N_PIXELS)  # the same, as a compile-time constant the kernels may read
MAX_HID = 2048  # widest dense hidden layer the backward's register accumulator takes


# --------------------------------------------------------------------------------------------
# kernels: tile helpers
# --------------------------------------------------------------------------------------------
@triton.jit
def _softplus(l):
    """log(1 + e^l) without overflow: max(l, 0) + log(1 + e^-|l|)."""
    return tl.maximum(l, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(l)))


@triton.jit
def _mma(a, b, acc, PRECISION: tl.constexpr):
    """tl.dot(a, b, acc) at `PRECISION` ("tf32" / "ieee" for float32 operands; 16-bit operands
    run on the tensor cores as they are). "interpret-f32" (CPU interpreter only) widens the
    operands to float32 first: the Triton interpreter multiplies bf16 dot operands as raw bit
    patterns (triton-lang/triton#11584), so its bf16 runs keep bf16 loads, stores and
    conversions and do the products exactly."""
    if PRECISION == "interpret-f32":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _dense_logits(
    Hp,  # (M, HID) last hidden activations, contiguous, input dtype
    Wp,  # (NPIX, HID) nn.Linear.weight, contiguous, input dtype
    Bp,  # (NPIX,) bias in the accumulation dtype (float32, or float64)
    rows,  # (BLOCK_M,) int64 row ids
    rmask,  # (BLOCK_M,) rows that exist
    dcols,  # (BD,) pixel ids (all < NPIX: the tiles cover NPIX exactly)
    HID: tl.constexpr,  # hidden width: the K of the matmul and the row stride of h and W
    BLOCK_M: tl.constexpr,
    BD: tl.constexpr,  # pixels of this tile (BLOCK_D, or BLOCK_D_TAIL for the last tile)
    BLOCK_K: tl.constexpr,  # hidden chunk per tl.dot
    PRECISION: tl.constexpr,  # tl.dot input_precision for float32 inputs: "tf32" or "ieee"
):
    """Logits l = h W^T + b of a (BLOCK_M, BD) tile; dots on the input dtype, accumulated in
    the dtype of b (float32 for 16/32-bit inputs, float64 for float64)."""
    tl.static_assert(BLOCK_K >= 16, "tl.dot needs K >= 16")
    kcol = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BD), dtype=Bp.dtype.element_ty)
    for k0 in range(0, HID, BLOCK_K):
        kk = k0 + kcol
        kmask = kk < HID
        h = tl.load(
            Hp + rows[:, None] * HID + kk[None, :],
            mask=rmask[:, None] & kmask[None, :],
            other=0.0,
        )  # (BLOCK_M, BLOCK_K)
        w_t = tl.load(
            Wp + dcols[None, :] * HID + kk[:, None],
            mask=kmask[:, None],
            other=0.0,
        )  # (BLOCK_K, BD): W^T chunk, k contiguous (K-major for the tensor cores)
        acc = _mma(h, w_t, acc, PRECISION)
    return acc + tl.load(Bp + dcols)[None, :]


@triton.jit
def _conv_logits(
    Hp,  # (M, C, NPIX) last hidden activations (NCHW flattened), contiguous
    Wp,  # (C,) 1x1-conv weight, accumulation dtype
    Bp,  # (1,) bias, accumulation dtype
    rows,  # (BLOCK_M,) int64 row ids
    rmask,  # (BLOCK_M,)
    dcols,  # (BD,) pixel ids
    C,  # channels (runtime: 32 and 33 share one binary)
    BLOCK_M: tl.constexpr,
    BD: tl.constexpr,
):
    """Logits l[m, p] = sum_c h[m, c, p] w[c] + b of a (BLOCK_M, BD) tile (CUDA-core FMAs)."""
    base = Hp + rows[:, None] * (C * NPIX) + dcols[None, :]  # (BLOCK_M, BD) pointers, channel 0
    acc = tl.zeros((BLOCK_M, BD), dtype=Bp.dtype.element_ty)
    for c in range(0, C):
        hc = tl.load(base + c * NPIX, mask=rmask[:, None], other=0.0)
        acc += hc.to(acc.dtype) * tl.load(Wp + c)
    return acc + tl.load(Bp)


@triton.jit
def _bernoulli_terms(l, Xp, xrows, dcols):
    """x l - softplus(l) of a (BLOCK_M, BD) logits tile; x read from (B, NPIX) (xrows < B)."""
    x = tl.load(Xp + xrows[:, None] * NPIX + dcols[None, :]).to(l.dtype)
    return x * l - _softplus(l)


@triton.jit
def _tile_loglik(
    Hp, Wp, Bp, Xp, LOGITS,  # as in the kernels; LOGITS (M, NPIX) written when STORE_LOGITS
    rows, xrows, rmask,  # (BLOCK_M,) row ids, image of each row, valid rows
    d0,  # first pixel of the tile
    HID: tl.constexpr, C,  # dense hidden width (constexpr) / conv channels (runtime)
    IS_CONV: tl.constexpr, STORE_LOGITS: tl.constexpr,
    BLOCK_M: tl.constexpr, BD: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """(BLOCK_M,) sum over the BD pixels of one tile of x_d l_d - softplus(l_d)."""
    dcols = d0 + tl.arange(0, BD)
    if IS_CONV:
        l = _conv_logits(Hp, Wp, Bp, rows, rmask, dcols, C, BLOCK_M, BD)
    else:
        l = _dense_logits(Hp, Wp, Bp, rows, rmask, dcols, HID, BLOCK_M, BD, BLOCK_K, PRECISION)
    if STORE_LOGITS:  # kept for the conv backward: 1/C of h, so h is read once per pass
        tl.store(LOGITS + rows[:, None] * NPIX + dcols[None, :], l, mask=rmask[:, None])
    return tl.sum(_bernoulli_terms(l, Xp, xrows, dcols), axis=1)  # rows >= M: masked by callers


@triton.jit
def _rows_loglik(
    Hp, Wp, Bp, Xp, LOGITS, rows, xrows, rmask,
    d_tile,  # -1: all pixels (main tiles then the tail); j >= 0: pixel tile j only (split)
    HID: tl.constexpr, C, IS_CONV: tl.constexpr, STORE_LOGITS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_D_TAIL: tl.constexpr,
    BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """(BLOCK_M,) log p(x|z) of a row tile: NPIX = D_MAIN (BLOCK_D tiles) + a BLOCK_D_TAIL tile.

    784 = 6 x 128 + 16 = 3 x 256 + 16 = 12 x 64 + 16: a power-of-two main tile plus a 16-wide
    tail covers the pixels exactly, where one padded tile size would waste up to 14 %.
    """
    D_MAIN: tl.constexpr = NPIX // BLOCK_D * BLOCK_D
    tl.static_assert(D_MAIN + BLOCK_D_TAIL == NPIX, "pixel tiles must cover NPIX exactly")
    ll = tl.zeros((BLOCK_M,), dtype=Bp.dtype.element_ty)
    if d_tile < 0:
        for d0 in range(0, D_MAIN, BLOCK_D):
            ll += _tile_loglik(Hp, Wp, Bp, Xp, LOGITS, rows, xrows, rmask, d0, HID, C, IS_CONV,
                               STORE_LOGITS, BLOCK_M, BLOCK_D, BLOCK_K, PRECISION)  # fmt: skip
        if BLOCK_D_TAIL > 0:
            ll += _tile_loglik(Hp, Wp, Bp, Xp, LOGITS, rows, xrows, rmask, D_MAIN, HID, C,
                               IS_CONV, STORE_LOGITS, BLOCK_M, BLOCK_D_TAIL, BLOCK_K,
                               PRECISION)  # fmt: skip
    elif d_tile * BLOCK_D < D_MAIN:
        ll += _tile_loglik(Hp, Wp, Bp, Xp, LOGITS, rows, xrows, rmask, d_tile * BLOCK_D, HID, C,
                           IS_CONV, STORE_LOGITS, BLOCK_M, BLOCK_D, BLOCK_K,
                           PRECISION)  # fmt: skip
    else:
        if BLOCK_D_TAIL > 0:
            ll += _tile_loglik(Hp, Wp, Bp, Xp, LOGITS, rows, xrows, rmask, D_MAIN, HID, C,
                               IS_CONV, STORE_LOGITS, BLOCK_M, BLOCK_D_TAIL, BLOCK_K,
                               PRECISION)  # fmt: skip
    return ll


@triton.jit
def _accumulate(ptrs, val, mask, DETERMINISTIC: tl.constexpr):
    """ptrs += val: a read-modify-write of this program's own partial slice (deterministic),
    or a relaxed float atomic add into one shared buffer (order-dependent rounding)."""
    if DETERMINISTIC:
        tl.store(ptrs, tl.load(ptrs, mask=mask, other=0.0) + val, mask=mask)
    else:
        tl.atomic_add(ptrs, val, mask=mask, sem="relaxed")


@triton.jit
def _dense_bwd_dtile(
    Hp, Wp, Bp, Xp,
    GW,  # dL/dW target (NPIX, HID), accumulation dtype: shared (atomics) or owned (plain RMW)
    GB,  # dL/db target (NPIX,)
    GH,  # (M, HID) output dL/dh (STAGE 2)
    acc_rows,  # (BLOCK_M,) pointers to this tile's dh accumulator rows (HID apart)
    g,  # (BLOCK_M,) dL/d ll, accumulation dtype (0 for rows >= M)
    rows, xrows, rmask, d0,
    STAGE: tl.constexpr,  # dh: 0 store (first pixel tile), 1 add, 2 add and write GH (last),
    #                       3 atomic add (split kernel; plain add when DH_OWNED)
    DW_OWNED: tl.constexpr,  # GW, GB belong to this program alone: plain read-modify-write
    DH_OWNED: tl.constexpr,  # STAGE 3 only: acc_rows belong to this program alone
    HID: tl.constexpr, BLOCK_M: tl.constexpr, BD: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """One (BLOCK_M, BD) pixel tile of the backward: recompute l (K loop over h, W), dl =
    g (x - sigmoid(l)), db += sum_rows dl, then one more pass over the hidden chunks k:
    dW[d, k] += dl^T h[:, k] and dh[:, k] += dl W[d, k] (both operands L2-hot)."""
    dcols = d0 + tl.arange(0, BD)
    l = _dense_logits(Hp, Wp, Bp, rows, rmask, dcols, HID, BLOCK_M, BD, BLOCK_K, PRECISION)
    x = tl.load(Xp + xrows[:, None] * NPIX + dcols[None, :]).to(l.dtype)
    dl = g[:, None] * (x - tl.sigmoid(l))  # (BLOCK_M, BD); rows >= M have g = 0
    _accumulate(GB + dcols, tl.sum(dl, axis=0), dcols < NPIX, DW_OWNED)
    dlc = dl.to(Hp.dtype.element_ty)  # bf16 stays bf16 on the tensor cores, as torch's autograd
    kcol = tl.arange(0, BLOCK_K)
    for k0 in range(0, HID, BLOCK_K):
        kk = k0 + kcol
        kmask = kk < HID
        hk = tl.load(
            Hp + rows[:, None] * HID + kk[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0
        )  # (BLOCK_M, BLOCK_K)
        gw = _mma(tl.trans(dlc), hk, tl.zeros((BD, BLOCK_K), l.dtype), PRECISION)
        _accumulate(GW + dcols[:, None] * HID + kk[None, :], gw, kmask[None, :], DW_OWNED)
        wk = tl.load(Wp + dcols[:, None] * HID + kk[None, :], mask=kmask[None, :], other=0.0)
        part = _mma(dlc, wk, tl.zeros((BLOCK_M, BLOCK_K), l.dtype), PRECISION)  # dl W[d, k]
        am = rmask[:, None] & kmask[None, :]
        acc_ptr = acc_rows[:, None] + kk[None, :]
        if STAGE == 3:
            _accumulate(acc_ptr, part, am, DH_OWNED)
        else:
            if STAGE != 0:
                part += tl.load(acc_ptr, mask=am, other=0.0)
            if STAGE == 2:
                gh = GH + rows[:, None] * HID + kk[None, :]
                tl.store(gh, part.to(GH.dtype.element_ty), mask=am)
            else:
                tl.store(acc_ptr, part, mask=am)


@triton.jit
def _lse_update(lw, valid, run_max, run_sum, BLOCK_S: tl.constexpr, BLOCK_B: tl.constexpr):
    """Fold a (BLOCK_S * BLOCK_B,) tile of log weights (sample-major) into the per-image running
    (max, sum exp(. - max)) of length BLOCK_B (the flash-attention cross-entropy update)."""
    lw2 = tl.reshape(tl.where(valid, lw, float("-inf")), (BLOCK_S, BLOCK_B))
    new_max = tl.maximum(run_max, tl.max(lw2, axis=0))
    safe = tl.where(new_max == float("-inf"), 0.0, new_max)  # no (-inf) - (-inf)
    run_sum = run_sum * tl.exp(run_max - safe) + tl.sum(tl.exp(lw2 - safe[None, :]), axis=0)
    return new_max, run_sum


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["C"])  # conv heads of 32 and 33 channels: one binary
def _loglik_fwd_kernel(
    # data pointers
    Hp,  # (M, HID) dense or (M, C, NPIX) conv last hidden activations, contiguous
    Wp,  # (NPIX, HID) dense weight (input dtype) or (C,) conv weight (accumulation dtype)
    Bp,  # (NPIX,) dense or (1,) conv bias, accumulation dtype
    Xp,  # (B, NPIX) binarized images
    LL,  # (n_dsplit, M) out: log p(x|z) per row, per pixel tile when split (accumulation dtype)
    LOGITS,  # (M, NPIX) out when STORE_LOGITS (conv training: the backward reads them)
    # shapes
    M,  # rows (S * B, sample-major)
    B,  # images: row r uses x[r % B]
    C,  # conv channels (unused by the dense head)
    n_tiles,  # row tiles: cdiv(M, BLOCK_M)
    # constants
    HID: tl.constexpr,  # dense hidden width (1 for the conv head)
    IS_CONV: tl.constexpr,  # 1x1-conv head instead of the dense one
    STORE_LOGITS: tl.constexpr,  # write LOGITS
    SPLIT: tl.constexpr,  # grid axis 1 = pixel tiles (small M), partial sums in LL[d_tile]
    BLOCK_M: tl.constexpr,  # rows per tile
    BLOCK_D: tl.constexpr,  # pixels per main tile
    BLOCK_D_TAIL: tl.constexpr,  # pixels of the last tile (NPIX % BLOCK_D rounded up), or 0
    BLOCK_K: tl.constexpr,  # hidden chunk per tl.dot (dense)
    PRECISION: tl.constexpr,  # "tf32" or "ieee" for float32 dots
):
    """Row tiles (grid-strided over axis 0); each sums x l - softplus(l) over its pixels."""
    if SPLIT:
        d_tile = tl.program_id(1)
        out = LL + d_tile.to(tl.int64) * M
    else:
        d_tile = -1
        out = LL
    for tile in range(tl.program_id(0), n_tiles, tl.num_programs(0)):
        rows = (tile * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # 64-bit: M*C*NPIX > 2^31
        rmask = rows < M
        ll = _rows_loglik(Hp, Wp, Bp, Xp, LOGITS, rows, rows % B, rmask, d_tile, HID, C, IS_CONV,
                          STORE_LOGITS, BLOCK_M, BLOCK_D, BLOCK_D_TAIL, BLOCK_K,
                          PRECISION)  # fmt: skip
        tl.store(out + rows, ll, mask=rmask)


@triton.jit(do_not_specialize=["C"])  # conv heads of 32 and 33 channels: one binary
def _iw_nll_fwd_kernel(
    # data pointers
    Hp,  # (S*B, HID) or (S*B, C, NPIX), rows sample-major (row s * B + b)
    Wp,  # output weights (as _loglik_fwd_kernel)
    Bp,  # output bias, accumulation dtype
    Xp,  # (B, NPIX)
    LPZ,  # (S, B) log p(z), contiguous
    LQZ,  # (S, B) log q(z|x), contiguous
    LOGW,  # (S, B) out: log weights, written when STORE_LOGW (state dtype)
    PMAX,  # (n_split, B) out: max over this program's samples of log w (state dtype)
    PSUM,  # (n_split, B) out: sum over them of exp(log w - max)
    PLL,  # (n_split, B) out: sum over them of log p(x|z)
    # shapes
    S,  # samples per image
    B,  # images
    C,  # conv channels (unused by the dense head)
    n_stiles,  # sample tiles: cdiv(S, BLOCK_S)
    stiles_per_prog,  # sample tiles per program along grid axis 1
    # constants
    HID: tl.constexpr,
    IS_CONV: tl.constexpr,
    STORE_LOGW: tl.constexpr,
    BLOCK_S: tl.constexpr,  # samples per tile
    BLOCK_B: tl.constexpr,  # images per tile: a tile is BLOCK_S * BLOCK_B rows
    BLOCK_D: tl.constexpr,
    BLOCK_D_TAIL: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Program (b tile, split) streams its sample tiles: log w = ll + log p(z) - log q(z|x)
    folded into a running per-image (max, sum exp) and sum of ll; neither the logits nor the
    log weights are stored (unless STORE_LOGW)."""
    BLOCK_M: tl.constexpr = BLOCK_S * BLOCK_B
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    r = tl.arange(0, BLOCK_M)
    bb = pid_b * BLOCK_B + r % BLOCK_B  # (BLOCK_M,) image of each row
    sdt = PMAX.dtype.element_ty
    run_max = tl.full((BLOCK_B,), float("-inf"), dtype=sdt)
    run_sum = tl.zeros((BLOCK_B,), dtype=sdt)
    run_ll = tl.zeros((BLOCK_B,), dtype=sdt)
    t0 = pid_s * stiles_per_prog
    for t in range(t0, tl.minimum(t0 + stiles_per_prog, n_stiles)):
        ss = t * BLOCK_S + r // BLOCK_B  # (BLOCK_M,) sample of each row
        valid = (ss < S) & (bb < B)
        rows = ss.to(tl.int64) * B + bb  # 64-bit offsets: S*B*C*NPIX > 2^31 at paper size
        ll = _rows_loglik(Hp, Wp, Bp, Xp, Hp, rows, bb % B, valid, -1, HID, C, IS_CONV, False,
                          BLOCK_M, BLOCK_D, BLOCK_D_TAIL, BLOCK_K, PRECISION)  # fmt: skip
        ll = ll.to(sdt)
        lw = ll + tl.load(LPZ + rows, mask=valid, other=0.0).to(sdt)
        lw -= tl.load(LQZ + rows, mask=valid, other=0.0).to(sdt)
        if STORE_LOGW:
            tl.store(LOGW + rows, lw, mask=valid)
        run_max, run_sum = _lse_update(lw, valid, run_max, run_sum, BLOCK_S, BLOCK_B)
        run_ll += tl.sum(tl.reshape(tl.where(valid, ll, 0.0), (BLOCK_S, BLOCK_B)), axis=0)
    b_out = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = b_out < B
    tl.store(PMAX + pid_s * B + b_out, run_max, mask=bmask)
    tl.store(PSUM + pid_s * B + b_out, run_sum, mask=bmask)
    tl.store(PLL + pid_s * B + b_out, run_ll, mask=bmask)


@triton.jit
def _dense_bwd_rows_kernel(
    # data pointers
    Hp,  # (M, HID) input dtype, contiguous
    Wp,  # (NPIX, HID) input dtype
    Bp,  # (NPIX,) accumulation dtype
    Xp,  # (B, NPIX)
    GLL,  # (M,) dL/d ll, accumulation dtype
    GH,  # out (M, HID) dL/dh in the input dtype (written once per row tile)
    ACC,  # (P, BLOCK_M, HID) dh accumulator per program when GH is not in the accumulation
    #       dtype (bf16), else unused (the accumulation runs in GH's own rows)
    GW,  # out dL/dW, accumulation dtype: (NPIX, HID) zeroed (atomics) or (P, NPIX, HID) zeroed
    GB,  # out dL/db: (NPIX,) or (P, NPIX), zeroed
    # shapes
    M,
    B,
    n_tiles,  # row tiles
    # constants
    HID: tl.constexpr,
    DETERMINISTIC: tl.constexpr,  # per-program partial slices instead of atomics
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_D_TAIL: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Large M: programs own row tiles (grid-strided). Per pixel tile (main tiles, then the
    tail): recompute l, dl = g (x - sigmoid(l)); then one pass over the hidden chunks folds
    dh[:, k] += dl W[d, k] into this program's accumulator rows (L2-resident, its own: no
    race) and dW[d, k] += dl^T h[:, k] into one shared buffer (atomics) or this program's
    slice (deterministic). The tail tile writes dh in the output dtype."""
    D_MAIN: tl.constexpr = NPIX // BLOCK_D * BLOCK_D
    tl.static_assert(D_MAIN + BLOCK_D_TAIL == NPIX, "pixel tiles must cover NPIX exactly")
    # pixel tiles: [0, BLOCK_D) stores dh, then adds up to MID_END, the last one writes dh
    MID_END: tl.constexpr = NPIX - BLOCK_D_TAIL - BLOCK_D * (BLOCK_D_TAIL == 0)
    LAST_BD: tl.constexpr = NPIX - MID_END
    tl.static_assert(MID_END >= BLOCK_D, "two pixel tiles at least")
    IN_PLACE: tl.constexpr = GH.dtype.element_ty == Bp.dtype.element_ty
    pid = tl.program_id(0)
    if DETERMINISTIC:
        gw = GW + pid.to(tl.int64) * (NPIX * HID)
        gb = GB + pid * NPIX
    else:
        gw = GW
        gb = GB
    r = tl.arange(0, BLOCK_M)
    for tile in range(pid, n_tiles, tl.num_programs(0)):
        rows = (tile * BLOCK_M + r).to(tl.int64)
        rmask = rows < M
        xrows = rows % B
        g = tl.load(GLL + rows, mask=rmask, other=0.0)
        if IN_PLACE:
            acc_rows = GH + rows * HID  # (BLOCK_M,) accumulate in the output rows themselves
        else:
            acc_rows = ACC + (pid * BLOCK_M + r).to(tl.int64) * HID
        # each pixel tile read-modify-writes the accumulator rows (and, when deterministic,
        # the dW slice) that the previous one wrote, maybe from other threads: a barrier
        # between them makes those global writes visible (__syncthreads semantics)
        _dense_bwd_dtile(Hp, Wp, Bp, Xp, gw, gb, GH, acc_rows, g, rows, xrows, rmask, 0, 0,
                         DETERMINISTIC, True, HID, BLOCK_M, BLOCK_D, BLOCK_K,
                         PRECISION)  # fmt: skip
        tl.debug_barrier()
        for d0 in range(BLOCK_D, MID_END, BLOCK_D):
            _dense_bwd_dtile(Hp, Wp, Bp, Xp, gw, gb, GH, acc_rows, g, rows, xrows, rmask, d0, 1,
                             DETERMINISTIC, True, HID, BLOCK_M, BLOCK_D, BLOCK_K,
                             PRECISION)  # fmt: skip
            tl.debug_barrier()
        _dense_bwd_dtile(Hp, Wp, Bp, Xp, gw, gb, GH, acc_rows, g, rows, xrows, rmask, MID_END, 2,
                         DETERMINISTIC, True, HID, BLOCK_M, LAST_BD, BLOCK_K,
                         PRECISION)  # fmt: skip
        tl.debug_barrier()


@triton.jit
def _dense_bwd_split_kernel(
    # data pointers
    Hp,  # (M, HID) input dtype
    Wp,  # (NPIX, HID) input dtype
    Bp,  # (NPIX,) accumulation dtype
    Xp,  # (B, NPIX)
    GLL,  # (M,) dL/d ll, accumulation dtype
    GH,  # out dL/dh, accumulation dtype: (M, HID) zeroed (atomics) or (n_dtiles, M, HID) zeroed
    GW,  # out (NPIX, HID) dL/dW in W's dtype
    GB,  # out (NPIX,) dL/db, accumulation dtype
    # shapes
    M,
    B,
    n_tiles,  # row tiles (every program walks all of them)
    # constants
    HID: tl.constexpr,
    HID_PAD: tl.constexpr,  # next power of two >= HID (>= 32): the dW register accumulator
    DW_IN_REGS: tl.constexpr,  # dW[d, :] in registers (tensor-core dots); else in GW's rows
    DETERMINISTIC: tl.constexpr,  # dh per pixel tile (reduced by torch) instead of atomics
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,  # 16: 49 pixel tiles, so the dW rows of one fit in registers
    BLOCK_D_TAIL: tl.constexpr,  # 0 (16 divides 784)
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Small M (fewer row tiles than the 49 pixel tiles of 16): program j owns pixel tile j,
    walks all row tiles and owns dW[d, :], db[d]: in registers (two (HID_PAD / 2, 16) halves,
    written once in W's dtype at the end), or, for FMA dots (IEEE fp32, whose operands would
    not fit in registers beside that accumulator), as its rows of GW that the first row tile
    stores and later ones read-modify-write (L2-resident). dh of every row gets one
    contribution per pixel tile: atomics, or slice j when deterministic."""
    tl.static_assert(BLOCK_D_TAIL == 0, "the split backward tiles 784 pixels by 16")
    tl.static_assert(NPIX % BLOCK_D == 0, "pixel tiles must cover NPIX exactly")
    HALF: tl.constexpr = HID_PAD // 2
    d_tile = tl.program_id(0)
    dcols = d_tile * BLOCK_D + tl.arange(0, BLOCK_D)
    kh = tl.arange(0, HALF)
    gw_rows = GW + dcols * HID  # (BLOCK_D,) pointers to this program's rows of dW
    dw_lo = tl.zeros((HALF, BLOCK_D), dtype=Bp.dtype.element_ty)  # dW[d, :HALF]^T
    dw_hi = tl.zeros((HALF, BLOCK_D), dtype=Bp.dtype.element_ty)  # dW[d, HALF:]^T
    db = tl.zeros((BLOCK_D,), dtype=Bp.dtype.element_ty)
    if DETERMINISTIC:
        gh = GH + d_tile.to(tl.int64) * M * HID
    else:
        gh = GH
    kcol = tl.arange(0, BLOCK_K)
    for t in range(0, n_tiles):
        rows = (t * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        rmask = rows < M
        g = tl.load(GLL + rows, mask=rmask, other=0.0)
        l = _dense_logits(Hp, Wp, Bp, rows, rmask, dcols, HID, BLOCK_M, BLOCK_D, BLOCK_K,
                          PRECISION)  # fmt: skip
        x = tl.load(Xp + (rows % B)[:, None] * NPIX + dcols[None, :]).to(l.dtype)
        dl = g[:, None] * (x - tl.sigmoid(l))  # (BLOCK_M, BLOCK_D); rows >= M have g = 0
        db += tl.sum(dl, axis=0)
        dlc = dl.to(Hp.dtype.element_ty)
        if DW_IN_REGS:
            hp = Hp + rows[:, None] * HID + kh[None, :]  # h again, in halves, L2-hot
            h_lo = tl.load(hp, mask=rmask[:, None] & (kh < HID)[None, :], other=0.0)
            h_hi = tl.load(hp + HALF, mask=rmask[:, None] & (kh + HALF < HID)[None, :], other=0.0)
            dw_lo = _mma(tl.trans(h_lo), dlc, dw_lo, PRECISION)
            dw_hi = _mma(tl.trans(h_hi), dlc, dw_hi, PRECISION)
        for k0 in range(0, HID, BLOCK_K):
            kk = k0 + kcol
            kmask = kk < HID
            if not DW_IN_REGS:  # dW[d, k] (+)= dl^T h[:, k] in this program's rows of GW
                hk = tl.load(Hp + rows[:, None] * HID + kk[None, :],
                             mask=rmask[:, None] & kmask[None, :], other=0.0)  # fmt: skip
                gwk = _mma(tl.trans(dlc), hk, tl.zeros((BLOCK_D, BLOCK_K), l.dtype), PRECISION)
                pw = gw_rows[:, None] + kk[None, :]
                if t > 0:
                    gwk += tl.load(pw, mask=kmask[None, :], other=0.0)
                tl.store(pw, gwk.to(GW.dtype.element_ty), mask=kmask[None, :])
            wk = tl.load(Wp + dcols[:, None] * HID + kk[None, :], mask=kmask[None, :], other=0.0)
            part = _mma(dlc, wk, tl.zeros((BLOCK_M, BLOCK_K), l.dtype), PRECISION)  # dl W[d, k]
            _accumulate(gh + rows[:, None] * HID + kk[None, :], part,
                        rmask[:, None] & kmask[None, :], DETERMINISTIC)  # fmt: skip
        if not DW_IN_REGS:
            tl.debug_barrier()  # the next row tile re-reads the dW rows, maybe by other threads
    if DW_IN_REGS:
        pw = gw_rows[None, :] + kh[:, None]  # (HALF, BLOCK_D)
        tl.store(pw, dw_lo.to(GW.dtype.element_ty), mask=(kh < HID)[:, None])
        tl.store(pw + HALF, dw_hi.to(GW.dtype.element_ty), mask=(kh + HALF < HID)[:, None])
    tl.store(GB + dcols, db)


@triton.jit
def _conv_bwd_tile(
    Hp, Wp, Xp, LOGITS, GH, g, rows, xrows, rmask, d0, dw, db, C,
    BLOCK_M: tl.constexpr, BD: tl.constexpr, C_PAD: tl.constexpr,
):  # fmt: skip
    """One (BLOCK_M, BD) tile of the conv backward from the stored logits: dh[:, c] = dl w[c]
    (written), dw[c] += sum dl h[:, c], db += sum dl (in registers)."""
    dcols = d0 + tl.arange(0, BD)
    m2 = rmask[:, None]
    l = tl.load(LOGITS + rows[:, None] * NPIX + dcols[None, :], mask=m2, other=0.0)
    x = tl.load(Xp + xrows[:, None] * NPIX + dcols[None, :]).to(l.dtype)
    dl = g[:, None] * (x - tl.sigmoid(l))  # (BLOCK_M, BD); rows >= M have g = 0
    db += tl.sum(tl.sum(dl, axis=1), axis=0)
    off = rows[:, None] * (C * NPIX) + dcols[None, :]  # channel 0 of the tile
    cidx = tl.arange(0, C_PAD)
    for c in range(0, C):
        hc = tl.load(Hp + off + c * NPIX, mask=m2, other=0.0).to(l.dtype)
        tl.store(GH + off + c * NPIX, (dl * tl.load(Wp + c)).to(GH.dtype.element_ty), mask=m2)
        dw += tl.where(cidx == c, tl.sum(tl.sum(dl * hc, axis=1), axis=0), 0.0)
    return dw, db


@triton.jit(do_not_specialize=["C"])  # conv heads of 32 and 33 channels: one binary
def _conv_bwd_kernel(
    # data pointers
    Hp,  # (M, C, NPIX) input dtype
    Wp,  # (C,) accumulation dtype
    Xp,  # (B, NPIX)
    LOGITS,  # (M, NPIX) logits stored by the forward, accumulation dtype
    GLL,  # (M,) dL/d ll, accumulation dtype
    GH,  # out (M, C, NPIX) dL/dh, input dtype
    PW,  # out (n_tiles, C_PAD) dL/dw per row tile, accumulation dtype
    PB,  # out (n_tiles,) dL/db per row tile
    # shapes
    M,
    B,
    C,
    # constants
    C_PAD: tl.constexpr,  # next power of two >= C: the dw register vector
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_D_TAIL: tl.constexpr,
):
    """One row tile per program: h read once, dh written once; dw, db per row tile (summed by
    torch: deterministic, no atomics)."""
    D_MAIN: tl.constexpr = NPIX // BLOCK_D * BLOCK_D
    tl.static_assert(D_MAIN + BLOCK_D_TAIL == NPIX, "pixel tiles must cover NPIX exactly")
    pid = tl.program_id(0)
    rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    rmask = rows < M
    xrows = rows % B
    g = tl.load(GLL + rows, mask=rmask, other=0.0)
    dw = tl.zeros((C_PAD,), dtype=Wp.dtype.element_ty)
    db = tl.sum(tl.zeros((2,), dtype=Wp.dtype.element_ty), axis=0)  # a 0-d accumulator
    for d0 in range(0, D_MAIN, BLOCK_D):
        dw, db = _conv_bwd_tile(Hp, Wp, Xp, LOGITS, GH, g, rows, xrows, rmask, d0, dw, db, C,
                                BLOCK_M, BLOCK_D, C_PAD)  # fmt: skip
    if BLOCK_D_TAIL > 0:
        dw, db = _conv_bwd_tile(Hp, Wp, Xp, LOGITS, GH, g, rows, xrows, rmask, D_MAIN, dw, db, C,
                                BLOCK_M, BLOCK_D_TAIL, C_PAD)  # fmt: skip
    tl.store(PW + pid * C_PAD + tl.arange(0, C_PAD), dw)
    tl.store(PB + pid, db)


# --------------------------------------------------------------------------------------------
# settings: block sizes, warps and stages per kernel, and where each number comes from
# --------------------------------------------------------------------------------------------
def _tail(block_d: int) -> int:
    """Width of the last pixel tile, NPIX % BLOCK_D: 16 for BLOCK_D in 32..256, 0 for 16.

    The kernels assume exact tiling (no pixel masks), so the remainder must itself be a
    power of two >= 16 (tl.dot's minimum).
    """
    rem = N_PIXELS % block_d
    if rem and (rem < 16 or rem & (rem - 1)):
        raise ValueError(f"BLOCK_D={block_d} leaves a {rem}-pixel tail, not a power of two >= 16")
    return rem


def _dclass(dtype: torch.dtype, precision: str) -> str:
    """Dot class of an input dtype: "bf16" (16-bit tensor cores), "tf32", "ieee" (fp32 FMA on
    CUDA cores), "fp64" (DMMA)."""
    if dtype == torch.float64:
        return "fp64"
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16"
    return "tf32" if precision == "tf32" else "ieee"


# Dense head, row tiles (forward, IW-NLL and the large-M backward). The rules behind the
# numbers, checked by compiling every captured launch for sm_90 (bench/gpu/aot.py; registers and
# spills in the file header):
# - BLOCK_M: the h tile BLOCK_M x 500 is 128 KB in every dtype (128 rows bf16, 64 fp32,
#   32 fp64), so one wave of 132 programs keeps 17 MB of h tiles, within half the 50 MB L2,
#   while the pixel tiles re-read them: h comes from HBM once. W (0.8-3.1 MB) is re-read from
#   L2 once per row tile: 1000 (bf16) to 4000 (fp64) times per 128,000 rows.
# - BLOCK_D: 784 = 6 x 128 + 16 = 12 x 64 + 16; main tiles plus a 16-pixel tail cover the
#   pixels exactly (one padded tile size would compute 832 or 896 columns).
# - BLOCK_K: K = 500 runs as 512 (2.4 % padding, the least a power-of-two chunk >= 16 allows).
#   The chunk is the register knob: each thread holds the pointers of its share of the (h, W)
#   chunks, and the (BLOCK_M, BLOCK_D) accumulator plus the Bernoulli epilogue (x tile,
#   softplus) already take ~200 of the 255 registers; 16 bf16 / 32 fp32 / 16 fp64 are the
#   widest chunks that compile without spilling.
# - num_warps 8: two warpgroups of wgmma (bf16, TF32) or 256 threads sharing the FMA/DMMA
#   tile, so the 8192-16384-element accumulator is 32-64 registers per thread.
# - num_stages: async-copy pipeline depth of the K loop, (BLOCK_M + BLOCK_D) x BLOCK_K x
#   itemsize per stage: 8 KB bf16 x 4, 24 KB fp32 x 3, 12 KB fp64 x 2 (< 100 KB of shared
#   memory, leaving room for the epilogue's layout conversion).
_ROWS = {
    "bf16": dict(BLOCK_M=128, BLOCK_D=128, BLOCK_K=16, num_warps=8, num_stages=4),
    "tf32": dict(BLOCK_M=64, BLOCK_D=128, BLOCK_K=32, num_warps=8, num_stages=3),
    "ieee": dict(BLOCK_M=64, BLOCK_D=128, BLOCK_K=32, num_warps=8, num_stages=3),
    "fp64": dict(BLOCK_M=32, BLOCK_D=64, BLOCK_K=16, num_warps=8, num_stages=2),
}
# Large-M backward (`_dense_bwd_rows_kernel`): the forward's 64-row tiles (bf16: 64, not 128;
# fp64: 32), so W is re-read from L2 and dW atomically added once per 64 rows (2000 times per
# 128,000 rows). Each program keeps two sets hot in L2 while its pixel tiles re-read them, its
# h tile and its dh accumulator rows (float32/64): BLOCK_M x 500 x (itemsize + 4 or 8) =
# 192 KB bf16, 256 KB fp32 and fp64, so `loglik_bwd_settings` cuts the grid to the programs
# whose sets fit in half the L2: 130 (bf16) and 97 (fp32, fp64) on an H100, the price of not
# re-streaming W through L2 twice as often with 32-row tiles. BLOCK_D = 128 (+ the tail; fp64
# 64): 7 pixel tiles, so h and the accumulator rows are re-read 7 times; BLOCK_K = 16, the
# widest that compiles without spilling (the logits tile, dl in two dot-operand layouts and
# the (BLOCK_M, BLOCK_K) and (BLOCK_D, BLOCK_K) results of the hidden pass are live together;
# TF32 takes 254 of the 255 registers).
_BWD_ROWS = {
    "bf16": dict(BLOCK_M=64, BLOCK_D=128, BLOCK_K=16, num_warps=8, num_stages=3),
    "tf32": dict(BLOCK_M=64, BLOCK_D=128, BLOCK_K=16, num_warps=8, num_stages=3),
    "ieee": dict(BLOCK_M=64, BLOCK_D=128, BLOCK_K=16, num_warps=8, num_stages=3),
    "fp64": dict(BLOCK_M=32, BLOCK_D=64, BLOCK_K=16, num_warps=8, num_stages=2),
}
# Small M (training batches). Forward (fewer row tiles than SMs): (row tile, pixel tile)
# programs of 64 (fp64: 32) rows x 64 pixels: a 128-row batch runs as 2 x 13 programs that
# each read 1/13 of W instead of 1-2 programs streaming all of it.
_SPLIT = {
    "bf16": dict(BLOCK_M=64, BLOCK_D=64, BLOCK_K=64, num_warps=4, num_stages=3),
    "tf32": dict(BLOCK_M=64, BLOCK_D=64, BLOCK_K=32, num_warps=4, num_stages=3),
    "ieee": dict(BLOCK_M=64, BLOCK_D=64, BLOCK_K=16, num_warps=8, num_stages=3),
    "fp64": dict(BLOCK_M=32, BLOCK_D=64, BLOCK_K=16, num_warps=4, num_stages=2),
}
# Backward (fewer `_BWD_ROWS` row tiles than 49, or than SMs): one program per 16-pixel tile walks all the
# rows, so dW[d, :] (16 x 512 float32: 32 registers per thread over 8 warps) and db[d] stay
# in registers and are written once in W's dtype; W[d, :] is read once per row tile. h comes
# twice per row tile (K chunks for the logits, two (BLOCK_M, 256) halves for dW): BLOCK_M =
# 64 bf16 / 32 fp32 / 16 fp64 keeps a half at 32 KB. IEEE fp32 (FMA dots keep K values of
# each operand per output in registers) accumulates dW in its own rows of the output instead,
# chunk by chunk, with 4 warps.
_BWD_SPLIT = {
    "bf16": dict(BLOCK_M=64, BLOCK_D=16, BLOCK_K=64, num_warps=8, num_stages=2),
    "tf32": dict(BLOCK_M=32, BLOCK_D=16, BLOCK_K=32, num_warps=8, num_stages=2),
    "ieee": dict(BLOCK_M=32, BLOCK_D=16, BLOCK_K=32, num_warps=4, num_stages=2),
    "fp64": dict(BLOCK_M=16, BLOCK_D=16, BLOCK_K=16, num_warps=8, num_stages=2),
}
# Conv head (1x1 conv, C = 32/33 channels; memory-bound, 2 FLOPs per h element): BLOCK_M = 4
# rows x BLOCK_D = 256 pixels (784 = 3 x 256 + 16); each channel step loads 4 contiguous 1 KB
# (fp32) rows; 4 warps hold 8 elements per thread, so many programs share an SM and keep loads
# in flight. One binary serves fp32 and TF32 (no dot) and both channel counts (C is runtime).
_CONV = dict(BLOCK_M=4, BLOCK_D=256, BLOCK_K=16, num_warps=4, num_stages=1)


def _with_grid(s: dict, grid: tuple[int, ...], **extra) -> dict:
    return dict(s, BLOCK_D_TAIL=_tail(s["BLOCK_D"]), grid=grid, **extra)


def _n_dtiles(block_d: int) -> int:
    return N_PIXELS // block_d + (_tail(block_d) > 0)


def loglik_fwd_settings(M: int, is_conv: bool, dtype: torch.dtype, precision: str,
                        n_sms: int) -> dict:  # fmt: skip
    """Launch settings of `_loglik_fwd_kernel` for M rows (Liger `calculate_settings` style).

    Conv: `_CONV`, one row tile per program. Dense, at least one row tile per SM: `_ROWS`,
    grid = one program per SM, grid-strided over the row tiles (one wave: the L2 set of h tiles
    stays bounded). Dense, fewer: SPLIT, `_SPLIT` tiles on a (row tiles, pixel tiles) grid;
    the per-pixel-tile partial sums (n_dtiles, M) are added by torch.
    """
    if is_conv:
        n = triton.cdiv(M, _CONV["BLOCK_M"])
        return _with_grid(_CONV, (n, 1), n_tiles=n, SPLIT=False)
    dc = _dclass(dtype, precision)
    n = triton.cdiv(M, _ROWS[dc]["BLOCK_M"])
    if n >= n_sms:
        return _with_grid(_ROWS[dc], (n_sms, 1), n_tiles=n, SPLIT=False)
    s = _SPLIT[dc]
    n = triton.cdiv(M, s["BLOCK_M"])
    return _with_grid(s, (n, _n_dtiles(s["BLOCK_D"])), n_tiles=n, SPLIT=True)


def iw_fwd_settings(S: int, B: int, is_conv: bool, dtype: torch.dtype, precision: str,
                    n_sms: int) -> dict:  # fmt: skip
    """Launch settings of `_iw_nll_fwd_kernel`: a tile is BLOCK_S samples x BLOCK_B images.

    BLOCK_M rows as `_ROWS` / `_CONV`; BLOCK_B = min(BLOCK_M, next power of two >= B) images
    (a batch of 128 is one bf16 tile: 128 consecutive rows of one sample), BLOCK_S the rest.
    Dense: grid (b tiles, splits) of about one program per SM, each streaming
    cdiv(sample tiles, splits) consecutive tiles; conv: one sample tile per program (memory-
    bound: many programs per SM). Torch combines the (splits, B) partial (max, sum, sum ll).
    """
    s = _CONV if is_conv else _ROWS[_dclass(dtype, precision)]
    bm = s["BLOCK_M"]
    block_b = min(bm, triton.next_power_of_2(B))
    block_s = bm // block_b
    n_btiles = triton.cdiv(B, block_b)
    n_stiles = triton.cdiv(S, block_s)
    target = n_stiles * n_btiles if is_conv else n_sms
    per = triton.cdiv(n_stiles, max(1, target // n_btiles))
    grid = (n_btiles, triton.cdiv(n_stiles, per))
    return _with_grid(s, grid, BLOCK_S=block_s, BLOCK_B=block_b, n_stiles=n_stiles,
                      stiles_per_prog=per)  # fmt: skip


def loglik_bwd_settings(M: int, hid: int, is_conv: bool, dtype: torch.dtype, precision: str,
                        n_sms: int, l2_bytes: int) -> dict:  # fmt: skip
    """Launch settings of the backward kernels.

    Conv (`_conv_bwd_kernel`): `_CONV`, one row tile per program. Dense, as many `_BWD_ROWS`
    row tiles as the split kernel has programs (49) or SMs, whichever is less
    (`_dense_bwd_rows_kernel`): grid-strided over the row tiles by at most one program per
    SM, and at most as many as keep their h tiles and dh accumulator rows (BLOCK_M x hid
    each) within half of `l2_bytes`. Fewer (`_dense_bwd_split_kernel`): `_BWD_SPLIT`, one
    program per 16-pixel tile, each walking all the rows (M < 3136 fp32 rows on an H100).
    """
    if is_conv:
        n = triton.cdiv(M, _CONV["BLOCK_M"])
        return _with_grid(_CONV, (n,), n_tiles=n, SPLIT=False)
    dc = _dclass(dtype, precision)
    s = _BWD_ROWS[dc]
    n = triton.cdiv(M, s["BLOCK_M"])
    n_split_programs = _n_dtiles(_BWD_SPLIT[dc]["BLOCK_D"])
    if n >= min(n_sms, n_split_programs):
        per_prog = s["BLOCK_M"] * hid * (dtype.itemsize + (8 if dc == "fp64" else 4))
        P = max(1, min(n, n_sms, l2_bytes // 2 // per_prog))
        return _with_grid(s, (P,), n_tiles=n, SPLIT=False)
    s = _BWD_SPLIT[dc]
    return _with_grid(s, (n_split_programs,), n_tiles=triton.cdiv(M, s["BLOCK_M"]),
                      HID_PAD=max(32, triton.next_power_of_2(hid)), DW_IN_REGS=dc != "ieee",
                      SPLIT=True)  # fmt: skip


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------
def _head_args(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, is_conv: bool):
    """(h as a contiguous (M, HID) / (M, C, NPIX) view, W, b for the kernels, HID, C).

    Dense: W keeps the input dtype (bf16 dots stay bf16), b goes to the accumulation dtype.
    Conv: w and b (C + 1 numbers) go to the accumulation dtype.
    """
    cdt = launch.compute_dtype(h.dtype)
    if is_conv:
        h3 = h.reshape(h.shape[0], h.shape[1], N_PIXELS)
        if not h3.is_contiguous():
            h3 = h3.contiguous()
        return h3, W.reshape(-1).to(cdt).contiguous(), b.reshape(1).to(cdt), 1, h.shape[1]
    h2 = h if h.is_contiguous() else h.contiguous()
    return h2, W.to(h.dtype).contiguous(), b.to(cdt).contiguous(), h.shape[1], 1


def _precision(h: torch.Tensor, is_conv: bool) -> str:
    """tl.dot precision (conv heads have no dot: one binary for fp32 and TF32); see `_mma`."""
    if is_conv:
        return "ieee"
    if h.dtype == torch.bfloat16 and launch.interpreting():
        return "interpret-f32"
    return launch.input_precision(h.dtype)


def _launch_kwargs(s: dict, *names: str) -> dict:
    options = {"num_warps": s["num_warps"], "num_stages": s["num_stages"]} | launch.FP_FUSION
    return {k: s[k] for k in names} | options


def _launch_loglik_fwd(h, W, b, x, is_conv: bool, store_logits: bool):
    """(ll (M,), logits (M, NPIX) or None) in the accumulation dtype."""
    hv, Wc, bc, HID, C = _head_args(h, W, b, is_conv)
    M, B = h.shape[0], x.shape[0]
    prec = _precision(h, is_conv)
    s = loglik_fwd_settings(M, is_conv, h.dtype, prec, launch.max_programs(h.device))
    cdt = bc.dtype
    n_dsplit = s["grid"][1] if s["SPLIT"] else 1
    ll = launch.empty((n_dsplit, M), h, cdt)
    logits = launch.empty((M, N_PIXELS), h, cdt) if store_logits else ll
    _loglik_fwd_kernel[s["grid"]](
        hv, Wc, bc, x.contiguous(), ll, logits, M, B, C, s["n_tiles"],
        HID=HID, IS_CONV=is_conv, STORE_LOGITS=store_logits, PRECISION=prec,
        **_launch_kwargs(s, "SPLIT", "BLOCK_M", "BLOCK_D", "BLOCK_D_TAIL", "BLOCK_K"),
    )  # fmt: skip
    return (ll.sum(0) if n_dsplit > 1 else ll[0]), (logits if store_logits else None)


def _launch_loglik_bwd(h, W, b, x, gll, logits, is_conv: bool):
    """(dh in h's dtype, dW, db in the accumulation dtype)."""
    hv, Wc, bc, HID, C = _head_args(h, W, b, is_conv)
    M, B = h.shape[0], x.shape[0]
    prec = _precision(h, is_conv)
    n_sms, l2 = launch.max_programs(h.device), launch.l2_bytes(h.device)
    s = loglik_bwd_settings(M, HID if not is_conv else C, is_conv, h.dtype, prec, n_sms, l2)
    cdt = bc.dtype
    g = gll.to(cdt).contiguous()
    dev = h.device
    if is_conv:
        c_pad = max(64, triton.next_power_of_2(C))  # 32 and 33 channels: one binary
        gh = launch.empty(hv.shape, h, h.dtype)
        pw = launch.empty((s["n_tiles"], c_pad), h, cdt)
        pb = launch.empty((s["n_tiles"],), h, cdt)
        _conv_bwd_kernel[s["grid"]](
            hv, Wc, x.contiguous(), logits, g, gh, pw, pb, M, B, C, C_PAD=c_pad,
            **_launch_kwargs(s, "BLOCK_M", "BLOCK_D", "BLOCK_D_TAIL"),
        )  # fmt: skip
        return gh, pw.sum(0)[:C], pb.sum(0).reshape(1)
    det = torch.are_deterministic_algorithms_enabled()
    if not s["SPLIT"]:
        P = s["grid"][0]
        shape_w = (P, N_PIXELS, HID) if det else (N_PIXELS, HID)
        gw = torch.zeros(shape_w, device=dev, dtype=cdt)
        gb = torch.zeros(shape_w[:-1], device=dev, dtype=cdt)
        gh = launch.empty((M, HID), h, h.dtype)
        acc = gh if h.dtype == cdt else launch.empty((P, s["BLOCK_M"], HID), h, cdt)
        _dense_bwd_rows_kernel[s["grid"]](
            hv, Wc, bc, x.contiguous(), g, gh, acc, gw, gb, M, B, s["n_tiles"],
            HID=HID, DETERMINISTIC=det, PRECISION=prec,
            **_launch_kwargs(s, "BLOCK_M", "BLOCK_D", "BLOCK_D_TAIL", "BLOCK_K"),
        )  # fmt: skip
        return gh, (gw.sum(0) if det else gw), (gb.sum(0) if det else gb)
    n_d = s["grid"][0]
    gh = torch.zeros((n_d, M, HID) if det else (M, HID), device=dev, dtype=cdt)
    # registers -> written once in W's dtype; IEEE: read-modify-written, so kept in cdt
    gw = launch.empty((N_PIXELS, HID), h, W.dtype if s["DW_IN_REGS"] else cdt)
    gb = launch.empty((N_PIXELS,), h, cdt)
    _dense_bwd_split_kernel[s["grid"]](
        hv, Wc, bc, x.contiguous(), g, gh, gw, gb, M, B, s["n_tiles"],
        HID=HID, DETERMINISTIC=det, PRECISION=prec,
        **_launch_kwargs(
            s, "HID_PAD", "DW_IN_REGS", "BLOCK_M", "BLOCK_D", "BLOCK_D_TAIL", "BLOCK_K"
        ),
    )  # fmt: skip
    gh = gh.sum(0) if det else gh
    return gh.to(h.dtype), gw, gb


def _launch_iw(h, W, b, x, log_pz, log_qz, is_conv: bool, store_logw: bool):
    """Per-split partials ((n_split, B) max, sum exp, sum ll) and the (S, B) log weights (or
    None), in the state dtype: float64 if h or log p(z) is float64, else float32."""
    hv, Wc, bc, HID, C = _head_args(h, W, b, is_conv)
    S, B = log_pz.shape
    prec = _precision(h, is_conv)
    s = iw_fwd_settings(S, B, is_conv, h.dtype, prec, launch.max_programs(h.device))
    sdt = torch.promote_types(bc.dtype, torch.promote_types(log_pz.dtype, log_qz.dtype))
    sdt = torch.float64 if sdt == torch.float64 else torch.float32
    n_split = s["grid"][1]
    pmax, psum, pll = (launch.empty((n_split, B), h, sdt) for _ in range(3))
    logw = launch.empty((S, B), h, sdt) if store_logw else pmax
    _iw_nll_fwd_kernel[s["grid"]](
        hv, Wc, bc, x.contiguous(), log_pz.contiguous(), log_qz.contiguous(), logw, pmax, psum,
        pll, S, B, C, s["n_stiles"], s["stiles_per_prog"],
        HID=HID, IS_CONV=is_conv, STORE_LOGW=store_logw, PRECISION=prec,
        **_launch_kwargs(s, "BLOCK_S", "BLOCK_B", "BLOCK_D", "BLOCK_D_TAIL", "BLOCK_K"),
    )  # fmt: skip
    return (pmax, psum, pll), (logw if store_logw else None)


def _combine(pmax: torch.Tensor, psum: torch.Tensor, pll: torch.Tensor):
    """Merge (n, B) partial (max, sum exp(. - max), sum ll) along dim 0, in float64: (B,) each."""
    pmax, psum, pll = pmax.double(), psum.double(), pll.double()
    top = pmax.max(0).values
    safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = (psum * torch.exp(pmax - safe)).sum(0)
    return top, total, pll.sum(0)


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------
class _BernoulliLoglik(torch.autograd.Function):
    """(h, W, b, x) -> ll (M,). Backward: dense heads recompute the logits tile by tile; conv
    heads keep the (M, NPIX) logits of the forward (1/C of h) so h is read once per pass."""

    @staticmethod
    def forward(ctx, h, W, b, x, is_conv):
        keep = is_conv and any(ctx.needs_input_grad[:3])
        ll, logits = _launch_loglik_fwd(h.detach(), W.detach(), b.detach(), x, is_conv, keep)
        ctx.save_for_backward(h, W, b, x, logits)
        ctx.is_conv = is_conv
        return ll.to(h.dtype)

    @staticmethod
    def backward(ctx, gll):
        """dL/dh in h's dtype; dL/dW, dL/db accumulated in float32 (float64) then cast."""
        h, W, b, x, logits = ctx.saved_tensors
        gh, gW, gb = _launch_loglik_bwd(h, W, b, x, gll, logits, ctx.is_conv)
        return (
            gh.reshape(h.shape),
            gW.reshape(W.shape).to(W.dtype),
            gb.reshape(b.shape).to(b.dtype),
            None,
            None,
        )


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check(h, W, b, x, is_conv: bool, log_pz=None, log_qz=None) -> None:
    if x.dim() != 2 or x.shape[1] != N_PIXELS:
        raise ValueError(f"x must be (B, {N_PIXELS}) flat binarized images, got {tuple(x.shape)}")
    B = x.shape[0]
    if is_conv:
        if h.dim() != 4 or tuple(h.shape[2:]) != (28, 28):
            raise ValueError(
                f"h must be (S*B, C, 28, 28) for the 1x1 conv head, got {tuple(h.shape)}"
            )
        if W.numel() != h.shape[1] or b.numel() != 1:
            raise ValueError(
                f"w must be (1, {h.shape[1]}, 1, 1) and b (1,) like nn.Conv2d({h.shape[1]}, 1, 1), "
                f"got {tuple(W.shape)} and {tuple(b.shape)}"
            )
    else:
        if (
            h.dim() != 2
            or tuple(W.shape) != (N_PIXELS, h.shape[1])
            or tuple(b.shape) != (N_PIXELS,)
        ):
            raise ValueError(
                f"dense head needs h (S*B, H), W (784, H) as nn.Linear.weight, b (784,); got "
                f"{tuple(h.shape)}, {tuple(W.shape)}, {tuple(b.shape)}"
            )
        if h.shape[1] > MAX_HID:
            raise ValueError(
                f"hidden width {h.shape[1]} > {MAX_HID} does not fit the fused backward's "
                "accumulator: use the torch backend"
            )
    if h.shape[0] % B:
        raise ValueError(f"h has {h.shape[0]} rows, not a multiple of B={B} (rows are s * B + b)")
    if log_pz is not None:
        S = h.shape[0] // B
        if tuple(log_pz.shape) != (S, B) or tuple(log_qz.shape) != (S, B):
            raise ValueError(
                f"log_pz and log_qz must be (S, B) = ({S}, {B}), got "
                f"{tuple(log_pz.shape)} and {tuple(log_qz.shape)}"
            )


def bernoulli_loglik(
    h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """log p(x|z) = sum_d x_d l_d - softplus(l_d), l = h W^T + b (DESIGN.md "Decoder output").

    h (S*B, H) sample-major, W (784, H) as nn.Linear.weight, b (784,), x (B, 784) -> ll (S*B,)
    in h's dtype. Differentiable in h, W and b; the (S*B, 784) logits are never stored. dW is
    summed with float atomics (run-to-run rounding differences) unless
    `torch.use_deterministic_algorithms(True)`, which selects per-program partial sums.
    """
    _check(h, W, b, x, is_conv=False)
    return _BernoulliLoglik.apply(h, W, b, x, False)


def bernoulli_loglik_conv1x1(
    h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """`bernoulli_loglik` for a 1x1-conv head: h (S*B, C, 28, 28), w (1, C, 1, 1), b (1,).

    When a gradient is needed the forward keeps the (S*B, 784) logits (1/C of h) for the
    backward, which then reads h once; the weight gradients are always deterministic.
    """
    _check(h, w, b, x, is_conv=True)
    return _BernoulliLoglik.apply(h, w, b, x, True)


def iw_logsumexp_parts(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    x: torch.Tensor,
    log_pz: torch.Tensor,
    log_qz: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Streaming parts of the IW bound for one chunk of samples (App. B.3), float64, (B,) each.

    With log w_s = log p(x|z_s) + log p(z_s) - log q(z_s|x) over the chunk's S samples
    (h rows s * B + b; head picked by h.dim(): 2 dense as `bernoulli_loglik`, 4 conv as
    `bernoulli_loglik_conv1x1`; log_pz, log_qz (S, B) float32 or float64) returns

        max_s log w_s,   sum_s exp(log w_s - max),   sum_s log p(x|z_s).

    Chunks combine as (m, e, r) = (max(m1, m2), e1 exp(m1 - m) + e2 exp(m2 - m), r1 + r2)
    (`iw_nll_from_parts`); the logits and the log weights are never stored.
    """
    is_conv = h.dim() == 4
    _check(h, W, b, x, is_conv, log_pz, log_qz)
    with torch.no_grad():
        parts, _ = _launch_iw(h, W, b, x, log_pz, log_qz, is_conv, False)
    return _combine(*parts)


def iw_nll_from_parts(
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], n_samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(nll, mean reconstruction) per x, float64 (B,), from the `iw_logsumexp_parts` of chunks
    that together hold `n_samples` samples per x: nll = -(max + log sum - log n_samples)."""
    if not parts or n_samples < 1:
        raise ValueError(
            f"need at least one chunk and n_samples >= 1, got {len(parts)}, {n_samples}"
        )
    m, e, r = _combine(*(torch.stack(t) for t in zip(*parts, strict=True)))
    return -(m + torch.log(e) - math.log(n_samples)), r / n_samples


def _iw(h, W, b, x, log_pz, log_qz, is_conv, return_log_weights, return_recon=False):
    _check(h, W, b, x, is_conv, log_pz, log_qz)
    S = log_pz.shape[0]
    with torch.no_grad():
        parts, logw = _launch_iw(h, W, b, x, log_pz, log_qz, is_conv, return_log_weights)
        nll, recon = iw_nll_from_parts([_combine(*parts)], S)
    out = [nll.to(log_pz.dtype)]
    if return_log_weights:
        out.append(logw.to(log_pz.dtype))
    if return_recon:  # mean_s log p(x|z_s), summed in the kernel: (B,)
        out.append(recon.to(log_pz.dtype))
    return out[0] if len(out) == 1 else tuple(out)


def iw_nll(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    x: torch.Tensor,
    log_pz: torch.Tensor,
    log_qz: torch.Tensor,
    *,
    return_log_weights: bool = False,
    return_recon: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Importance-weighted NLL per x (App. B.3): -LogMeanExp_s(log p(x|z_s) + log p(z_s) - log q(z_s|x)).

    Dense head (as `bernoulli_loglik`); log_pz, log_qz (S, B). Returns nll (B,), then the
    (S, B) log weights when `return_log_weights`, then the mean reconstruction
    mean_s log p(x|z_s) (B,) when `return_recon`, all in log_pz's dtype. Forward only
    (evaluation); for S streamed in chunks use `iw_logsumexp_parts`.
    """
    return _iw(h, W, b, x, log_pz, log_qz, False, return_log_weights, return_recon)


def iw_nll_conv1x1(
    h: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    x: torch.Tensor,
    log_pz: torch.Tensor,
    log_qz: torch.Tensor,
    *,
    return_log_weights: bool = False,
    return_recon: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """`iw_nll` for the 1x1-conv head: h (S*B, C, 28, 28), w (1, C, 1, 1), b (1,)."""
    return _iw(h, w, b, x, log_pz, log_qz, True, return_log_weights, return_recon)


def iw_nll_torch(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    x: torch.Tensor,
    log_pz: torch.Tensor,
    log_qz: torch.Tensor,
    *,
    chunk_size: int = 64,
    return_log_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Eager torch `iw_nll` / `iw_nll_conv1x1` (head picked by h.dim(): 2 dense, 4 conv).

    Materialises logits for `chunk_size` samples at a time ((chunk_size*B, 784)), then a
    max-shifted log-mean-exp over S. The CPU path and the benchmark's eager baseline.
    """
    is_conv = h.dim() == 4
    _check(h, W, b, x, is_conv, log_pz, log_qz)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    S, B = log_pz.shape
    lls = []
    for s0 in range(0, S, chunk_size):
        hc = h[s0 * B : min(S, s0 + chunk_size) * B]
        if is_conv:
            logits = torch.nn.functional.conv2d(hc, W, b).reshape(hc.shape[0], N_PIXELS)
        else:
            logits = torch.nn.functional.linear(hc, W, b)  # (chunk*B, 784)
        xt = x.to(logits.dtype).repeat(hc.shape[0] // B, 1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, xt, reduction="none")
        lls.append(-bce.sum(1))
    log_w = torch.cat(lls).reshape(S, B) + log_pz - log_qz  # (S, B)
    nll = -(torch.logsumexp(log_w, 0) - math.log(S))
    return (nll, log_w) if return_log_weights else nll
