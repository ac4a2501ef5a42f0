"""Real NVP as functions of stacked parameters (Appendix B.2): the forward and its backward.

One block (DESIGN.md "Real NVP"; row vectors, `y = x @ W`, Dl = D // 2, Dr = D - Dl):

    u = x @ W_k;  h = leaky_relu(u_l @ A_k + a_k);  [s | t] = h @ ST_k + st0_k
    v = concat(u_l, u_r * sigmoid(s + c) + t);  y = (v + bias_k) * exp(log_scale_k)
    log|det| = log|det W_k| + sum_j log_sigmoid(s_j + c) + sum_j log_scale_kj

Parameters are stacked over the K blocks in the layout shared with the Triton kernel
(`vaeprior.fast.kernels.flow`), so nothing is repacked per call:

    W (K, D, D)   A (K, Dl, H)   a (K, H)   ST (K, H, 2 Dr) = [S | T]   st0 (K, 2 Dr) = [s0 | t0]
    log_scale (K, D)   bias (K, D)

The reference (`vaeprior.reference.flows`) keeps the paper-readable per-block names S, T, s0,
t0; `vaeprior.fast.models.convert` maps between the two.

Why the forward looks the way it does (CPU, the paper's batch of 128 rows): eager autograd over
K blocks of small ops spends most of its time in per-op dispatch and autograd bookkeeping, not
in arithmetic. Here the whole flow is one `torch.autograd.Function` with a hand-written
backward (the VJPs are written out in `_RealNVPFunction.backward`):

- activations are kept feature-major, (D, N) instead of (N, D), so the coupling's halves u_l,
  u_r and the heads s, t are contiguous row blocks and every element-wise op runs on
  contiguous memory;
- biases are a row of the weight matrices, against a row of ones on the activations (no
  broadcast copy), the scale and shift heads are one (2 Dr, H) matmul, the LeakyReLU runs in
  place, outputs are written into preallocated buffers (`out=`): 7 ops per block forward;
- the backward recomputes each block's hidden layer instead of keeping the (K, H, N)
  activations, so that every matmul of a block (weight gradients included) reads and writes
  cache-hot data (measured faster than keeping them, and than batched `bmm`s over stacked
  gradients); log|det W_k| of all blocks is one batched `slogdet` (outside the Function);
- on the CPU large batches run in row chunks with bounded buffers (`_rows_per_chunk`).

Measured cost and its breakdown: bench/RESULTS.md, "CPU training speed". The same code path
serves inference (nothing kept) and training; K = 0 is the identity. The inverse and the
nn.Module (`RealNVP`: parameters, ActNorm initialisation, backends) are in
`vaeprior.fast.models.flows`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from vaeprior.reference.flows import ACTNORM_EPS

# Names of the stacked torch parameters, in the argument order of `realnvp_forward`,
# `realnvp_inverse` and the Triton kernel. (The reference's per-block names are
# `vaeprior.reference.flows.PARAM_NAMES`.)
PARAM_NAMES = ("W", "A", "a", "ST", "st0", "log_scale", "bias")

Params = tuple[torch.Tensor, ...]  # (W, A, a, ST, st0, log_scale, bias)


def param_shapes(depth: int, dim: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the stacked parameters of a K = `depth` flow on D = `dim`, H = `hidden`."""
    dl = dim // 2
    dr = dim - dl
    return {
        "W": (depth, dim, dim),
        "A": (depth, dl, hidden),
        "a": (depth, hidden),
        "ST": (depth, hidden, 2 * dr),
        "st0": (depth, 2 * dr),
        "log_scale": (depth, dim),
        "bias": (depth, dim),
    }


def check_params(x: torch.Tensor, params: Params) -> None:
    """One-line ValueError unless x is (N, D) float and params are stacked as PARAM_NAMES."""
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a float (N, D) tensor, got {x.dtype} {tuple(x.shape)}")
    if params[1].dim() != 3:
        raise ValueError(
            f"A must be stacked over blocks as (K, Dl, H), got {tuple(params[1].shape)}"
        )
    depth, hidden = params[0].shape[0], params[1].shape[2]
    expected = param_shapes(depth, x.shape[1], hidden)
    for (name, shape), p in zip(expected.items(), params, strict=True):
        if tuple(p.shape) != shape:
            raise ValueError(
                f"{name} must be stacked over the K = {depth} blocks with shape {shape} for x "
                f"of shape {tuple(x.shape)}, got {tuple(p.shape)}"
            )


# --------------------------------------------------------------------------------------------
# forward: one sweep over the blocks, feature-major activations
# --------------------------------------------------------------------------------------------
def _shifted_st0(st0: torch.Tensor, scale_shift: float) -> torch.Tensor:
    """[s0 + c | t0] (K, 2 Dr): the scale shift c folded into the head's bias."""
    dr = st0.shape[1] // 2
    return torch.cat([st0[:, :dr] + scale_shift, st0[:, dr:]], dim=1)


def _with_bias_row(bias: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[bias; weight] (K, 1 + J, M) from bias (K, M) and weight (K, J, M): row 0 is the bias.

    The activations carry a row of ones on top, (1 + J, N), so one mm of the transposed view,
    [bias; weight]^T [1; act], computes weight^T act + bias: addmm would first copy the bias
    broadcast over the N columns into the output element by element (a stride-0 inner
    dimension), which costs as much as the matmul at N = 8192.
    """
    return torch.cat([bias.unsqueeze(1), weight], dim=1)


def _sweep(
    xt: torch.Tensor,
    params: Params,
    slope: float,
    scale_shift: float,
    *,
    keep: bool,
    init: bool = False,
) -> dict[str, torch.Tensor]:
    """All K blocks on feature-major rows xt (D, N); returns y^T and what the backward needs.

    Per block, 7 ops: u = W^T x (mm), pre = A^T u_l + a (mm with the bias row), h =
    leaky_relu(pre) in place, [s + c | t] = ST^T h + st0 (mm with the bias row), sig =
    sigmoid(s + c), v_r = u_r sig + t written over u_r (so the buffer holds v = [u_l | v_r]),
    y = v e + bias e (addcmul, e = exp(log_scale)). keep=True stores, for every block, its
    input and output XT (K + 1, D, N), [1; v] VT (K, 1 + D, N) and sig SIG (K, Dr, N); the
    hidden layer [1; h] (1 + H, N) is one scratch buffer (the backward recomputes it: 8 % more
    FLOPs, but the (K, H, N) activations never leave the cache). The heads of all blocks are
    kept, STT (K, 2 Dr, N), so that the log-determinant is one batched log_sigmoid.
    init=True is ActNorm's data-dependent init: block k's log_scale_k, bias_k are set (in
    place) from the v reaching it.
    """
    W, A, a, ST, st0, log_scale, bias = params
    K, D, _ = W.shape
    H, N = A.shape[2], xt.shape[1]
    dl, dr = D // 2, D - D // 2
    new = xt.new_empty
    e = torch.exp(log_scale)  # (K, D)
    be = bias * e  # y = v * e + bias * e
    aA = _with_bias_row(a, A).transpose(1, 2)  # [a; A]^T (K, H, 1 + Dl)
    stST = _with_bias_row(_shifted_st0(st0, scale_shift), ST).transpose(1, 2)  # (K, 2 Dr, 1 + H)
    n = K if keep else 1
    XT, VT, SIG, STT = new(n + 1, D, N), new(n, 1 + D, N), new(n, dr, N), new(K, 2 * dr, N)
    h = _hidden_scratch(xt, H, N)  # [1; h] (1 + H, N)
    VT[:, 0].fill_(1.0)
    # Per-block views, made in bulk: at N = 128 a Python-level slice costs about as much as
    # the arithmetic of an element-wise op, so the loop body slices nothing.
    if keep:
        XT[0].copy_(xt)
        xs, outs = XT.unbind(0), XT[1:].unbind(0)
        vs, uls, urs = VT[:, 1:].unbind(0), VT[:, : 1 + dl].unbind(0), VT[:, 1 + dl :].unbind(0)
        sigs = SIG.unbind(0)
    else:  # block k reads its input before writing its output: one buffer suffices
        xs = [xt] + [XT[0]] * (K - 1)
        outs = [XT[0]] * (K - 1) + [XT[1]]
        vs, uls, urs = [VT[0, 1:]] * K, [VT[0, : 1 + dl]] * K, [VT[0, 1 + dl :]] * K
        sigs = [SIG[0]] * K
    Wt, aAs, stSTs = W.transpose(1, 2).unbind(0), aA.unbind(0), stST.unbind(0)
    e_c, be_c = e.unsqueeze(2).unbind(0), be.unsqueeze(2).unbind(0)  # (D, 1)
    STTs, ss, ts = STT.unbind(0), STT[:, :dr].unbind(0), STT[:, dr:].unbind(0)
    pre = h[1:]
    for k in range(K):
        v, u_r, sig = vs[k], urs[k], sigs[k]
        torch.mm(Wt[k], xs[k], out=v)  # u^T = W^T x^T (D, N)
        torch.mm(aAs[k], uls[k], out=pre)  # A^T u_l^T + a (H, N)
        F.leaky_relu(pre, slope, inplace=True)  # h
        torch.mm(stSTs[k], h, out=STTs[k])  # [s + c | t]^T = ST^T h^T + st0 (2 Dr, N)
        torch.sigmoid(ss[k], out=sig)
        torch.addcmul(ts[k], u_r, sig, out=u_r)  # v_r = u_r * sigmoid(s + c) + t
        if init:
            _actnorm_init(v, log_scale[k], bias[k], e[k], be[k])
        torch.addcmul(be_c[k], v, e_c[k], out=outs[k])  # y = v * e + bias * e
    ld = F.logsigmoid(STT[:, :dr]).sum((0, 1))  # (N,) data-dependent part of log|det|
    yt = XT[-1]
    return {"yt": yt, "ld": ld, "XT": XT, "VT": VT, "SIG": SIG, "STT": STT, "e": e, "aA": aA}


def _hidden_scratch(like: torch.Tensor, hidden: int, n: int) -> torch.Tensor:
    """[1; h] (1 + H, N): the hidden layer under a row of ones (its bias row's partner)."""
    h = like.new_empty(1 + hidden, n)
    h[0].fill_(1.0)
    return h


@torch.no_grad()
def _actnorm_init(
    vt: torch.Tensor, log_scale: torch.Tensor, bias: torch.Tensor, e: torch.Tensor, be: torch.Tensor
) -> None:
    """bias = -mean(v), log_scale = -0.5 log(var(v) + eps) per dimension (DESIGN.md); vt (D, N)."""
    var, mean = torch.var_mean(vt.to(bias.dtype), dim=1, correction=0)
    bias.copy_(-mean)
    log_scale.copy_(-0.5 * torch.log(var + ACTNORM_EPS))
    e.copy_(torch.exp(log_scale))
    be.copy_(bias * e)


class _RealNVPFunction(torch.autograd.Function):
    """(x, *params) -> (y, sum_k sum_j log_sigmoid(s_kj + c)) with the VJPs written by hand.

    The constant part of the log-determinant (log|det W_k|, sum log_scale_k) is added by
    `realnvp_forward` outside, so autograd differentiates it (batched slogdet).
    """

    @staticmethod
    def forward(ctx, x, slope, scale_shift, *params):
        r = _sweep(x.T, params, slope, scale_shift, keep=True)
        ctx.slope = slope
        saved = (r["XT"], r["VT"], r["SIG"], r["STT"], r["e"], r["aA"])
        ctx.save_for_backward(*saved, *params)
        return r["yt"].T, r["ld"]  # y (N, D): a view of the feature-major output

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, gld):
        """Reverse sweep; per block (y = v e + b e, v_r = u_r sig + t, sig = sigmoid(s + c)):

        dL/dv = dL/dy e;  dL/dt = dL/dv_r;  dL/du_r = dL/dv_r sig;  (u_l = v_l)
        dL/ds = (1 - sig) (dL/dt (v_r - t) + dL/dld)      [d log sig / ds = 1 - sig]
        dL/dh = dL/d[s|t] ST^T;  dL/dpre = dL/dh * (1 if h > 0 else slope);
        dL/du_l = dL/dv_l + dL/dpre A^T;  dL/dx = dL/du W^T;
        dL/d[st0; ST]_k = [1; h]^T dL/d[s|t],  dL/d[a; A]_k = [1; u_l]^T dL/dpre  (h recomputed),
        and after the sweep, batched: dL/dW_k = x_k^T dL/du_k,
        dL/dlog_scale_k = sum_n dL/dy * y,  dL/dbias_k = e sum_n dL/dy.
        """
        XT, VT, SIG, STT, e, aA, W, A, _a, ST, _st0, _ls, _b = ctx.saved_tensors
        K, D, N = XT.shape[0] - 1, XT.shape[1], XT.shape[2]
        H = A.shape[2]
        dl, dr = D // 2, D - D // 2
        new = XT.new_empty
        GYT = new(K, D, N)  # dL/dy_k^T, y_k = output of block k
        if gy is None:
            GYT[K - 1].zero_()
        else:
            GYT[K - 1].copy_(gy.T)
        gld = XT.new_zeros(1, N) if gld is None else gld.reshape(1, N)
        GUT = new(K, D, N)
        g_st, gpre = new(2 * dr, N), new(H, N)  # per-block scratch
        g_s, g_t = g_st[:dr], g_st[dr:]
        h = _hidden_scratch(XT, H, N)
        g_stST, g_aA = new(K, 1 + H, 2 * dr), new(K, 1 + dl, H)  # [st0; ST], [a; A] grads
        gyls, gyrs = GYT[:, :dl].unbind(0), GYT[:, dl:].unbind(0)
        gys, gus, guls, gurs = (
            GYT.unbind(0),
            GUT.unbind(0),
            GUT[:, :dl].unbind(0),
            GUT[:, dl:].unbind(0),
        )
        # dL/ds = dL/dt (v_r - t)(1 - sig) + dL/dld (1 - sig): both factors from the forward,
        # for all blocks at once (v_r - t = u_r sig)
        oms = 1.0 - SIG  # (K, Dr, N)
        P1 = (VT[:, 1 + dl :] - STT[:, dr:]).mul_(oms).unbind(0)
        P2 = oms.mul_(gld).unbind(0)
        sigs = SIG.unbind(0)
        uls = VT[:, : 1 + dl].unbind(0)
        e_l, e_r = e[:, :dl, None].unbind(0), e[:, dl:, None].unbind(0)
        Ws, As, STs, aAs = W.unbind(0), A.unbind(0), ST.unbind(0), aA.unbind(0)
        g_stSTs, g_aAs = g_stST.unbind(0), g_aA.unbind(0)
        need = ctx.needs_input_grad[3:]
        need_st, need_aA = need[3] or need[4], need[1] or need[2]
        pre = h[1:]
        gx = None
        for k in reversed(range(K)):
            sig, gu_l = sigs[k], guls[k]
            torch.mul(gyls[k], e_l[k], out=gu_l)  # dL/dv_l (the direct part of dL/du_l)
            torch.mul(gyrs[k], e_r[k], out=g_t)  # dL/dv_r = dL/dt
            torch.mul(g_t, sig, out=gurs[k])  # dL/du_r
            torch.addcmul(P2[k], g_t, P1[k], out=g_s)  # dL/ds
            torch.mm(aAs[k], uls[k], out=pre)  # recompute h = leaky_relu(A^T u_l + a)
            F.leaky_relu(pre, ctx.slope, inplace=True)
            if need_st:
                torch.mm(h, g_st.T, out=g_stSTs[k])  # [1; h] dL/d[s|t]^T  (1 + H, 2 Dr)
            torch.mm(STs[k], g_st, out=gpre)  # dL/dh^T = ST dL/d[s|t]^T  (H, N)
            _leaky_relu_backward_(gpre, pre, ctx.slope)  # dL/dpre^T
            if need_aA:
                torch.mm(uls[k], gpre.T, out=g_aAs[k])  # [1; u_l] dL/dpre  (1 + Dl, H)
            torch.addmm(gu_l, As[k], gpre, out=gu_l)  # dL/du_l += A dL/dpre^T
            if k > 0:
                torch.mm(Ws[k], gus[k], out=gys[k - 1])  # dL/dx^T = W dL/du^T
            elif ctx.needs_input_grad[0]:
                gx = torch.mm(Ws[0], gus[0]).T
        grads = [
            torch.bmm(XT[:-1], GUT.transpose(1, 2)) if need[0] else None,  # dL/dW
            g_aA[:, 1:] if need[1] else None,  # dL/dA
            g_aA[:, 0] if need[2] else None,  # dL/da
            g_stST[:, 1:] if need[3] else None,  # dL/dST
            g_stST[:, 0] if need[4] else None,  # dL/dst0
            (GYT * XT[1:]).sum(2) if need[5] else None,  # dL/dlog_scale = sum_n dL/dy * y
            GYT.sum(2) * e if need[6] else None,  # dL/dbias = e * sum_n dL/dy
        ]
        return gx, None, None, *grads


def _leaky_relu_backward_(g: torch.Tensor, h: torch.Tensor, slope: float) -> None:
    """g *= 1 where h > 0 else slope, in place (h = leaky_relu(pre), same sign as pre)."""
    torch.ops.aten.leaky_relu_backward.grad_input(g, h, slope, True, grad_input=g)


def logdet_constant(W: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """sum_k log|det W_k| + sum_kj log_scale_kj: one batched slogdet, differentiable.

    Half-precision W is factorised in float32 (torch has no bf16/fp16 slogdet).
    """
    wide = W.float() if W.dtype in (torch.bfloat16, torch.float16) else W
    return torch.linalg.slogdet(wide)[1].sum().to(W.dtype) + log_scale.sum()


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
    """Real NVP forward over K stacked blocks (Appendix B.2; Eq. 4 and Eq. B.1 use it).

    x (N, D); W (K, D, D), A (K, Dl, H), a (K, H), ST (K, H, 2 Dr) = [S | T],
    st0 (K, 2 Dr) = [s0 | t0], log_scale / bias (K, D). Block 0 is applied first. Returns
    y (N, D) and logabsdet (N,) = sum_k [log|det W_k| + sum_j log_sigmoid(s_kj + scale_shift)
    + sum_j log_scale_kj]. Differentiable in x and every parameter (hand-written VJPs).
    """
    params = (W, A, a, ST, st0, log_scale, bias)
    check_params(x, params)
    if W.shape[0] == 0:
        return x, x.new_zeros(x.shape[0])
    train = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))
    rows = _rows_per_chunk(x, W.shape[0], A.shape[2], train)
    ys, lds = [], []
    for xc in x.split(rows) if rows < x.shape[0] else (x,):
        if train:
            y, ld = _RealNVPFunction.apply(xc, slope, scale_shift, *params)
        else:  # inference: one scratch buffer per activation, nothing kept
            r = _sweep(xc.T, params, slope, scale_shift, keep=False)
            y, ld = r["yt"].T, r["ld"]
        ys.append(y)
        lds.append(ld)
    y, ld = (ys[0], lds[0]) if len(ys) == 1 else (torch.cat(ys), torch.cat(lds))
    return y, ld + logdet_constant(W, log_scale)


# Row chunks on the CPU. glibc serves allocations above its mmap threshold (at most 32 MiB)
# with fresh mmap'd pages, which the kernel faults in and zeroes on every call: unchunked,
# K = 20 and N = 8192 cost 1e5 page faults and 0.2 s of system time per forward + backward.
# Rows per chunk are also kept few enough that the hidden layer [1; h] (1 + H, rows) and its
# gradient stay in a core's L2 cache while a block's matmuls read and write them.
_CPU_BUFFER_BYTES = 16 << 20  # largest stacked buffer, (K, 1 + D, rows)
_CPU_HIDDEN_BYTES = 1 << 20  # the (1 + H, rows) scratch


def _rows_per_chunk(x: torch.Tensor, depth: int, hidden: int, train: bool) -> int:
    """Rows per sweep: all of them on GPUs; on the CPU, bounded buffers (see above)."""
    if x.device.type != "cpu":
        return x.shape[0]
    size = x.element_size()
    stacked = _CPU_BUFFER_BYTES // ((depth + 1) * (x.shape[1] + 1) * size)
    return max(64, min(stacked, _CPU_HIDDEN_BYTES // ((hidden + 1) * size)))


@torch.no_grad()
def initialize_actnorm(
    rows: torch.Tensor, params: Params, *, slope: float, scale_shift: float
) -> None:
    """ActNorm's data-dependent init of every block in turn (DESIGN.md), in place: block k's
    bias and log_scale make the data reaching it, rows (N, D), zero-mean and unit-variance."""
    _sweep(rows.T, params, slope, scale_shift, keep=False, init=True)


__all__ = [
    "PARAM_NAMES",
    "Params",
    "check_params",
    "initialize_actnorm",
    "logdet_constant",
    "param_shapes",
    "realnvp_forward",
]
