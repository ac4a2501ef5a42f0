"""Fused decoder head + Bernoulli log-likelihood + log-mean-exp over samples (Eqs. 1-5, App. B.3).

What is fused and why
---------------------
The importance-weighted NLL of Appendix B.3 uses S = 1000 samples per x. Eager torch builds
the (S*B, 784) logits of the decoder's last layer, the (S*B, 784) log-likelihood terms and
reduces them: for B = 128 that is 2 x 400 MB of traffic per step and the memory peak. Here one
program owns a tile of sample rows, produces the logits l = h W^T + b BLOCK_D pixels at a time
(tiled matmul, or the per-pixel channel dot of a 1x1 convolution), folds them at once into
ll = sum_d x_d l_d - softplus(l_d), adds log p(z) - log q(z|x) and folds the result into a
running max / running sum per x (the flash-attention cross-entropy pattern). The logits never
exist in memory; programs split S and a tiny torch combine merges their (max, sum) pairs.

`bernoulli_loglik` (training: S = 1 reconstruction term or IW objectives) has a backward that
recomputes the logits tile by tile: dl = g (x - sigmoid(l)), dh = dl W, dW = dl^T h, db = sum dl.
Weight gradients are accumulated in float32 (float64 for float64 inputs) whatever the input
dtype, in per-program partial-sum slices reduced by torch (deterministic, race-free).

Heads: DenseVAE's nn.Linear(H, 784) (W (784, H) as nn.Linear.weight) and the conv decoders'
nn.Conv2d(32, 1, 1) (h (N, 32, 28, 28), w (1, 32, 1, 1)): logit[n, p] = sum_c h[n, c, p] w[c] + b.
Rows are sample-major (DESIGN.md): row s * B + b uses x[b].

Order: kernels -> launchers -> autograd.Function -> public functions; the chunked eager torch
fallback `iw_nll_torch` (CPU path and benchmark baseline) is at the end.
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
    "iw_nll",
    "iw_nll_conv1x1",
    "iw_nll_torch",
]

NPIX = 784  # 28 x 28 binarized pixels


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@triton.jit
def _logits_tile(
    Hp,  # pointer to h: (M, HID) dense, or (M, HID, NPIX) conv (HID = channels)
    Wp,  # pointer to W: (NPIX, HID) dense (nn.Linear.weight), or (HID,) conv
    Bp,  # pointer to b: (NPIX,) dense, or (1,) conv
    rows,  # (BLOCK_M,) row ids
    rmask,  # (BLOCK_M,) rows < M (and valid)
    dcols,  # (BLOCK_D,) pixel ids
    dmask,  # (BLOCK_D,) dcols < NPIX
    stride_hm,  # row stride of h
    HID: tl.constexpr,  # hidden width (dense) or channels (conv)
    IS_CONV: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,  # hidden chunk of the dense matmul
    INPUT_PRECISION: tl.constexpr,
):
    """Logits (BLOCK_M, BLOCK_D) in the compute dtype (that of W)."""
    cdt = Wp.dtype.element_ty
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=cdt)
    if IS_CONV:
        m2 = rmask[:, None] & dmask[None, :]
        for c in range(0, HID):
            hc = tl.load(
                Hp + rows[:, None] * stride_hm + c * NPIX + dcols[None, :], mask=m2, other=0.0
            )
            acc += hc.to(cdt) * tl.load(Wp + c)
        acc += tl.load(Bp)
    else:
        kcol = tl.arange(0, BLOCK_K)
        for k0 in range(0, HID, BLOCK_K):
            kk = k0 + kcol
            kmask = kk < HID
            h = tl.load(
                Hp + rows[:, None] * stride_hm + kk[None, :],
                mask=rmask[:, None] & kmask[None, :],
                other=0.0,
            )
            w_t = tl.load(
                Wp + dcols[None, :] * HID + kk[:, None],
                mask=dmask[None, :] & kmask[:, None],
                other=0.0,
            )
            acc += tl.dot(h.to(cdt), w_t, input_precision=INPUT_PRECISION)  # (BLOCK_M, BLOCK_D)
        acc += tl.load(Bp + dcols, mask=dmask, other=0.0)[None, :]
    return acc


@triton.jit
def _softplus(l):
    return tl.maximum(l, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(l)))


@triton.jit
def _row_loglik(
    Hp,
    Wp,
    Bp,
    Xp,  # Hp, Wp, Bp as in _logits_tile; x (B, NPIX) contiguous
    rows,  # (BLOCK_M,) rows of h
    xrows,  # (BLOCK_M,) rows of x used by each h row
    rmask,  # (BLOCK_M,) valid rows
    stride_hm,
    HID: tl.constexpr,
    IS_CONV: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """ll (BLOCK_M,) = sum_d x_d l_d - softplus(l_d), logits streamed BLOCK_D pixels at a time."""
    ll = tl.zeros((BLOCK_M,), dtype=Wp.dtype.element_ty)
    dcol = tl.arange(0, BLOCK_D)
    for d0 in range(0, NPIX, BLOCK_D):
        dcols = d0 + dcol
        dmask = dcols < NPIX
        l = _logits_tile(
            Hp, Wp, Bp, rows, rmask, dcols, dmask, stride_hm,
            HID, IS_CONV, BLOCK_M, BLOCK_D, BLOCK_K, INPUT_PRECISION,
        )  # fmt: skip
        m2 = rmask[:, None] & dmask[None, :]
        x = tl.load(Xp + xrows[:, None] * NPIX + dcols[None, :], mask=m2, other=0.0).to(l.dtype)
        ll += tl.sum(tl.where(m2, x * l - _softplus(l), 0.0), axis=1)
    return ll


@triton.jit
def _loglik_fwd_kernel(
    # data pointers
    Hp,  # (M, HID) or (M, HID, NPIX) last hidden activations
    Wp,  # (NPIX, HID) or (HID,) output weights, compute dtype
    Bp,  # (NPIX,) or (1,) output bias, compute dtype
    Xp,  # (B, NPIX) binarized images
    LL,  # (M,) out: log p(x | z) per row, compute dtype
    # shapes
    M,  # S * B rows
    B,  # images
    # strides
    stride_hm,  # row stride of h
    # constants
    HID: tl.constexpr,  # hidden width (dense) or channels (conv)
    IS_CONV: tl.constexpr,  # 1x1-conv head instead of the dense one
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_D: tl.constexpr,  # pixels per logits tile
    BLOCK_K: tl.constexpr,  # hidden chunk of the dense matmul
    INPUT_PRECISION: tl.constexpr,  # "ieee" or "tf32" for fp32 dots
):
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # 64-bit offsets
    rmask = rows < M
    ll = _row_loglik(
        Hp, Wp, Bp, Xp, rows, rows % B, rmask, stride_hm,
        HID, IS_CONV, BLOCK_M, BLOCK_D, BLOCK_K, INPUT_PRECISION,
    )  # fmt: skip
    tl.store(LL + rows, ll, mask=rmask)


@triton.jit
def _iw_nll_fwd_kernel(
    # data pointers
    Hp,  # (S*B, HID) or (S*B, HID, NPIX), rows sample-major
    Wp,  # output weights, compute dtype
    Bp,  # output bias, compute dtype
    Xp,  # (B, NPIX)
    LPZ,  # (S, B) log p(z), contiguous
    LQZ,  # (S, B) log q(z|x), contiguous
    LOGW,  # (S, B) out: log weights (written when STORE_LOGW)
    PMAX,  # (n_split, B) out: running max of this program's samples
    PSUM,  # (n_split, B) out: sum_s exp(log w - max)
    # shapes
    S,  # samples per image
    B,  # images
    # strides
    stride_hm,  # row stride of h
    # constants
    HID: tl.constexpr,  # hidden width (dense) or channels (conv)
    IS_CONV: tl.constexpr,  # 1x1-conv head instead of the dense one
    S_PER_PROG: tl.constexpr,  # samples per program (power of two: few recompiles as S varies)
    BLOCK_S: tl.constexpr,  # samples per tile
    BLOCK_B: tl.constexpr,  # images per tile (tile = BLOCK_S * BLOCK_B rows)
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    STORE_LOGW: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    BLOCK_M: tl.constexpr = BLOCK_S * BLOCK_B
    r = tl.arange(0, BLOCK_M)
    bb = pid_b * BLOCK_B + r % BLOCK_B  # (BLOCK_M,) image of each row
    cdt = Wp.dtype.element_ty
    run_max = tl.full((BLOCK_B,), float("-inf"), dtype=cdt)
    run_sum = tl.zeros((BLOCK_B,), dtype=cdt)
    for i in range(0, S_PER_PROG // BLOCK_S):
        ss = pid_s * S_PER_PROG + i * BLOCK_S + r // BLOCK_B  # (BLOCK_M,) sample of each row
        valid = (ss < S) & (bb < B)
        rows = (ss * B + bb).to(tl.int64)  # 64-bit offsets: S*B*C*784 > 2**31 at paper size
        ll = _row_loglik(
            Hp, Wp, Bp, Xp, rows, bb, valid, stride_hm,
            HID, IS_CONV, BLOCK_M, BLOCK_D, BLOCK_K, INPUT_PRECISION,
        )  # fmt: skip
        lw = ll + tl.load(LPZ + rows, mask=valid, other=0.0).to(cdt)
        lw -= tl.load(LQZ + rows, mask=valid, other=0.0).to(cdt)
        if STORE_LOGW:
            tl.store(LOGW + rows, lw, mask=valid)
        lw = tl.reshape(tl.where(valid, lw, float("-inf")), (BLOCK_S, BLOCK_B))
        new_max = tl.maximum(run_max, tl.max(lw, axis=0))  # (BLOCK_B,)
        safe = tl.where(new_max == float("-inf"), 0.0, new_max)  # no (-inf) - (-inf)
        run_sum = run_sum * tl.exp(run_max - safe) + tl.sum(tl.exp(lw - safe[None, :]), axis=0)
        run_max = new_max
    b_out = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    tl.store(PMAX + pid_s * B + b_out, run_max, mask=b_out < B)
    tl.store(PSUM + pid_s * B + b_out, run_sum, mask=b_out < B)


@triton.jit
def _loglik_bwd_kernel(
    # data pointers
    Hp,  # (M, HID) or (M, HID, NPIX)
    Wp,  # (NPIX, HID) or (HID,), compute dtype
    Bp,  # (NPIX,) or (1,), compute dtype
    Xp,  # (B, NPIX)
    GLL,  # (M,) dL/d ll, compute dtype
    GH,  # out (M, HID[, NPIX]) dL/dh, compute dtype, zero-initialised, contiguous
    PW,  # out (P, NPIX, HID) or (P, HID) partial dL/dW per program, zero-initialised
    PB,  # out (P, NPIX) or (P, 1) partial dL/db per program, zero-initialised
    # shapes
    M,  # S * B rows
    B,  # images
    # strides
    stride_hm,  # row stride of h
    # constants
    HID: tl.constexpr,  # hidden width (dense) or channels (conv)
    IS_CONV: tl.constexpr,  # 1x1-conv head instead of the dense one
    TILES_PER_PROG: tl.constexpr,  # program p handles tiles p, p + P, ... (masked past M)
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    dcol = tl.arange(0, BLOCK_D)
    kcol = tl.arange(0, BLOCK_K)
    for i in range(0, TILES_PER_PROG):
        rows = ((i * n_prog + pid) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        rmask = rows < M
        g = tl.load(GLL + rows, mask=rmask, other=0.0)
        for d0 in range(0, NPIX, BLOCK_D):
            dcols = d0 + dcol
            dmask = dcols < NPIX
            m2 = rmask[:, None] & dmask[None, :]
            l = _logits_tile(
                Hp, Wp, Bp, rows, rmask, dcols, dmask, stride_hm,
                HID, IS_CONV, BLOCK_M, BLOCK_D, BLOCK_K, INPUT_PRECISION,
            )  # fmt: skip
            x = tl.load(Xp + (rows % B)[:, None] * NPIX + dcols[None, :], mask=m2, other=0.0)
            dl = tl.where(
                m2, g[:, None] * (x.to(l.dtype) - tl.sigmoid(l)), 0.0
            )  # (BLOCK_M, BLOCK_D)
            if IS_CONV:
                db = tl.sum(tl.sum(dl, axis=1), axis=0)
                tl.store(PB + pid, tl.load(PB + pid) + db)
                for c in range(0, HID):
                    off = rows[:, None] * stride_hm + c * NPIX + dcols[None, :]
                    hc = tl.load(Hp + off, mask=m2, other=0.0).to(l.dtype)
                    tl.store(
                        GH + rows[:, None] * (HID * NPIX) + c * NPIX + dcols[None, :],
                        dl * tl.load(Wp + c),
                        mask=m2,
                    )
                    tl.store(
                        PW + pid * HID + c,
                        tl.load(PW + pid * HID + c) + tl.sum(tl.sum(dl * hc, axis=1), axis=0),
                    )
            else:
                pb = PB + pid * NPIX + dcols
                tl.store(pb, tl.load(pb, mask=dmask, other=0.0) + tl.sum(dl, axis=0), mask=dmask)
                for k0 in range(0, HID, BLOCK_K):
                    kk = k0 + kcol
                    kmask = kk < HID
                    w = tl.load(
                        Wp + dcols[:, None] * HID + kk[None, :],
                        mask=dmask[:, None] & kmask[None, :],
                        other=0.0,
                    )
                    gh = GH + rows[:, None] * HID + kk[None, :]  # rows owned by this tile only
                    ghm = rmask[:, None] & kmask[None, :]
                    tl.store(
                        gh,
                        tl.load(gh, mask=ghm, other=0.0)
                        + tl.dot(dl, w, input_precision=INPUT_PRECISION),
                        mask=ghm,
                    )
                    h = tl.load(
                        Hp + rows[:, None] * stride_hm + kk[None, :], mask=ghm, other=0.0
                    ).to(l.dtype)
                    pw = PW + (pid * NPIX + dcols[:, None]) * HID + kk[None, :]
                    pwm = dmask[:, None] & kmask[None, :]
                    g_w = tl.dot(
                        tl.trans(dl), h, input_precision=INPUT_PRECISION
                    )  # (BLOCK_D, BLOCK_K)
                    tl.store(pw, tl.load(pw, mask=pwm, other=0.0) + g_w, mask=pwm)
            tl.debug_barrier()  # partial slices are re-read by other threads next iteration


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------
def _head_args(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, is_conv: bool):
    """(h as 2-D/3-D row view, W, b in the compute dtype, hidden width HID)."""
    cdt = launch.compute_dtype(h.dtype)
    if is_conv:
        h3 = h.reshape(h.shape[0], h.shape[1], NPIX)
        if h3.stride(2) != 1 or h3.stride(1) != NPIX:
            h3 = h3.contiguous()
        return h3, W.reshape(-1).to(cdt).contiguous(), b.reshape(1).to(cdt), h.shape[1]
    h2 = h if h.stride(1) == 1 else h.contiguous()
    return h2, W.to(cdt).contiguous(), b.to(cdt).contiguous(), h.shape[1]


_BLOCK_D, _BLOCK_K = 64, 32


def _launch_loglik_fwd(h, W, b, x, is_conv: bool) -> torch.Tensor:
    hv, Wc, bc, HID = _head_args(h, W, b, is_conv)
    M, B = h.shape[0], x.shape[0]
    ll = launch.empty((M,), h, Wc.dtype)
    BLOCK_M = 32
    _loglik_fwd_kernel[(triton.cdiv(M, BLOCK_M),)](
        hv, Wc, bc, x.contiguous(), ll, M, B, hv.stride(0),
        HID=HID, IS_CONV=is_conv, BLOCK_M=BLOCK_M, BLOCK_D=_BLOCK_D, BLOCK_K=_BLOCK_K,
        INPUT_PRECISION=launch.input_precision(h.dtype),
    )  # fmt: skip
    return ll


def _launch_loglik_bwd(h, W, b, x, gll, is_conv: bool):
    """(dh, dW, db) in the compute dtype; dW, db summed from per-program partials."""
    hv, Wc, bc, HID = _head_args(h, W, b, is_conv)
    M, B = h.shape[0], x.shape[0]
    BLOCK_M = 32
    n_tiles = triton.cdiv(M, BLOCK_M)
    tpp = triton.next_power_of_2(triton.cdiv(n_tiles, launch.max_programs(h.device)))
    P = triton.cdiv(n_tiles, tpp)
    cdt = Wc.dtype
    gh = torch.zeros(hv.shape, device=h.device, dtype=cdt)
    pw = torch.zeros((P, *Wc.shape) if is_conv else (P, NPIX, HID), device=h.device, dtype=cdt)
    pb = torch.zeros((P, bc.numel()), device=h.device, dtype=cdt)
    _loglik_bwd_kernel[(P,)](
        hv, Wc, bc, x.contiguous(), gll.to(cdt).contiguous(), gh, pw, pb,
        M, B, hv.stride(0),
        HID=HID, IS_CONV=is_conv, TILES_PER_PROG=tpp, BLOCK_M=BLOCK_M,
        BLOCK_D=_BLOCK_D, BLOCK_K=_BLOCK_K, INPUT_PRECISION=launch.input_precision(h.dtype),
    )  # fmt: skip
    return gh.reshape(h.shape), pw.sum(0).reshape(W.shape), pb.sum(0).reshape(b.shape)


def _launch_iw_nll(h, W, b, x, log_pz, log_qz, is_conv: bool, store_logw: bool):
    """(nll (B,), log weights (S, B) or None) in the compute dtype."""
    hv, Wc, bc, HID = _head_args(h, W, b, is_conv)
    S, B = log_pz.shape
    BLOCK_B = min(16, max(2, triton.next_power_of_2(B)))
    BLOCK_S = max(2, 32 // BLOCK_B)
    n_btiles = triton.cdiv(B, BLOCK_B)
    want_splits = max(1, 4 * launch.max_programs(h.device) // n_btiles)
    s_per = triton.next_power_of_2(max(BLOCK_S, triton.cdiv(S, want_splits)))
    n_split = triton.cdiv(S, s_per)
    cdt = Wc.dtype
    logw = launch.empty((S, B), h, cdt) if store_logw else log_pz
    pmax = launch.empty((n_split, B), h, cdt)
    psum = launch.empty((n_split, B), h, cdt)
    _iw_nll_fwd_kernel[(n_btiles, n_split)](
        hv, Wc, bc, x.contiguous(), log_pz.contiguous(), log_qz.contiguous(), logw, pmax, psum,
        S, B, hv.stride(0),
        HID=HID, IS_CONV=is_conv, S_PER_PROG=s_per, BLOCK_S=BLOCK_S, BLOCK_B=BLOCK_B,
        BLOCK_D=_BLOCK_D, BLOCK_K=_BLOCK_K, STORE_LOGW=store_logw,
        INPUT_PRECISION=launch.input_precision(h.dtype),
    )  # fmt: skip
    top = pmax.max(0).values  # (B,) combine the per-split (max, sum) pairs
    lme = top + torch.log((psum * torch.exp(pmax - top)).sum(0)) - math.log(S)
    return -lme, (logw if store_logw else None)


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------
class _BernoulliLoglik(torch.autograd.Function):
    """(h, W, b, x) -> ll (M,); backward recomputes the logits tile by tile."""

    @staticmethod
    def forward(ctx, h, W, b, x, is_conv):
        ctx.save_for_backward(h, W, b, x)
        ctx.is_conv = is_conv
        return _launch_loglik_fwd(h.detach(), W.detach(), b.detach(), x, is_conv).to(h.dtype)

    @staticmethod
    def backward(ctx, gll):
        h, W, b, x = ctx.saved_tensors
        gh, gW, gb = _launch_loglik_bwd(h, W, b, x, gll, ctx.is_conv)
        return gh.to(h.dtype), gW.to(W.dtype), gb.to(b.dtype), None, None


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check(h, W, b, x, is_conv: bool, log_pz=None, log_qz=None) -> None:
    if x.dim() != 2 or x.shape[1] != NPIX:
        raise ValueError(f"x must be (B, {NPIX}) flat binarized images, got {tuple(x.shape)}")
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
        if h.dim() != 2 or tuple(W.shape) != (NPIX, h.shape[1]) or tuple(b.shape) != (NPIX,):
            raise ValueError(
                f"dense head needs h (S*B, H), W (784, H) as nn.Linear.weight, b (784,); got "
                f"{tuple(h.shape)}, {tuple(W.shape)}, {tuple(b.shape)}"
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

    h (S*B, H) sample-major, W (784, H) as nn.Linear.weight, b (784,), x (B, 784) -> ll (S*B,).
    Differentiable in h, W and b; the (S*B, 784) logits are never stored.
    """
    _check(h, W, b, x, is_conv=False)
    return _BernoulliLoglik.apply(h, W, b, x, False)


def bernoulli_loglik_conv1x1(
    h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """`bernoulli_loglik` for a 1x1-conv head: h (S*B, C, 28, 28), w (1, C, 1, 1), b (1,)."""
    _check(h, w, b, x, is_conv=True)
    return _BernoulliLoglik.apply(h, w, b, x, True)


def _iw(h, W, b, x, log_pz, log_qz, is_conv, return_log_weights, return_recon=False):
    _check(h, W, b, x, is_conv, log_pz, log_qz)
    store = return_log_weights or return_recon
    with torch.no_grad():
        nll, logw = _launch_iw_nll(h, W, b, x, log_pz, log_qz, is_conv, store)
    out = [nll.to(log_pz.dtype)]
    if return_log_weights:
        out.append(logw.to(log_pz.dtype))
    if return_recon:  # mean_s log p(x|z_s) = mean_s(log w_s - log p(z_s) + log q(z_s|x)): (B,)
        out.append((logw.double() - log_pz.double() + log_qz.double()).mean(0).to(log_pz.dtype))
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
    mean_s log p(x|z_s) (B,) when `return_recon`. Forward only (evaluation).
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
            logits = torch.nn.functional.conv2d(hc, W, b).reshape(hc.shape[0], NPIX)
        else:
            logits = torch.nn.functional.linear(hc, W, b)  # (chunk*B, 784)
        xt = x.to(logits.dtype).repeat(hc.shape[0] // B, 1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, xt, reduction="none")
        lls.append(-bce.sum(1))
    log_w = torch.cat(lls).reshape(S, B) + log_pz - log_qz  # (S, B)
    nll = -(torch.logsumexp(log_w, 0) - math.log(S))
    return (nll, log_w) if return_log_weights else nll
