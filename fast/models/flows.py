"""Real NVP in torch (Appendix B.2): the module `RealNVP` and the inverse.

K blocks of InvertibleDense -> CouplingLayer -> ActNorm; the parameters are stacked over the
blocks in the layout shared with the Triton kernel and the functional forward
(`vaeprior.fast.models.realnvp`, where the block's formulas, the layout and the CPU design are
written down). `RealNVP.forward` runs that forward (or, on CUDA, the fused kernel),
`RealNVP.inverse` runs `realnvp_inverse` below. Checkpoints written before the parameters were
stacked (one set of tensors per block) still load.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vaeprior.fast import backends
from vaeprior.fast.models.realnvp import (
    PARAM_NAMES,
    _shifted_st0,
    check_params,
    initialize_actnorm,
    param_shapes,
    realnvp_forward,
)
from vaeprior.reference.config import LEAKY_SLOPE, SCALE_SHIFT

# Per-block names of the layout before the parameters were stacked (state_dict keys
# `blocks.{k}.dense.W`, `blocks.{k}.coupling.A`, ...): old checkpoints still load.
_OLD_KEYS = {
    "W": "dense.W",
    "A": "coupling.A",
    "a": "coupling.a",
    "S": "coupling.S",
    "s0": "coupling.s0",
    "T": "coupling.T",
    "t0": "coupling.t0",
    "log_scale": "actnorm.log_scale",
    "bias": "actnorm.bias",
    "initialized": "actnorm.initialized",
}


# --------------------------------------------------------------------------------------------
# inverse
# --------------------------------------------------------------------------------------------
def _exp_in_three(a: torch.Tensor) -> torch.Tensor:
    """exp(a / 3) with a capped where exp(a) could not matter: multiply by it three times.

    v * exp(a) for a up to 3 log(max float) without an overflowing factor: every partial
    product of v * f * f * f is at most the result, so an intermediate is finite whenever the
    result is. (exp(a) alone overflows float32 at a = 88.7: the coupling inverse's 1/sigmoid(s)
    for s < -88.7, which a contracting flow reaches for |w| around 4.)
    """
    cap = 3.0 * math.log(torch.finfo(a.dtype).max) * 0.999
    return torch.exp(a.clamp(max=cap) / 3.0)


def realnvp_inverse(
    y: torch.Tensor,
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
    """x = f^{-1}(y) and the inverse map's logabsdet (= -forward's at x), blocks in reverse.

    Same arguments as `realnvp_forward`. The inverse expands what the forward contracts: a
    trained flow contracts some directions by e^-100 and more (log|det| around -100 at
    K = 50, D = 40), so float32 rounding errors made in block k are amplified by the later
    (earlier-indexed) inverse blocks, until they leave the data region and overflow. Inputs
    below float64 are therefore inverted in float64 and the result rounded back: the sample
    z = f^{-1}(w) then maps forward to w within float32's own forward error. Expansions
    (1 / sigmoid(s + c), exp(-log_scale)) are products of partial factors, so no intermediate
    overflows while the result is finite; W_k^{-1} is applied through one batched LU
    factorisation (`lu_solve`, backward stable). Differentiable by autograd.
    """
    params = (W, A, a, ST, st0, log_scale, bias)
    check_params(y, params)
    K, D, _ = W.shape
    if K == 0:
        return y, y.new_zeros(y.shape[0])
    if y.dtype != torch.float64:
        x, ld = realnvp_inverse(
            y.double(), *(p.double() for p in params), slope=slope, scale_shift=scale_shift
        )
        return x.to(y.dtype), ld.to(y.dtype)
    dl, dr = D // 2, D - D // 2
    lu, piv = torch.linalg.lu_factor(W)  # (K, D, D)
    logdet_w = torch.log(torch.diagonal(lu, dim1=1, dim2=2).abs()).sum()
    st0s = _shifted_st0(st0, scale_shift)
    half = torch.exp(-0.5 * log_scale)  # (K, D): 1 / exp(log_scale) = half * half
    ld = y.new_zeros(y.shape[0])
    x = y
    for k in reversed(range(K)):
        v = x * half[k] * half[k] - bias[k]  # ActNorm^-1
        v_l = v[:, :dl]
        h = F.leaky_relu(torch.addmm(a[k], v_l, A[k]), slope)  # (N, H)
        st = torch.addmm(st0s[k], h, ST[k])  # (N, 2 Dr): [s + c | t]
        neg_log_sig = F.softplus(-st[:, :dr])  # -log sigmoid(s + c) >= 0
        f = _exp_in_three(neg_log_sig)  # (1 / sigmoid)^(1/3)
        u_r = (v[:, dl:] - st[:, dr:]) * f * f * f  # coupling^-1
        x = torch.linalg.lu_solve(lu[k], piv[k], torch.cat([v_l, u_r], 1), left=False)
        ld = ld + neg_log_sig.sum(1)
    return x, ld - logdet_w - log_scale.sum()


# --------------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------------
def random_orthogonal(dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """QR of a Gaussian matrix with the signs of R's diagonal folded into Q (Haar-distributed)."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def _load_triton_forward():
    """The fused kernel `realnvp_forward`, or None when Triton or the kernel cannot be imported."""
    try:
        return backends.kernels("flow").realnvp_forward
    except (ValueError, AttributeError):
        return None


class RealNVP(nn.Module):
    """f = f_K o ... o f_1 (block 1 applied first); K = 0 is the identity (Eq. 4, Eq. B.1).

    zuko/nflows API: `forward(x) -> (y, logabsdet)`, `inverse(y) -> (x, logabsdet)`, for any
    leading shape (..., D). Parameters are the stacked tensors of PARAM_NAMES; the persistent
    bool buffer `actnorm_initialized` records ActNorm's data-dependent initialisation (done on the
    first training batch, block k on the data reaching it), so a loaded model is never
    re-initialised.

    `backend` ("auto", "torch", "triton") is resolved by `vaeprior.fast.backends.resolve`; the
    fused kernel runs only once the ActNorms are initialised (the initialising batch runs on
    torch). "triton" without a usable kernel is an error; "auto" falls back to torch.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        hidden: int = 256,
        slope: float = LEAKY_SLOPE,
        scale_shift: float = SCALE_SHIFT,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"flow depth K must be >= 0, got {depth}")
        if depth and dim < 2:
            raise ValueError(f"a coupling layer needs dim >= 2 to split its input, got {dim}")
        self.dim, self.depth, self.hidden = dim, depth, hidden
        self.slope, self.scale_shift = slope, scale_shift
        self.backend = "auto"
        shapes = param_shapes(depth, dim, hidden)
        dl = dim // 2
        bound = math.sqrt(6.0 / (dl + hidden))  # Glorot / Xavier uniform
        W, A = torch.empty(shapes["W"]), torch.empty(shapes["A"])
        for k in range(depth):  # per block: W (orthogonal) then A, as the reference draws them
            W[k] = random_orthogonal(dim, generator)
            A[k] = (torch.rand(dl, hidden, generator=generator) * 2.0 - 1.0) * bound
        self.W = nn.Parameter(W)  # (K, D, D)
        self.A = nn.Parameter(A)  # (K, Dl, H)
        self.a = nn.Parameter(torch.zeros(shapes["a"]))  # (K, H)
        self.ST = nn.Parameter(torch.zeros(shapes["ST"]))  # (K, H, 2 Dr)
        self.st0 = nn.Parameter(torch.zeros(shapes["st0"]))  # (K, 2 Dr)
        self.log_scale = nn.Parameter(torch.zeros(shapes["log_scale"]))  # (K, D)
        self.bias = nn.Parameter(torch.zeros(shapes["bias"]))  # (K, D)
        self.register_buffer("actnorm_initialized", torch.tensor(False), persistent=True)
        # Python-side copy of the buffer once True: reading the buffer of a CUDA module is a
        # device sync, which would otherwise be paid on every forward.
        self._known_initialized = False

    def stacked_params(self) -> dict[str, nn.Parameter]:
        """The parameters by PARAM_NAMES, in `realnvp_forward`'s argument order."""
        return {n: getattr(self, n) for n in PARAM_NAMES}

    def initialized(self) -> bool:
        """Whether ActNorm's data-dependent init has run (or was loaded); K = 0 always is."""
        if not self._known_initialized:
            self._known_initialized = self.depth == 0 or bool(self.actnorm_initialized)
        return self._known_initialized

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """ActNorm data-dependent init of every block in turn on the rows x (..., D)."""
        rows = x.detach().reshape(-1, self.dim).to(self.W.dtype)
        if self.depth:
            params = tuple(p.detach() for p in self.stacked_params().values())
            initialize_actnorm(rows, params, slope=self.slope, scale_shift=self.scale_shift)
        self.actnorm_initialized.fill_(True)
        self._known_initialized = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        _stack_old_blocks(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._known_initialized = False  # re-read the loaded buffer on next use

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"RealNVP expects last dimension {self.dim}, got shape {tuple(x.shape)}"
            )
        return x.reshape(-1, self.dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z -> w with log|det df/dz| per row: (..., D) -> ((..., D), (...))."""
        rows = self._check(x)
        use_kernel = backends.resolve(self.backend, x, "flow") == "triton"
        fn = realnvp_forward
        if self.training and not self.initialized():
            self.initialize(rows)  # this batch then runs on torch
        elif use_kernel and self.depth:
            fn = _load_triton_forward()
            if fn is None:
                raise ValueError("backend triton: the flow kernel is unavailable, use torch")
        y, ld = fn(
            rows, *self.stacked_params().values(), slope=self.slope, scale_shift=self.scale_shift
        )
        return y.reshape(x.shape), ld.reshape(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """w -> z with the inverse map's log|det| (= -forward's), blocks in reverse order."""
        x, ld = realnvp_inverse(
            self._check(y),
            *self.stacked_params().values(),
            slope=self.slope,
            scale_shift=self.scale_shift,
        )
        return x.reshape(y.shape), ld.reshape(y.shape[:-1])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, depth={self.depth}, hidden={self.hidden}"


def _stack_old_blocks(state: dict, prefix: str) -> None:
    """Rewrite per-block keys (`{prefix}blocks.{k}.coupling.S`, ...) to the stacked layout."""
    old = f"{prefix}blocks."
    ks = {int(key[len(old) :].split(".")[0]) for key in state if key.startswith(old)}
    if not ks:
        return
    if ks != set(range(len(ks))):
        return  # not a complete block list: let load_state_dict report the keys
    try:
        per = {
            n: [state[f"{old}{k}.{suffix}"] for k in range(len(ks))]
            for n, suffix in _OLD_KEYS.items()
        }
    except KeyError:
        return
    for k in range(len(ks)):
        for suffix in _OLD_KEYS.values():
            del state[f"{old}{k}.{suffix}"]
    for n in ("W", "A", "a", "log_scale", "bias"):
        state[prefix + n] = torch.stack(per[n])
    state[prefix + "ST"] = torch.stack(
        [torch.cat(p, -1) for p in zip(per["S"], per["T"], strict=True)]
    )
    state[prefix + "st0"] = torch.stack(
        [torch.cat(p, -1) for p in zip(per["s0"], per["t0"], strict=True)]
    )
    state[prefix + "actnorm_initialized"] = torch.stack(per["initialized"]).all()


__all__ = [
    "RealNVP",
    "random_orthogonal",
    "realnvp_inverse",
]
