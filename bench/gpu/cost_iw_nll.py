"""Roofline model of the IW-NLL kernels (`fast/kernels/iw_nll.py`), counted from each launch.

`MODELS[kernel](launch) -> IwKernelCost` reads the captured `aot.Launch` (constexprs, grid,
scalar arguments, tensor shapes and dtypes) and walks the kernel's own loop nest:

    row tile (BLOCK_M rows) x pixel tile (784 = D_MAIN main tiles of BLOCK_D + one BLOCK_D_TAIL
    tile) x hidden chunk (HID padded to a multiple of BLOCK_K)

so a change of tiling, grid or dtype in the launchers changes the numbers. Conventions (the
framework's, `cost_model.py`, plus what this family adds):

- flops: the matmul FLOPs as issued (2 per multiply-add, K padded to BLOCK_K, masked rows of the
  last row tile included); useful_flops: 2 M 784 HID per product the op needs. The backward
  recomputes the logits (nothing of size M x 784 is stored), which the op cannot avoid given
  its inputs (h, W, b, x, dL/dll): useful = 3 products. Element-wise and transcendental work
  (softplus, sigmoid, exp) is not in the FLOP columns, in the kernels nor in eager.
- bytes (HBM): each input once, each output once, except: a set that the programs of one wave
  re-read (h tiles across the pixel tiles, W across the row tiles, x) counts once when the
  wave's share fits `cost_model.l2_once` (half the L2), else once per re-read; a grid-strided
  (persistent) launch's wave is its grid, a one-tile-per-program launch's wave is the whole
  tensor. *Different rule from the framework:* the backward's dh accumulator rows, which each
  program read-modify-writes once per pixel tile, count as such a re-read set (with the h tiles
  in the same budget: both must fit together), not "on every write and read": they are owned
  by one program, rewritten within one row tile's work and never leave L2 when the budget holds.
  Partial sums that outlive a row tile (dW per program, split-kernel slices) are counted on
  every write and read, as the framework says.
- atomics: `atomic_bytes` is the payload of the float atomic adds (dW, db of the large-M
  backward; dh of the small-M one), each a read-modify-write executed in L2. They do not reach
  HBM while their target buffer is L2-resident (dW: 784 x 500 x 4 = 1.6 MB); the buffer's own
  HBM traffic is counted once (torch zero-fills it, the kernel's result is written back).
- l2_bytes: the loads the kernel serves from L2 (every tile load, first touch included) plus
  the atomics: not in the roofline (the framework has no L2 bandwidth), reported so the L2
  pressure of a tiling is visible (W re-read once per row tile: the 32-row tiles of the old
  design moved 6.3 GB of W through L2 per S = 1000, B = 128 evaluation).
- launcher ops: the torch ops a launcher adds for its kernel alone count in the launch's bytes
  (zero-filled atomic targets, sums of per-program partials, casts of float32 accumulators to
  the input dtype, the combine of the IW-NLL partials).
- eager: the same op as PyTorch runs it, one roofline per kernel: the training head of
  `VAE.log_px_z` (linear or 1x1 conv, x * l, softplus, sub, sum) and its autograd kernels, or
  `iw_nll_torch` (linear or conv, x.repeat, BCE-with-logits, sum, neg, cat, + log p(z),
  - log q(z|x), logsumexp) for the IW-NLL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaeprior.bench.gpu import cost_model as cm

NPIX = 784


@dataclass
class IwKernelCost(cm.KernelCost):
    """`KernelCost` plus the L2 side: bytes the kernel loads from L2, atomics' payload."""

    l2_bytes: float = 0.0
    atomic_bytes: float = 0.0

    def row(self) -> dict:
        return super().row() | {"l2_bytes": self.l2_bytes, "atomic_bytes": self.atomic_bytes}


class _L(cm.LaunchView):
    """The launch's numbers by name, with this family's shorthands."""

    def n_dtiles(self) -> int:
        return NPIX // self.c["BLOCK_D"] + (self.c["BLOCK_D_TAIL"] > 0)

    def k_pad(self) -> int:
        return cm.cdiv(self.c["HID"], self.c["BLOCK_K"]) * self.c["BLOCK_K"]

    def prec(self) -> str:
        """Precision of the kernel's products: its tl.dot's, or CUDA-core FMAs (conv heads)."""
        dt = self.t["Hp"].dtype
        if self.c.get("IS_CONV", "C_PAD" in self.c):
            return "fp64" if dt == torch.float64 else "fp32"
        return cm.precision(dt, str(self.c.get("PRECISION", "ieee")))

    def eager_prec(self) -> str:
        """Precision of eager's GEMM / cuDNN call on the same inputs."""
        dt = self.t["Hp"].dtype
        return cm.precision(dt, str(self.c.get("PRECISION", "ieee")))

    def config(self) -> str:
        keys = ("BLOCK_M", "BLOCK_S", "BLOCK_B", "BLOCK_D", "BLOCK_D_TAIL", "BLOCK_K", "SPLIT")
        parts = [f"{k}={self.c[k]}" for k in keys if k in self.c]
        return " ".join([*parts, f"grid={self.grid}", str(self.t["Hp"].dtype).split(".")[-1]])


def iw_nll_useful_flops(S: int, B: int, hid: int) -> float:
    """FLOPs the IW-NLL needs: the head's products, 2 S B 784 hid (hid = channels for conv)."""
    return 2.0 * S * B * NPIX * hid


def iw_nll_min_bytes(
    S: int, B: int, hid: int, conv: bool, dtype: torch.dtype, lp_dtype: torch.dtype
) -> float:
    """Minimum HBM bytes of the IW-NLL: h, W (dense: input dtype; conv: float32/64), b, x,
    log p(z), log q(z|x) read once, the per-x NLL written once (the model's `min_bytes`)."""
    isz, acc = cm.itemsize(dtype), 8 if dtype == torch.float64 else 4
    state = max(acc, cm.itemsize(lp_dtype))
    head = (
        (S * B * hid * NPIX * isz + (hid + 1) * acc)
        if conv
        else (S * B * hid * isz + NPIX * hid * isz + NPIX * acc)
    )
    return float(head + B * NPIX * isz + 2 * S * B * cm.itemsize(lp_dtype) + B * state)


def _reread(total: float, wave_set: float, readers: int) -> float:
    """HBM bytes of a tensor of `total` bytes whose per-wave share `wave_set` is re-read by
    `readers` tiles: once if the wave's share fits in L2 (`cm.l2_once`), else per reader."""
    if wave_set <= 0:
        return total
    return total * cm.l2_once(wave_set, readers) / wave_set


# --------------------------------------------------------------------------------------------
# eager PyTorch, kernel by kernel
# --------------------------------------------------------------------------------------------
def _eager_head(M: int, B: int, hid: int, conv: bool, dt: torch.dtype, prec: str) -> cm.Cost:
    """The output layer: addmm (dense) or cuDNN's 1x1 conv (reads h once, writes the logits)."""
    if not conv:
        return cm.gemm(M, NPIX, hid, dt, prec, bias=True)
    b = cm.itemsize(dt)
    return cm.Cost(b * (M * hid * NPIX + hid + 1 + M * NPIX), 2.0 * M * hid * NPIX, prec, "conv")


def _bcast(M: int, B: int, dt: torch.dtype, what: str) -> cm.Cost:
    """An (M, 784) element-wise kernel whose other operand broadcasts (x (B, 784) or an
    expanded (M, 1) gradient): reads the small operand once, writes (M, 784)."""
    b = cm.itemsize(dt)
    return cm.Cost(b * (M * NPIX + B * NPIX), float(M * NPIX), "fp32", what)


def _eager_loglik_fwd(M, B, hid, conv, dt, prec) -> list[cm.Cost]:
    """`bernoulli_log_prob(x, decoder.logits(h))`: head, x * l, softplus, sub, sum."""
    n = M * NPIX
    return [
        _eager_head(M, B, hid, conv, dt, prec),
        cm.Cost(cm.itemsize(dt) * (2 * n + B * NPIX), float(n), "fp32", "mul x*l"),
        cm.elementwise(n, 1, 1, dt),  # softplus
        cm.elementwise(n, 2, 1, dt),  # x*l - softplus(l)
        cm.reduction(n, M, dt),  # sum over pixels
    ]


def _eager_loglik_bwd(M, B, hid, conv, dt, prec) -> list[cm.Cost]:
    """Autograd of the forward above: SumBackward is an expand (no kernel); SubBackward's
    -grad, SoftplusBackward (reads the saved logits), MulBackward (grad * x), the add of the
    two logits gradients, then the head's backward (two GEMMs + bias sum, or cuDNN's
    backward-data and backward-weight + bias sum)."""
    n, b = M * NPIX, cm.itemsize(dt)
    out = [
        _bcast(M, 0, dt, "neg -grad"),
        cm.elementwise(n, 2, 1, dt),  # softplus backward: grad * sigmoid(l)
        _bcast(M, B, dt, "mul grad*x"),
        cm.elementwise(n, 2, 1, dt),  # accumulate the two logits gradients
    ]
    if conv:
        hc = M * hid * NPIX
        out += [
            cm.Cost(b * (n + hid + hc), 2.0 * hc, prec, "conv backward data"),
            cm.Cost(b * (n + hc + hid), 2.0 * hc, prec, "conv backward weight"),
            cm.reduction(n, 1, dt),
        ]
    else:
        out += [
            cm.gemm(M, hid, NPIX, dt, prec),  # dh = dl W
            cm.gemm(NPIX, hid, M, dt, prec),  # dW = dl^T h
            cm.reduction(n, NPIX, dt),  # db
        ]
    return out


def _eager_iw(S, B, hid, conv, dt, prec, lp_dt) -> list[cm.Cost]:
    """`iw_nll_torch` (64-sample chunks; per-chunk kernels summed as one per kind)."""
    M, n = S * B, S * B * NPIX
    b = cm.itemsize(dt)
    return [
        _eager_head(M, B, hid, conv, dt, prec),
        cm.Cost(b * (n + B * NPIX), 0.0, "fp32", "x.repeat"),
        cm.elementwise(n, 2, 1, dt, 4.0),  # BCE with logits, reduction="none"
        cm.reduction(n, M, dt),  # .sum(1)
        cm.elementwise(M, 1, 1, dt),  # neg
        cm.copy(M, dt),  # torch.cat of the chunks
        cm.elementwise(M, 2, 1, lp_dt),  # + log p(z)
        cm.elementwise(M, 2, 1, lp_dt),  # - log q(z|x)
        cm.reduction(M, B, lp_dt),  # logsumexp: max pass
        cm.reduction(M, B, lp_dt),  # logsumexp: sum exp pass
        cm.elementwise(B, 1, 1, lp_dt),  # - log S, neg
    ]


# --------------------------------------------------------------------------------------------
# the kernels
# --------------------------------------------------------------------------------------------
def _head_common(L: _L, M: int, bm: int, wave_rows: int, n_row_tiles: int):
    """(flops, useful, hbm bytes of h/W/b/x, min bytes of those, l2 bytes) of the logits of
    `M` rows in `n_row_tiles` tiles of `bm` rows (padding included in the issued FLOPs),
    `wave_rows` of them live in one wave, computed one pixel tile at a time."""
    rows_issued = n_row_tiles * bm
    conv = bool(L.c["IS_CONV"])
    ih, ia, ix = L.isz("Hp"), L.isz("Bp"), L.isz("Xp")
    B = L.s["B"]
    x_bytes = B * NPIX * ix
    if conv:
        C = L.s["C"]
        h_bytes = M * C * NPIX * ih
        flops = 2.0 * rows_issued * C * NPIX
        useful = 2.0 * M * C * NPIX
        w_bytes = (C + 1) * ia
        hbm = h_bytes + w_bytes + x_bytes
        l2 = h_bytes + rows_issued * NPIX * ix
        return flops, useful, hbm, hbm, l2
    hid = L.c["HID"]
    nd = L.n_dtiles()
    h_bytes = M * hid * ih
    w_bytes = NPIX * hid * L.isz("Wp") + NPIX * ia
    flops = 2.0 * rows_issued * NPIX * L.k_pad()
    useful = 2.0 * M * NPIX * hid
    h_hbm = _reread(h_bytes, wave_rows * hid * ih, nd)
    hbm = h_hbm + cm.l2_once(w_bytes, n_row_tiles) + cm.l2_once(x_bytes, n_row_tiles)
    l2 = nd * h_bytes + n_row_tiles * w_bytes + rows_issued * NPIX * ix
    return flops, useful, hbm, h_bytes + w_bytes + x_bytes, l2


def loglik_fwd(launch) -> IwKernelCost:
    """`_loglik_fwd_kernel`: row tiles (grid-strided, or (row tile, pixel tile) when SPLIT)."""
    L = _L(launch)
    c, M, B = L.c, L.s["M"], L.s["B"]
    conv, ia = bool(c["IS_CONV"]), L.isz("Bp")
    n_tiles = L.s["n_tiles"]
    if conv:  # one row tile per program
        wave_rows = M
    elif c["SPLIT"]:  # all (row tile, pixel tile) programs at once: the wave is all of h
        wave_rows = n_tiles * c["BLOCK_M"]
    else:
        wave_rows = L.grid[0] * c["BLOCK_M"]
    flops, useful, hbm, min_in, l2 = _head_common(L, M, c["BLOCK_M"], wave_rows, n_tiles)
    n_out = L.grid[1] if c["SPLIT"] else 1
    out = n_out * M * ia + (M * NPIX * ia if c["STORE_LOGITS"] else 0)
    if n_out > 1:  # torch sums the per-pixel-tile partials
        out += n_out * M * ia + M * ia
    ih = L.isz("Hp")
    if ih != ia:  # ll.to(h.dtype)
        out += M * (ia + ih)
    dt = L.t["Hp"].dtype
    hid = L.s["C"] if conv else c["HID"]
    return IwKernelCost(
        launch.kernel, L.config(), hbm + out, min_in + M * ia, flops, useful, L.prec(),
        _eager_loglik_fwd(M, B, hid, conv, dt, L.eager_prec()), l2_bytes=l2 + out,
    )  # fmt: skip


def iw_fwd(launch) -> IwKernelCost:
    """`_iw_nll_fwd_kernel`: (image tile, split) programs streaming sample tiles."""
    L = _L(launch)
    c, S, B = L.c, L.s["S"], L.s["B"]
    conv = bool(c["IS_CONV"])
    bm = c["BLOCK_S"] * c["BLOCK_B"]
    n_btiles, n_split = L.grid
    n_row_tiles = n_btiles * L.s["n_stiles"]
    wave_rows = S * B if conv else n_btiles * n_split * bm
    flops, _, hbm, _, l2 = _head_common(L, S * B, bm, wave_rows, n_row_tiles)
    lp = (S * B) * (L.isz("LPZ") + L.isz("LQZ"))
    isd = L.isz("PMAX")
    out = 2 * 3 * n_split * B * isd + (S * B * isd if c["STORE_LOGW"] else 0)  # + the combine
    dt = L.t["Hp"].dtype
    hid = L.s["C"] if conv else c["HID"]
    useful = iw_nll_useful_flops(S, B, hid)  # shared with bench/test_bench_iw_nll.py
    min_bytes = iw_nll_min_bytes(S, B, hid, conv, dt, L.t["LPZ"].dtype)
    return IwKernelCost(
        launch.kernel, L.config(), hbm + lp + out, min_bytes, flops, useful, L.prec(),
        _eager_iw(S, B, hid, conv, dt, L.eager_prec(), L.t["LPZ"].dtype),
        l2_bytes=l2 + lp + out,
    )  # fmt: skip


def _bwd_min(L: _L, M: int, hid: int) -> float:
    """Minimum traffic of the dense backward op: h, W, b, x, dL/dll in; dh, dW, db out."""
    ih, ia = L.isz("Hp"), L.isz("Bp")
    w = NPIX * hid * L.isz("Wp")
    return 2 * M * hid * ih + 2 * w + 2 * NPIX * ia + L.s["B"] * NPIX * L.isz("Xp") + M * ia


def dense_bwd_rows(launch) -> IwKernelCost:
    """`_dense_bwd_rows_kernel`: P programs grid-strided over row tiles; per pixel tile the
    logits are recomputed (K loop), then one hidden pass does the dW and dh products."""
    L = _L(launch)
    c, M = L.c, L.s["M"]
    hid, bm, P, nd = c["HID"], c["BLOCK_M"], L.grid[0], L.n_dtiles()
    n_tiles = L.s["n_tiles"]
    ih, ia, ix, iw = L.isz("Hp"), L.isz("Bp"), L.isz("Xp"), L.isz("Wp")
    flops = 3 * 2.0 * n_tiles * bm * NPIX * L.k_pad()
    useful = 3 * 2.0 * M * NPIX * hid
    h_bytes, acc_bytes = M * hid * ih, M * hid * ia
    wave = P * bm * hid * (ih + ia)  # h tiles + dh accumulator rows of one wave, together
    ratio = cm.l2_once(wave, 2 * nd) / wave  # 1, or every pixel tile re-reads both
    w_bytes = NPIX * hid * iw + NPIX * ia
    in_place = L.t["GH"].dtype == L.t["Bp"].dtype
    acc_hbm = (0 if in_place else P * bm * hid * ia) + (ratio - 1) * 2 * acc_bytes
    gw = (NPIX * hid + NPIX) * ia  # dW and db in the accumulation dtype
    cast = 0 if iw == ia else NPIX * hid * (ia + iw)  # dW.to(W.dtype) after the launch
    if c["DETERMINISTIC"]:  # P zeroed slices, read-modify-written once per row tile, summed
        live = P * gw <= cm.L2_REUSE_LIMIT
        gw_hbm = (2 * P * gw if live else 2 * n_tiles * gw + P * gw) + P * gw + gw + cast
        atomics = 0.0
    else:  # one zeroed L2-resident buffer, written back once
        gw_hbm, atomics = 2 * gw + cast, n_tiles * gw
    hbm = (ratio * h_bytes + cm.l2_once(w_bytes, n_tiles) + L.s["B"] * NPIX * ix + M * ia
           + M * hid * ih + acc_hbm + gw_hbm)  # fmt: skip
    l2 = (2 * nd * h_bytes + 2 * n_tiles * w_bytes + n_tiles * bm * NPIX * ix
          + 2 * (nd - 1) * acc_bytes + atomics)  # fmt: skip
    dt = L.t["Hp"].dtype
    return IwKernelCost(
        launch.kernel, L.config(), hbm, _bwd_min(L, M, hid), flops, useful, L.prec(),
        _eager_loglik_bwd(M, L.s["B"], hid, False, dt, L.eager_prec()), l2_bytes=l2,
        atomic_bytes=atomics,
    )  # fmt: skip


def dense_bwd_split(launch) -> IwKernelCost:
    """`_dense_bwd_split_kernel`: one program per 16-pixel tile walks all row tiles; its dW
    rows and db stay in registers (or its own L2-resident rows, IEEE fp32) and are written once
    in W's dtype; dh gets one contribution per pixel tile: atomics into a zeroed float32 buffer
    (or a slice per pixel tile, summed by torch, when deterministic), cast to h's dtype after."""
    L = _L(launch)
    c, M = L.c, L.s["M"]
    hid, bm = c["HID"], c["BLOCK_M"]
    nd = L.grid[0]
    n_tiles = L.s["n_tiles"]
    ih, ia, ix, iw = L.isz("Hp"), L.isz("Bp"), L.isz("Xp"), L.isz("Wp")
    flops = 3 * 2.0 * n_tiles * bm * NPIX * L.k_pad()
    useful = 3 * 2.0 * M * NPIX * hid
    h_bytes = M * hid * ih
    w_bytes = NPIX * hid * iw + NPIX * ia
    dh = M * hid * ia
    cast = 0 if ih == ia else dh + M * hid * ih  # gh.to(h.dtype) after the launch
    if c["DETERMINISTIC"]:  # zeroed slices, one read-modify-write each, summed by torch
        gh_hbm, atomics = 4 * nd * dh + dh + cast, 0.0
    else:  # zeroed buffer (L2-resident at small M), written back once
        gh_hbm, atomics = 2 * dh + cast, nd * dh
    hbm = (_reread(h_bytes, h_bytes, 2 * nd) + w_bytes + L.s["B"] * NPIX * ix + M * ia
           + NPIX * hid * iw + NPIX * ia + gh_hbm)  # fmt: skip
    l2 = 2 * nd * h_bytes + 2 * w_bytes + nd * n_tiles * bm * 16 * ix + atomics
    dt = L.t["Hp"].dtype
    return IwKernelCost(
        launch.kernel, L.config(), hbm, _bwd_min(L, M, hid), flops, useful, L.prec(),
        _eager_loglik_bwd(M, L.s["B"], hid, False, dt, L.eager_prec()), l2_bytes=l2,
        atomic_bytes=atomics,
    )  # fmt: skip


def conv_bwd(launch) -> IwKernelCost:
    """`_conv_bwd_kernel`: one row tile per program, from the logits the forward kept: h read
    once, dh written once, dw/db partial sums per row tile (summed by torch)."""
    L = _L(launch)
    c, M, C = L.c, L.s["M"], L.s["C"]
    n_tiles = L.grid[0]
    ih, ia, ix = L.isz("Hp"), L.isz("Wp"), L.isz("Xp")
    hc = M * C * NPIX
    flops = 4.0 * n_tiles * c["BLOCK_M"] * C * NPIX  # dh = dl w[c]; dw[c] += dl h (x2)
    useful = 4.0 * hc
    small = L.s["B"] * NPIX * ix + M * ia + (C + 1) * ia
    partials = 2 * n_tiles * (c["C_PAD"] + 1) * ia  # written, then summed by torch
    hbm = 2 * hc * ih + M * NPIX * ia + small + partials
    dt = L.t["Hp"].dtype
    return IwKernelCost(
        launch.kernel, L.config(), hbm, 2 * hc * ih + small + (C + 1) * ia, flops, useful,
        L.prec(), _eager_loglik_bwd(M, L.s["B"], C, True, dt, L.eager_prec()), l2_bytes=hbm,
    )  # fmt: skip


MODELS = {
    "_loglik_fwd_kernel": loglik_fwd,
    "_iw_nll_fwd_kernel": iw_fwd,
    "_dense_bwd_rows_kernel": dense_bwd_rows,
    "_dense_bwd_split_kernel": dense_bwd_split,
    "_conv_bwd_kernel": conv_bwd,
}

__all__ = ["MODELS", "IwKernelCost", "iw_nll_min_bytes", "iw_nll_useful_flops"]
