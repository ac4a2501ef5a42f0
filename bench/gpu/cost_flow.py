"""Roofline model of the fused Real NVP kernels (`fast/kernels/flow.py`), counted per launch.

`MODELS[kernel](launch) -> FlowKernelCost` reads the captured `aot.Launch` (constexprs D, H,
BLOCK_N, BLOCK_D, BLOCK_H, PREC, DETERMINISTIC; scalars N, K, store_acts, n_tiles; the grid;
tensor shapes and dtypes) and walks the kernel's own loop nest

    forward:   row tile (BLOCK_N rows) x block k (K) x hidden chunk (H / BLOCK_H)
    backward:  row tile x block k (K - 1 .. 0) x hidden chunk, twice (net forward, net backward)

so a change of tiling, grid or dtype in the launchers changes the numbers. Conventions are the
framework's (`cost_model.py`) and those of `cost_iw_nll.py`; what this family adds:

- flops: dot FLOPs as issued, 2 per multiply-add, on the padded tiles: a row is held as two
  halves [x_l | x_r] of BLOCK_D columns each (D = 40: 20 -> 32, D = 64: 32 -> 32), the last
  row tile's padding rows included. Per row and block the forward issues
      dense [x_l | x_r] W: 2 (2 BLOCK_D)^2,  net: 2 BLOCK_D H (u_l A) + 2 H (2 BLOCK_D) (h [S|T]).
  useful_flops (forward): 2 N K (D^2 + Dl H + 2 Dr H), the unpadded products.
  useful_flops (backward): 3 x the forward's. The op's inputs are x (the saved block inputs) and
  dL/dy, not the hidden activations, so the backward must recompute each block's forward
  products once (u, pre = u_l A, [s|t] = h [S|T]: counted once as useful) and then issue two
  products per forward product (input gradient and weight gradient). The kernel issues one
  more: pre = u_l A is recomputed in the net-backward pass (h is not held over H), i.e. 4 A
  products instead of 3: flops / useful = 1.095 at D = 64 (BLOCK_D = Dl, no padding).
  Element-wise and transcendental work (leaky_relu, sigmoid, exp, log1p) is not counted, in
  the kernels nor in eager (< 2 % of the dot FLOPs per row and block at H = 256).
- precision: that of the kernel's dots (TF32 when torch allows it for fp32, bf16 operands for
  bf16 inputs with fp32 accumulation, fp64 DMMA, else IEEE fp32 FMAs); eager's GEMMs the same.
- bytes (HBM): x, dL/dy, dL/dlogdet read once; y, logdet, dL/dx written once; the parameters
  read once per launch (every program re-reads all K blocks' weights, < 25 MB: `l2_once`); the
  block inputs (K, N, D) written by the training forward and read once by the backward (each
  tile is re-read after the net for dW: an L1/L2 hit of the same 8-16 KB tile, counted once).
  min_bytes: the op's inputs once and outputs once, without the saved block inputs: the
  training configurations exceed the 1.25 x target by the (K, N, D) store and its re-read,
  the price of exact gradients (see the kernel module: inverting the blocks instead loses
  2e-2 of dA at K = 50 in fp32).
- atomics (backward, default): every row tile adds its contribution to all NP = D^2 + Dl H + H
  + 2 Dr H + 2 Dr + 2 D weight-gradient values of every block: atomic_bytes = n_tiles K NP x 4
  (fp32; fp64 for fp64) of relaxed reductions (red.global.add, v4 where aligned) executed in
  L2. They do not reach HBM: the target buffer (K NP values, 1.4-11.6 MB) is L2-resident; its
  HBM traffic is torch's zero-fill and the write-back of the sums. Not in the
  roofline (the framework has no L2 bandwidth): reported beside it, as `atomic_bytes` and in
  `what` as the time they take at an *assumed* L2 reduction rate `L2_RED_BYTES_PER_S` (not a
  datasheet number; measure before trusting it).
- deterministic backward (`torch.use_deterministic_algorithms(True)`): P programs each own a
  partial slice (K NP values), read-modify-written per row tile: counted in HBM on every read
  and write when the P slices together exceed `cost_model.L2_REUSE_LIMIT`, plus torch's
  zero-fill and fixed-order sum.
- l2_bytes: loads served from L2 (each program reads every block's weights once per row tile,
  and the re-read block-input tile), stores, plus the atomics; reported, not in the roofline.
- launcher ops counted in the launch's bytes: the zero-filled gradient buffer, its casts to the
  parameters' dtype (bf16), the deterministic sum. Not counted (tiny, both fused and eager
  have them): slogdet(W) and log_scale.sum() for the constant part of the log-determinant.
- eager: the textbook eager formula of one block, kernel by kernel (x @ W, addmm + LeakyReLU,
  addmm for [s|t], sigmoid, mul, add, cat, ActNorm, logsigmoid, sum) and autograd's kernels
  for the backward, written out in `_eager_forward` / `_eager_backward`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaeprior.bench.gpu import cost_model as cm

#: assumed throughput of L2 float reductions (bytes of payload per second) on an H100 SXM:
#: about half of the ~5.5 TB/s L2 load bandwidth measured on an H100 PCIe. An assumption for
#: the report column only; the roofline (predicted_us) does not use it.
L2_RED_BYTES_PER_S = 2.5e12


@dataclass
class FlowKernelCost(cm.KernelCost):
    """`KernelCost` plus the L2 side (loads served from L2, atomics' payload) and a note."""

    l2_bytes: float = 0.0
    atomic_bytes: float = 0.0
    what: str = ""

    @property
    def atomic_us(self) -> float:
        """Time of the atomics at the assumed L2 reduction rate (not in predicted_us)."""
        return 1e6 * self.atomic_bytes / L2_RED_BYTES_PER_S

    def row(self) -> dict:
        return super().row() | {
            "l2_bytes": self.l2_bytes,
            "atomic_bytes": self.atomic_bytes,
            "atomic_us_assumed": self.atomic_us,
            "what": self.what,
        }


def n_params(D: int, H: int) -> int:
    """Parameters of one block: W, A, a, ST = [S | T], st0, log_scale, bias."""
    Dl, Dr = D // 2, D - D // 2
    return D * D + Dl * H + H + 2 * Dr * H + 2 * Dr + 2 * D


def param_bytes(K: int, D: int, H: int, dot: int, vec: int) -> int:
    """Bytes of the K blocks' parameters: W, A, ST in the dot dtype, vectors in the compute's."""
    Dl, Dr = D // 2, D - D // 2
    return K * ((D * D + Dl * H + 2 * Dr * H) * dot + (H + 2 * Dr + 2 * D) * vec)


def useful_forward_flops(N: int, K: int, D: int, H: int) -> float:
    """2 N K (D^2 + Dl H + 2 Dr H): x W, u_l A, h [S | T] unpadded."""
    Dl, Dr = D // 2, D - D // 2
    return 2.0 * N * K * (D * D + Dl * H + 2 * Dr * H)


# --------------------------------------------------------------------------------------------
# eager PyTorch, kernel by kernel (the textbook per-block formula and its autograd)
# --------------------------------------------------------------------------------------------
def _eager_forward(N: int, K: int, D: int, H: int, dt: torch.dtype, prec: str) -> list[cm.Cost]:
    """Per block: u = x @ W (gemm); h = leaky_relu(addmm(a, u_l, A)); [s|t] = addmm(st0, h, ST);
    z = s + c; sig = sigmoid(z); u_r * sig; + t; cat; + bias; (exp(ls): D elements, omitted);
    * exp; logsigmoid(z); .sum(1); ld + ld_k (from the second block on)."""
    Dl, Dr = D // 2, D - D // 2
    ew = cm.elementwise
    block = [
        cm.gemm(N, D, D, dt, prec),  # u = x @ W_k
        cm.gemm(N, H, Dl, dt, prec, bias=True),  # addmm(a, u_l, A): u_l a strided view
        ew(N * H, 1, 1, dt),  # leaky_relu
        cm.gemm(N, 2 * Dr, H, dt, prec, bias=True),  # addmm(st0, h, ST)
        ew(N * Dr, 1, 1, dt),  # z = s + scale_shift
        ew(N * Dr, 1, 1, dt),  # sigmoid(z)
        ew(N * Dr, 2, 1, dt),  # u_r * sig
        ew(N * Dr, 2, 1, dt),  # + t
        cm.copy(N * D, dt),  # cat([u_l, y_r])
        ew(N * D, 1, 1, dt),  # + bias
        ew(N * D, 1, 1, dt),  # * exp(log_scale)
        ew(N * Dr, 1, 1, dt),  # logsigmoid(z)
        cm.reduction(N * Dr, N, dt),  # .sum(1)
    ]
    return block * K + [ew(N, 2, 1, dt)] * (K - 1)


def _eager_backward(N: int, K: int, D: int, H: int, dt: torch.dtype, prec: str) -> list[cm.Cost]:
    """Autograd of `_eager_forward`, per block in reverse (views and pass-through nodes launch
    nothing: SumBackward's expand, AddBackward, CatBackward's narrow, the split views):

    LogSigmoidBackward (reads z and the expanded dL/dld); MulBackward of * exp(ls): dL/dv = g e
    and g * (v + bias) then its sum over rows (dL/dls); AddBackward of + bias: sum over rows;
    MulBackward of u_r * sig: g sig and g u_r; SigmoidBackward; the add of the two dL/dz;
    SplitBackward of [s|t]: cat; AddmmBackward: dL/dh = g_st ST^T, dL/dST = h^T g_st, sum
    (dL/dst0); LeakyReluBackward (reads the saved input); AddmmBackward: dL/du_l = g A^T,
    dL/dA = u_l^T g, sum (dL/da); the add of u_l's two gradients; SplitBackward of u: cat;
    MmBackward: dL/dx = g_u W^T, dL/dW = x^T g_u. Once at the end: UnbindBackward stacks each
    parameter's K gradients (one copy of K NP values)."""
    Dl, Dr = D // 2, D - D // 2
    ew = cm.elementwise
    b = cm.itemsize(dt)
    block = [
        cm.Cost(b * (2 * N * Dr + N), float(N * Dr), "fp32", "logsigmoid backward"),
        ew(N * D, 1, 1, dt),  # g * e
        ew(N * D, 2, 1, dt),  # g * (v + bias)
        cm.reduction(N * D, D, dt),  # sum -> dL/d exp(ls)
        cm.reduction(N * D, D, dt),  # dL/dbias
        ew(N * Dr, 2, 1, dt),  # g_yr * sig
        ew(N * Dr, 2, 1, dt),  # g_yr * u_r
        ew(N * Dr, 2, 1, dt),  # sigmoid backward
        ew(N * Dr, 2, 1, dt),  # dL/dz from logsigmoid + from sigmoid
        cm.copy(N * 2 * Dr, dt),  # SplitBackward: cat([g_s, g_t])
        cm.gemm(N, H, 2 * Dr, dt, prec),  # dL/dh = g_st ST^T
        cm.gemm(H, 2 * Dr, N, dt, prec),  # dL/dST = h^T g_st
        cm.reduction(N * 2 * Dr, 2 * Dr, dt),  # dL/dst0
        ew(N * H, 2, 1, dt),  # leaky_relu backward
        cm.gemm(N, Dl, H, dt, prec),  # dL/du_l = g_pre A^T
        cm.gemm(Dl, H, N, dt, prec),  # dL/dA = u_l^T g_pre
        cm.reduction(N * H, H, dt),  # dL/da
        ew(N * Dl, 2, 1, dt),  # u_l: gradient through cat + through the net
        cm.copy(N * D, dt),  # SplitBackward: cat([g_ul, g_ur])
        cm.gemm(N, D, D, dt, prec),  # dL/dx = g_u W^T
        cm.gemm(D, D, N, dt, prec),  # dL/dW = x^T g_u
    ]
    return block * K + [cm.copy(K * n_params(D, H), dt)]


# --------------------------------------------------------------------------------------------
# the kernels
# --------------------------------------------------------------------------------------------
class _L(cm.LaunchView):
    """The launch's numbers by name, with this family's shorthands."""

    def __init__(self, launch) -> None:
        super().__init__(launch)
        self.D, self.H = int(self.c["D"]), int(self.c["H"])
        self.K = int(self.t["W"].shape[0])
        self.bn, self.bd, self.bh = (int(self.c[k]) for k in ("BLOCK_N", "BLOCK_D", "BLOCK_H"))

    def prec(self) -> str:
        return cm.precision(self.t["W"].dtype, str(self.c["PREC"]))

    def config(self) -> str:
        keys = ("BLOCK_N", "BLOCK_D", "BLOCK_H", "DETERMINISTIC")
        parts = [f"{k}={self.c[k]}" for k in keys if k in self.c]
        return " ".join([*parts, f"grid={self.grid}", str(self.t["W"].dtype).split(".")[-1]])

    def forward_flops_per_row_block(self) -> float:
        """Issued dot FLOPs of one row through one block's forward (padded tiles)."""
        bd2 = 2 * self.bd
        return 2.0 * (bd2 * bd2 + self.bd * self.H + self.H * bd2)


def forward(launch) -> FlowKernelCost:
    """`_realnvp_fwd_kernel`: one row tile per program, all K blocks, H streamed in chunks."""
    L = _L(launch)
    N, K, D, H = int(L.s["N"]), L.K, L.D, L.H
    store = bool(L.s["store_acts"])
    n_prog = L.grid[0]
    ix, ic, idot = L.isz("X"), L.isz("LD"), L.isz("W")
    p_bytes = param_bytes(K, D, H, idot, ic)
    io = 2 * N * D * ix + N * ic  # x in, y and logdet out
    acts = K * N * D * idot if store else 0
    hbm = io + cm.l2_once(p_bytes, n_prog) + acts
    flops = n_prog * L.bn * K * L.forward_flops_per_row_block()
    l2 = io + n_prog * p_bytes + acts
    dt = L.t["X"].dtype
    return FlowKernelCost(
        launch.kernel, L.config(), hbm, io + p_bytes, flops, useful_forward_flops(N, K, D, H),
        L.prec(), _eager_forward(N, K, D, H, dt, L.prec()), l2_bytes=l2,
        what=f"{'training: block inputs stored' if store else 'inference'}; weights through "
        f"L2 {n_prog * p_bytes / 1e9:.2f} GB",
    )  # fmt: skip


def backward(launch) -> FlowKernelCost:
    """`_realnvp_bwd_kernel`: row tiles (one per program, or grid-strided over P programs when
    deterministic), blocks in reverse, the net streamed twice per block."""
    L = _L(launch)
    K, D, H, bn, bd = L.K, L.D, L.H, L.bn, L.bd
    N, n_tiles = int(L.t["GY"].shape[0]), int(L.s["n_tiles"])
    P = int(L.t["G"].shape[0])
    det = bool(L.c["DETERMINISTIC"])
    iy, igl, ixo = L.isz("GY"), L.isz("GLD"), L.isz("GX")
    ic, idot, iact = L.isz("G"), L.isz("W"), L.isz("ACTS")
    p_bytes = param_bytes(K, D, H, idot, ic)
    np_bytes = K * n_params(D, H) * ic  # one gradient buffer (slice), compute dtype
    x_dtype = L.t["GX"].dtype
    # gradients cast to the parameters' dtype after the launch (bf16 parameters)
    cast = 0 if idot == ic else (K * n_params(D, H)) * (ic + idot)
    io = N * D * iy + N * igl + N * D * ixo
    acts = K * N * D * iact
    if det:  # P slices: zero-fill, read-modify-write per row tile, fixed-order sum by torch
        slices = P * np_bytes
        rmw = 2 * slices if slices <= cm.L2_REUSE_LIMIT else 2 * n_tiles * np_bytes
        grads = slices + rmw + slices + np_bytes + cast
        atomics = 0.0
    else:  # one L2-resident buffer: torch's zero-fill (still in L2 when the atomics touch it)
        grads = 2 * np_bytes + cast  # and the final write-back

        atomics = float(n_tiles * np_bytes)
    hbm = io + acts + cm.l2_once(p_bytes, n_tiles) + grads
    per_row_block = 2.0 * (3 * (2 * bd) ** 2 + 10 * bd * H)  # see the module docstring
    flops = n_tiles * bn * K * per_row_block
    useful = 3 * useful_forward_flops(N, K, D, H)
    min_bytes = io + N * D * iy + 2 * p_bytes  # + the op's input x; parameters and gradients
    l2 = io + 2 * acts + 2 * n_tiles * p_bytes + atomics
    mode = "deterministic partial slices" if det else "atomics"
    what = (
        f"{mode}; atomics {atomics / 1e9:.2f} GB in L2 ({1e6 * atomics / L2_RED_BYTES_PER_S:.0f} "
        f"us at an assumed {L2_RED_BYTES_PER_S / 1e12:.1f} TB/s); weights through L2 "
        f"{2 * n_tiles * p_bytes / 1e9:.2f} GB"
    )
    return FlowKernelCost(
        launch.kernel, L.config(), hbm, min_bytes, flops, useful, L.prec(),
        _eager_backward(N, K, D, H, x_dtype, L.prec()), l2_bytes=l2, atomic_bytes=atomics,
        what=what,
    )  # fmt: skip


MODELS = {"_realnvp_fwd_kernel": forward, "_realnvp_bwd_kernel": backward}

__all__ = ["MODELS", "FlowKernelCost", "n_params", "param_bytes", "useful_forward_flops"]
