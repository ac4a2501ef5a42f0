"""Fused Real NVP flow (Appendix B.2): all K blocks of InvertibleDense -> Coupling -> ActNorm.

What is fused and why
---------------------
One block of the flow (DESIGN.md, "Real NVP") is

    u = x @ W;  h = leaky_relu(u_l @ A + a);  s = h @ S + s0;  t = h @ T + t0
    v = concat(u_l, u_r * sigmoid(s + c) + t);  y = (v + bias) * exp(log_scale)

Eager torch launches ~15 kernels per block and writes every intermediate (u, h, s, t, v: the
(N, 256) hidden activations dominate) to global memory, so a K = 50 flow over 128,000 rows is
purely memory-bound. Here one program owns a tile of BLOCK_N rows and runs *all K blocks* on
it: the (BLOCK_N, D) tile stays in registers, the weights of block k are streamed in, and the
hidden layer is produced and consumed BLOCK_H columns at a time (flash-attention style), so
(N, H) never exists. The kernel returns y and the data-dependent part of the log-determinant,
sum_k sum_j log_sigmoid(s_kj + c); the per-block constants log|det W_k| and sum(log_scale_k)
are added once in torch (slogdet), so autograd differentiates them.

Layout trick: instead of slicing u into (u_l, u_r) (register tensors cannot be sliced), the
coupling weights are loaded as zero-padded (D, H) / (H, D) tiles: A's rows sit in columns
[0, Dl) of u, S/T/s0/t0 write into columns [Dl, D). D is padded to BLOCK_D = next power of two
>= 16 with masks (tl.dot needs every dim >= 16), so any D works (33, 40, 64, ...).

Backward (torch.autograd.Function) recomputes every block from its input: the forward stores
only the K block-boundary activations (K, N, D) (the input of each block); the backward walks
the blocks in reverse over a tile, recomputing u, the hidden chunks, s and t. Weight gradients
are reduced over rows without races: a fixed grid of P programs, each owning a float32 (or
float64) partial-sum slice (P, K, ...) that it read-modify-writes tile after tile, then one
torch `.sum(0)`. No atomics, so the result is deterministic (bit-identical on reruns).

Order: kernels -> launchers -> autograd.Function -> public `realnvp_forward`; the eager torch
`realnvp_forward_torch` (same math, used as the benchmark baseline) is at the end.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vaeprior.fast.kernels import launch

__all__ = ["realnvp_forward", "realnvp_forward_torch"]


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@triton.jit
def _log_sigmoid_pair(z):
    """(log sigmoid(z), log sigmoid(-z)), stable: log_sigmoid(x) = min(x, 0) - log1p(e^-|x|)."""
    soft = tl.log(1.0 + tl.exp(-tl.abs(z)))
    return tl.minimum(z, 0.0) - soft, tl.minimum(-z, 0.0) - soft


@triton.jit
def _coupling_st(
    u,  # (BLOCK_N, BLOCK_D) block input after InvertibleDense, padded columns are 0
    A_k,  # pointer to A[k] (Dl, H)
    a_k,  # pointer to a[k] (H,)
    S_k,  # pointer to S[k] (H, Dr)
    T_k,  # pointer to T[k] (H, Dr)
    cols,  # (BLOCK_D,) column ids
    rcol,  # (BLOCK_D,) column id into the right half (0 where not right)
    is_left,  # (BLOCK_D,) cols < Dl
    is_right,  # (BLOCK_D,) Dl <= cols < D
    DR,  # D - Dl
    slope,  # LeakyReLU negative slope
    H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """s, t (BLOCK_N, BLOCK_D) of the coupling net, hidden layer streamed BLOCK_H at a time."""
    s = tl.zeros((BLOCK_N, BLOCK_D), dtype=u.dtype)
    t = tl.zeros((BLOCK_N, BLOCK_D), dtype=u.dtype)
    hcol = tl.arange(0, BLOCK_H)
    for h0 in range(0, H, BLOCK_H):
        hh = h0 + hcol
        A_blk = tl.load(A_k + cols[:, None] * H + hh[None, :], mask=is_left[:, None], other=0.0)
        pre = tl.dot(u, A_blk, input_precision=INPUT_PRECISION) + tl.load(a_k + hh)[None, :]
        hid = tl.where(pre > 0, pre, pre * slope)  # (BLOCK_N, BLOCK_H)
        st_off = hh[:, None] * DR + rcol[None, :]
        S_blk = tl.load(S_k + st_off, mask=is_right[None, :], other=0.0)  # (BLOCK_H, BLOCK_D)
        T_blk = tl.load(T_k + st_off, mask=is_right[None, :], other=0.0)
        s += tl.dot(hid, S_blk, input_precision=INPUT_PRECISION)
        t += tl.dot(hid, T_blk, input_precision=INPUT_PRECISION)
    return s, t


@triton.jit
def _realnvp_fwd_kernel(
    # data pointers
    X,  # (N, D) input rows, any float dtype
    Y,  # (N, D) output rows, dtype of X
    LD,  # (N,) data-dependent log-det sum_k sum_j log_sigmoid(s + c), compute dtype
    ACTS,  # (K, N, D) block inputs saved for backward (compute dtype), unused unless STORE_ACTS
    W,  # (K, D, D) InvertibleDense, contiguous, compute dtype (fp32 or fp64)
    A,  # (K, Dl, H) coupling first layer
    a,  # (K, H)
    S,  # (K, H, Dr) scale head
    s0,  # (K, Dr)
    T,  # (K, H, Dr) shift head
    t0,  # (K, Dr)
    LS,  # (K, D) ActNorm log_scale
    BIAS,  # (K, D) ActNorm bias
    # shapes
    N,  # rows
    D,  # features
    DL,  # D // 2
    K: tl.constexpr,  # number of blocks (constexpr: loop bounds must be compile-time, see _n_programs)
    # strides
    stride_xn,  # row stride of X
    stride_yn,  # row stride of Y
    # constants
    slope,  # LeakyReLU negative slope (0.2)
    scale_shift,  # c in sigmoid(s + c) (2.0)
    H: tl.constexpr,  # hidden width (power of two)
    BLOCK_N: tl.constexpr,  # rows per program
    BLOCK_D: tl.constexpr,  # next power of two >= max(D, 16)
    BLOCK_H: tl.constexpr,  # hidden columns per chunk (divides H)
    STORE_ACTS: tl.constexpr,  # write block inputs to ACTS (training)
    INPUT_PRECISION: tl.constexpr,  # "ieee" or "tf32" for fp32 dots
):
    pid = tl.program_id(0)
    rows = (pid * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)  # 64-bit offsets
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < N
    cmask = cols < D
    m2 = rmask[:, None] & cmask[None, :]
    is_left = cols < DL
    is_right = (cols >= DL) & cmask
    rcol = tl.where(is_right, cols - DL, 0)
    DR = D - DL
    cdt = W.dtype.element_ty

    x = tl.load(X + rows[:, None] * stride_xn + cols[None, :], mask=m2, other=0.0).to(cdt)
    ld = tl.zeros((BLOCK_N,), dtype=cdt)
    for k in range(0, K):
        if STORE_ACTS:
            tl.store(ACTS + (k * N + rows[:, None]) * D + cols[None, :], x, mask=m2)
        w = tl.load(
            W + k * D * D + cols[:, None] * D + cols[None, :],
            mask=cmask[:, None] & cmask[None, :],
            other=0.0,
        )
        u = tl.dot(x, w, input_precision=INPUT_PRECISION)  # InvertibleDense (BLOCK_N, BLOCK_D)
        s, t = _coupling_st(
            u, A + k * DL * H, a + k * H, S + k * H * DR, T + k * H * DR,
            cols, rcol, is_left, is_right, DR, slope,
            H, BLOCK_N, BLOCK_D, BLOCK_H, INPUT_PRECISION,
        )  # fmt: skip
        s += tl.load(s0 + k * DR + rcol, mask=is_right, other=0.0)[None, :]
        t += tl.load(t0 + k * DR + rcol, mask=is_right, other=0.0)[None, :]
        logsig, _ = _log_sigmoid_pair(s + scale_shift)
        v = tl.where(is_right[None, :], u * tl.exp(logsig) + t, u)  # Coupling
        ld += tl.sum(tl.where(is_right[None, :], logsig, 0.0), axis=1)
        ls = tl.load(LS + k * D + cols, mask=cmask, other=0.0)
        bias = tl.load(BIAS + k * D + cols, mask=cmask, other=0.0)
        x = tl.where(m2, (v + bias[None, :]) * tl.exp(ls)[None, :], 0.0)  # ActNorm
    tl.store(Y + rows[:, None] * stride_yn + cols[None, :], x.to(Y.dtype.element_ty), mask=m2)
    tl.store(LD + rows, ld, mask=rmask)


@triton.jit
def _rmw(ptr, val, mask):
    """ptr[...] += val on a slice owned by this program (no other program touches it)."""
    tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + val, mask=mask)


@triton.jit
def _realnvp_bwd_kernel(
    # data pointers
    GY,  # (N, D) dL/dy, compute dtype, contiguous
    GLD,  # (N,) dL/d logabsdet, compute dtype
    GX,  # (N, D) out: dL/dx, compute dtype
    ACTS,  # (K, N, D) block inputs saved by the forward
    W,
    A,
    a,
    S,
    s0,
    T,
    t0,
    LS,
    BIAS,  # W ... BIAS: parameters as in the forward kernel
    PW,  # (P, K, D, D) per-program partial weight gradients (zeroed), compute dtype
    PA,  # (P, K, Dl, H)
    Pa,  # (P, K, H)
    PS,  # (P, K, H, Dr)
    Ps0,  # (P, K, Dr)
    PT,  # (P, K, H, Dr)
    Pt0,  # (P, K, Dr)
    PLS,  # (P, K, D)
    PB,  # (P, K, D)
    # shapes
    N,
    D,
    DL,  # N, D, DL: as in the forward kernel
    # constants
    K: tl.constexpr,  # number of blocks
    TILES_PER_PROG: tl.constexpr,  # program p handles tiles p, p + P, ..., masked past N
    # constants
    slope,
    scale_shift,
    H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)  # P
    cols = tl.arange(0, BLOCK_D)
    hcol = tl.arange(0, BLOCK_H)
    cmask = cols < D
    is_left = cols < DL
    is_right = (cols >= DL) & cmask
    rcol = tl.where(is_right, cols - DL, 0)
    DR = D - DL
    mDD = cmask[:, None] & cmask[None, :]
    for i in range(0, TILES_PER_PROG):
        rows = ((i * n_prog + pid) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        rmask = rows < N
        m2 = rmask[:, None] & cmask[None, :]
        gy = tl.load(GY + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        gld = tl.load(GLD + rows, mask=rmask, other=0.0)[:, None]
        for kk in range(0, K):
            k = K - 1 - kk
            # ---- recompute block k from its saved input ----
            x = tl.load(ACTS + (k * N + rows[:, None]) * D + cols[None, :], mask=m2, other=0.0)
            w = tl.load(W + k * D * D + cols[:, None] * D + cols[None, :], mask=mDD, other=0.0)
            u = tl.dot(x, w, input_precision=INPUT_PRECISION)
            A_k = A + k * DL * H
            S_k = S + k * H * DR
            T_k = T + k * H * DR
            s, t = _coupling_st(
                u, A_k, a + k * H, S_k, T_k, cols, rcol, is_left, is_right, DR, slope,
                H, BLOCK_N, BLOCK_D, BLOCK_H, INPUT_PRECISION,
            )  # fmt: skip
            s += tl.load(s0 + k * DR + rcol, mask=is_right, other=0.0)[None, :]
            t += tl.load(t0 + k * DR + rcol, mask=is_right, other=0.0)[None, :]
            logsig, logsig_neg = _log_sigmoid_pair(s + scale_shift)
            sig = tl.exp(logsig)  # sigmoid(s + c)
            oms = tl.exp(logsig_neg)  # 1 - sigmoid(s + c)
            v = tl.where(is_right[None, :], u * sig + t, u)
            ls = tl.load(LS + k * D + cols, mask=cmask, other=0.0)
            bias = tl.load(BIAS + k * D + cols, mask=cmask, other=0.0)
            e = tl.exp(ls)[None, :]
            y = (v + bias[None, :]) * e
            # ---- ActNorm ----
            gv = gy * e  # (BLOCK_N, BLOCK_D)
            pk = pid * K + k  # this program's partial-sum slot for block k
            _rmw(PLS + pk * D + cols, tl.sum(gy * y, axis=0), cmask)
            _rmw(PB + pk * D + cols, tl.sum(gv, axis=0), cmask)
            # ---- Coupling: y_r = u_r * sig + t, logdet += log sig ----
            g_t = tl.where(is_right[None, :], gv, 0.0)
            g_s = tl.where(is_right[None, :], gv * u * sig * oms + gld * oms, 0.0)
            g_u = tl.where(is_right[None, :], gv * sig, gv)
            _rmw(Ps0 + pk * DR + rcol, tl.sum(g_s, axis=0), is_right)
            _rmw(Pt0 + pk * DR + rcol, tl.sum(g_t, axis=0), is_right)
            for h0 in range(0, H, BLOCK_H):
                hh = h0 + hcol
                A_blk = tl.load(
                    A_k + cols[:, None] * H + hh[None, :], mask=is_left[:, None], other=0.0
                )  # (BLOCK_D, BLOCK_H)
                pre = tl.dot(u, A_blk, input_precision=INPUT_PRECISION)
                pre += tl.load(a + k * H + hh)[None, :]
                hid = tl.where(pre > 0, pre, pre * slope)
                st_t = hh[None, :] * DR + rcol[:, None]  # transposed (BLOCK_D, BLOCK_H)
                S_t = tl.load(S_k + st_t, mask=is_right[:, None], other=0.0)
                T_t = tl.load(T_k + st_t, mask=is_right[:, None], other=0.0)
                g_hid = tl.dot(g_s, S_t, input_precision=INPUT_PRECISION)
                g_hid += tl.dot(g_t, T_t, input_precision=INPUT_PRECISION)
                g_pre = tl.where(pre > 0, g_hid, g_hid * slope)  # (BLOCK_N, BLOCK_H)
                hid_t = tl.trans(hid)
                st_off = (pk * H + hh[:, None]) * DR + rcol[None, :]  # (BLOCK_H, BLOCK_D)
                _rmw(
                    PS + st_off,
                    tl.dot(hid_t, g_s, input_precision=INPUT_PRECISION),
                    is_right[None, :],
                )
                _rmw(
                    PT + st_off,
                    tl.dot(hid_t, g_t, input_precision=INPUT_PRECISION),
                    is_right[None, :],
                )
                _rmw(Pa + pk * H + hh, tl.sum(g_pre, axis=0), hh < H)
                a_off = (pk * DL + cols[:, None]) * H + hh[None, :]  # (BLOCK_D, BLOCK_H)
                g_A = tl.dot(tl.trans(u), g_pre, input_precision=INPUT_PRECISION)
                _rmw(PA + a_off, g_A, is_left[:, None])
                g_u += tl.dot(g_pre, tl.trans(A_blk), input_precision=INPUT_PRECISION)
            # ---- InvertibleDense: u = x @ W ----
            g_W = tl.dot(tl.trans(x), g_u, input_precision=INPUT_PRECISION)
            _rmw(PW + pk * D * D + cols[:, None] * D + cols[None, :], g_W, mDD)
            gy = tl.dot(g_u, tl.trans(w), input_precision=INPUT_PRECISION)  # dL/d(block input)
            tl.debug_barrier()  # partial slices are re-read by other threads next iteration
        tl.store(GX + rows[:, None] * D + cols[None, :], gy, mask=m2)


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------
_PARAM_NAMES = ("W", "A", "a", "S", "s0", "T", "t0", "log_scale", "bias")


def param_shapes(K: int, D: int, H: int) -> list[tuple[int, ...]]:
    """Shapes of the stacked parameters, in `realnvp_forward`'s argument order."""
    Dl, Dr = D // 2, D - D // 2
    return [(K, D, D), (K, Dl, H), (K, H), (K, H, Dr), (K, Dr), (K, H, Dr), (K, Dr), (K, D), (K, D)]


def _block_sizes(D: int, H: int) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_H): D padded to a power of two >= 16 (tl.dot minimum), H chunk <= 64."""
    if H < 16 or H & (H - 1):
        raise ValueError(f"hidden width H={H} must be a power of two >= 16 for the fused flow")
    return max(16, triton.next_power_of_2(D)), min(H, 64)


def _launch_forward(
    x: torch.Tensor, params: list[torch.Tensor], slope: float, scale_shift: float, store_acts: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """y (N, D) in x.dtype, ld (N,) and optional block inputs (K, N, D) in the compute dtype."""
    N, D = x.shape
    K, _, H = params[1].shape
    BLOCK_D, BLOCK_H = _block_sizes(D, H)
    BLOCK_N = 32
    if x.stride(1) != 1:
        x = x.contiguous()
    y = launch.empty((N, D), x, x.dtype)
    ld = launch.empty((N,), x, params[0].dtype)
    acts = launch.empty((K, N, D), x, params[0].dtype) if store_acts else ld
    grid = (triton.cdiv(N, BLOCK_N),)
    _realnvp_fwd_kernel[grid](
        x, y, ld, acts, *params,
        N, D, D // 2, K,
        x.stride(0), y.stride(0),
        float(slope), float(scale_shift),
        H=H, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, BLOCK_H=BLOCK_H,
        STORE_ACTS=store_acts, INPUT_PRECISION=launch.input_precision(x.dtype),
        num_warps=4,
    )  # fmt: skip
    return y, ld, (acts if store_acts else None)


def _n_programs(n_tiles: int, device: torch.device) -> tuple[int, int]:
    """Backward grid (P, tiles per program); each program owns one partial-sum slice.

    At most one program per SM (4 in the interpreter). Tiles per program is a power of two so
    that it can be a compile-time loop bound (few recompiles as N varies; runtime-valued loop
    bounds also break Triton 3.6's interpreter under NumPy >= 2.4).
    """
    tpp = triton.next_power_of_2(triton.cdiv(n_tiles, launch.max_programs(device)))
    return triton.cdiv(n_tiles, tpp), tpp


def _launch_backward(
    gy: torch.Tensor,
    gld: torch.Tensor,
    acts: torch.Tensor,
    params: list[torch.Tensor],
    slope: float,
    scale_shift: float,
    io_dtype: torch.dtype,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """dL/dx (N, D) and the parameter gradients (summed partials), compute dtype."""
    K, N, D = acts.shape
    H = params[1].shape[2]
    cdt = params[0].dtype
    BLOCK_D, BLOCK_H = _block_sizes(D, H)
    BLOCK_N = 32
    n_tiles = triton.cdiv(N, BLOCK_N)
    P, tpp = _n_programs(n_tiles, acts.device)
    gx = launch.empty((N, D), acts, cdt)
    partials = [torch.zeros((P, *p.shape), device=acts.device, dtype=cdt) for p in params]
    _realnvp_bwd_kernel[(P,)](
        gy.to(cdt).contiguous(), gld.to(cdt).contiguous(), gx, acts, *params, *partials,
        N, D, D // 2, K, tpp,
        float(slope), float(scale_shift),
        H=H, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, BLOCK_H=BLOCK_H,
        INPUT_PRECISION=launch.input_precision(io_dtype),
        num_warps=4,
    )  # fmt: skip
    return gx, [p.sum(0) for p in partials]


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------
class _RealNVPFunction(torch.autograd.Function):
    """(x, *params) -> (y, data-dependent logdet); backward recomputes blocks from saved inputs."""

    @staticmethod
    def forward(ctx, x, slope, scale_shift, *params):
        cparams = [p.detach().to(launch.compute_dtype(x.dtype)).contiguous() for p in params]
        y, ld, acts = _launch_forward(x.detach(), cparams, slope, scale_shift, store_acts=True)
        ctx.save_for_backward(acts, *cparams)
        ctx.slope, ctx.scale_shift, ctx.x_dtype = slope, scale_shift, x.dtype
        ctx.param_dtypes = [p.dtype for p in params]
        return y, ld

    @staticmethod
    def backward(ctx, gy, gld):
        acts, *cparams = ctx.saved_tensors
        if gy is None:
            gy = torch.zeros(acts.shape[1:], device=acts.device, dtype=acts.dtype)
        if gld is None:
            gld = torch.zeros(acts.shape[1], device=acts.device, dtype=acts.dtype)
        gx, gparams = _launch_backward(
            gy, gld, acts, cparams, ctx.slope, ctx.scale_shift, ctx.x_dtype
        )
        gparams = [g.to(dt) for g, dt in zip(gparams, ctx.param_dtypes, strict=True)]
        return gx.to(ctx.x_dtype), None, None, *gparams


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check_shapes(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    D = x.shape[1]
    K = params[0].shape[0]
    Dl, Dr = D // 2, D - D // 2
    H = params[1].shape[-1]
    expected = [
        (K, D, D),
        (K, Dl, H),
        (K, H),
        (K, H, Dr),
        (K, Dr),
        (K, H, Dr),
        (K, Dr),
        (K, D),
        (K, D),
    ]
    for name, p, shape in zip(_PARAM_NAMES, params, expected, strict=True):
        if tuple(p.shape) != shape:
            raise ValueError(
                f"{name} must be stacked over blocks with shape {shape} for x of shape "
                f"{tuple(x.shape)}, got {tuple(p.shape)}"
            )
    if K < 1:
        raise ValueError("realnvp_forward needs K >= 1 blocks (K = 0 is the identity)")


def realnvp_forward(
    x: torch.Tensor,
    W: torch.Tensor,
    A: torch.Tensor,
    a: torch.Tensor,
    S: torch.Tensor,
    s0: torch.Tensor,
    T: torch.Tensor,
    t0: torch.Tensor,
    log_scale: torch.Tensor,
    bias: torch.Tensor,
    *,
    slope: float,
    scale_shift: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real NVP forward over K stacked blocks (Appendix B.2; DESIGN.md "Real NVP").

    x (N, D); W (K, D, D), A (K, Dl, H), a (K, H), S/T (K, H, Dr), s0/t0 (K, Dr),
    log_scale/bias (K, D). Returns y (N, D) and logabsdet (N,) =
    sum_k [log|det W_k| + sum_j log_sigmoid(s_kj + scale_shift) + sum_j log_scale_kj].
    Differentiable in x and every parameter. Block 0 is applied first.
    """
    params = (W, A, a, S, s0, T, t0, log_scale, bias)
    _check_shapes(x, params)
    needs_grad = x.requires_grad or any(p.requires_grad for p in params)
    if torch.is_grad_enabled() and needs_grad:
        y, ld = _RealNVPFunction.apply(x, slope, scale_shift, *params)
    else:  # inference: no block inputs are stored
        cparams = [p.to(launch.compute_dtype(x.dtype)).contiguous() for p in params]
        y, ld, _ = _launch_forward(x, cparams, slope, scale_shift, store_acts=False)
    wdt = launch.compute_dtype(W.dtype)
    const = torch.linalg.slogdet(W.to(wdt))[1].sum() + log_scale.to(wdt).sum()
    return y, (ld + const).to(x.dtype)


def realnvp_forward_torch(
    x: torch.Tensor,
    W: torch.Tensor,
    A: torch.Tensor,
    a: torch.Tensor,
    S: torch.Tensor,
    s0: torch.Tensor,
    T: torch.Tensor,
    t0: torch.Tensor,
    log_scale: torch.Tensor,
    bias: torch.Tensor,
    *,
    slope: float,
    scale_shift: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager torch version of `realnvp_forward` (same arguments); the benchmark baseline."""
    _check_shapes(x, (W, A, a, S, s0, T, t0, log_scale, bias))
    Dl = x.shape[1] // 2
    ld = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for k in range(W.shape[0]):
        u = x @ W[k]  # (N, D)
        u_l, u_r = u[:, :Dl], u[:, Dl:]
        h = torch.nn.functional.leaky_relu(u_l @ A[k] + a[k], slope)  # (N, H)
        z = h @ S[k] + s0[k] + scale_shift
        y_r = u_r * torch.sigmoid(z) + h @ T[k] + t0[k]
        x = (torch.cat([u_l, y_r], dim=1) + bias[k]) * torch.exp(log_scale[k])
        ld = ld + torch.nn.functional.logsigmoid(z).sum(1)
    const = torch.linalg.slogdet(W)[1].sum() + log_scale.sum()
    return x, ld + const
