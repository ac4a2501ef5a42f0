"""Real NVP in torch (Appendix B.2): K blocks of InvertibleDense -> CouplingLayer -> ActNorm.

Parameter names and layouts follow DESIGN.md (row vectors, `y = x @ W`), so a block's
parameters convert one-to-one to the NumPy reference and feed the Triton kernel stacked.
Every layer maps (..., D) -> ((..., D), logabsdet (...)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vaeprior.reference.config import LEAKY_SLOPE, SCALE_SHIFT

BACKENDS = ("torch", "triton", "auto")
_ACTNORM_EPS = 1e-6
FLOW_PARAM_NAMES = ("W", "A", "a", "S", "s0", "T", "t0", "log_scale", "bias")


def random_orthogonal(dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """QR of a Gaussian matrix with the signs of R's diagonal folded into Q (Haar-distributed)."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


class InvertibleDense(nn.Module):
    """y = x @ W with a learned (D, D) matrix; log|det| = log|det W| per row (Glow's 1x1 conv)."""

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.W = nn.Parameter(random_orthogonal(dim, generator))  # (D, D)

    def log_abs_det(self) -> torch.Tensor:
        return torch.linalg.slogdet(self.W)[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x @ self.W, self.log_abs_det().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.linalg.solve(self.W, y, left=False)  # x @ W = y
        return x, -self.log_abs_det().expand(y.shape[:-1])


class CouplingLayer(nn.Module):
    """Affine coupling: y_r = u_r * sigmoid(s(u_l) + shift) + t(u_l), h = Dense[H](u_l) (B.2)."""

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        slope: float = LEAKY_SLOPE,
        scale_shift: float = SCALE_SHIFT,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling layer needs dim >= 2 to split its input, got {dim}")
        self.dl, self.dr = dim // 2, dim - dim // 2
        self.slope, self.scale_shift = slope, scale_shift
        bound = math.sqrt(6.0 / (self.dl + hidden))  # Glorot / Xavier uniform
        a_init = (torch.rand(self.dl, hidden, generator=generator) * 2.0 - 1.0) * bound
        self.A = nn.Parameter(a_init)  # (Dl, H)
        self.a = nn.Parameter(torch.zeros(hidden))  # (H,)
        self.S = nn.Parameter(torch.zeros(hidden, self.dr))  # (H, Dr)
        self.s0 = nn.Parameter(torch.zeros(self.dr))  # (Dr,)
        self.T = nn.Parameter(torch.zeros(hidden, self.dr))  # (H, Dr)
        self.t0 = nn.Parameter(torch.zeros(self.dr))  # (Dr,)

    def _scale_shift(self, u_l: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(u_l @ self.A + self.a, self.slope)  # (..., H)
        return h @ self.S + self.s0 + self.scale_shift, h @ self.T + self.t0  # (..., Dr) x2

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u_l, u_r = u[..., : self.dl], u[..., self.dl :]
        s, t = self._scale_shift(u_l)
        y_r = u_r * torch.sigmoid(s) + t
        return torch.cat([u_l, y_r], dim=-1), F.logsigmoid(s).sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_l, y_r = y[..., : self.dl], y[..., self.dl :]
        s, t = self._scale_shift(y_l)
        u_r = (y_r - t) * torch.exp(-F.logsigmoid(s))
        return torch.cat([y_l, u_r], dim=-1), -F.logsigmoid(s).sum(-1)


class ActNorm(nn.Module):
    """y = (x + bias) * exp(log_scale), data-initialised on the first training batch (Glow).

    The persistent bool buffer `initialized` records the initialisation, so a model loaded
    from a `state_dict` is never re-initialised.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))  # (D,)
        self.bias = nn.Parameter(torch.zeros(dim))  # (D,)
        self.register_buffer("initialized", torch.tensor(False), persistent=True)
        # Python-side copy of `initialized` once it is True: reading the buffer of a CUDA
        # module is a device sync, which K blocks would otherwise pay on every forward.
        self._known_initialized = False

    def is_initialized(self) -> bool:
        """Whether the data-dependent init has run (or was loaded); syncs at most until True."""
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized)
        return self._known_initialized

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # re-read the loaded buffer on next use

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """bias = -mean(x), log_scale = -0.5 log(var(x) + 1e-6) per dimension (DESIGN.md)."""
        rows = x.reshape(-1, x.shape[-1]).to(self.bias.dtype)  # (N, D)
        self.bias.copy_(-rows.mean(0))
        self.log_scale.copy_(-0.5 * torch.log(rows.var(0, unbiased=False) + _ACTNORM_EPS))
        self.initialized.fill_(True)
        self._known_initialized = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not self.is_initialized():
            self.initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        return y, self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = y * torch.exp(-self.log_scale) - self.bias
        return x, -self.log_scale.sum().expand(y.shape[:-1])


class FlowBlock(nn.Module):
    """One Real NVP block f_k = InvertibleDense -> CouplingLayer -> ActNorm (Appendix B.2)."""

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        slope: float = LEAKY_SLOPE,
        scale_shift: float = SCALE_SHIFT,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dense = InvertibleDense(dim, generator)
        self.coupling = CouplingLayer(dim, hidden, slope, scale_shift, generator)
        self.actnorm = ActNorm(dim)

    def param(self, name: str) -> nn.Parameter:
        """The block parameter of DESIGN.md's `name` (one of FLOW_PARAM_NAMES)."""
        layer = {"W": self.dense, "log_scale": self.actnorm, "bias": self.actnorm}
        return getattr(layer.get(name, self.coupling), name)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = 0.0
        for layer in (self.dense, self.coupling, self.actnorm):
            x, ld = layer(x)
            total = total + ld
        return x, total

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = 0.0
        for layer in (self.actnorm, self.coupling, self.dense):
            y, ld = layer.inverse(y)
            total = total + ld
        return y, total


def _load_triton_forward():
    """The fused kernel, or None when Triton (or the kernel module) cannot be imported."""
    try:
        from vaeprior.fast.kernels.flow import realnvp_forward
    except (ImportError, RuntimeError):  # no Triton, or no usable backend for it
        return None
    return realnvp_forward


class RealNVP(nn.Module):
    """f = f_K o ... o f_1 (block 1 applied first); K = 0 is the identity (Eq. 4, Eq. B.1).

    `backend`: "torch", "triton" (fused forward kernel) or "auto" (Triton for float32 CUDA
    inputs once every ActNorm is initialised). Without an importable kernel the torch path runs.
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
        self.dim, self.depth, self.hidden = dim, depth, hidden
        self.slope, self.scale_shift = slope, scale_shift
        self.backend = "auto"
        self.blocks = nn.ModuleList(
            FlowBlock(dim, hidden, slope, scale_shift, generator) for _ in range(depth)
        )

    def initialized(self) -> bool:
        """Whether every ActNorm has had its data-dependent initialisation (or a loaded state)."""
        return all(b.actnorm.is_initialized() for b in self.blocks)

    def stacked_params(self) -> dict[str, torch.Tensor]:
        """Block parameters stacked over K (differentiable): W (K,D,D), A (K,Dl,H), ..., bias."""
        if self.depth == 0:
            return self._empty_params()
        return {n: torch.stack([b.param(n) for b in self.blocks]) for n in FLOW_PARAM_NAMES}

    def _empty_params(self) -> dict[str, torch.Tensor]:
        d, dl, h = self.dim, self.dim // 2, self.hidden
        dr = d - dl
        shapes = {"W": (d, d), "A": (dl, h), "a": (h,), "S": (h, dr), "s0": (dr,)}
        shapes |= {"T": (h, dr), "t0": (dr,), "log_scale": (d,), "bias": (d,)}
        return {k: torch.zeros((0, *s)) for k, s in shapes.items()}

    def _use_triton(self, x: torch.Tensor) -> bool:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown flow backend {self.backend!r}: choose one of {BACKENDS}")
        if self.backend == "torch" or self.depth == 0 or not self.initialized():
            return False
        return self.backend == "triton" or (x.is_cuda and x.dtype == torch.float32)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z -> w with log|det df/dz| per row: (..., D) -> ((..., D), (...))."""
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"RealNVP expects last dimension {self.dim}, got shape {tuple(x.shape)}"
            )
        kernel = _load_triton_forward() if self._use_triton(x) else None
        if kernel is not None:
            y, ld = kernel(
                x.reshape(-1, self.dim),
                **self.stacked_params(),
                slope=self.slope,
                scale_shift=self.scale_shift,
            )
            return y.reshape(x.shape), ld.reshape(x.shape[:-1])
        total = x.new_zeros(x.shape[:-1])
        for block in self.blocks:
            x, ld = block(x)
            total = total + ld
        return x, total

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """w -> z with the inverse map's log|det| (= -forward's), blocks in reverse order."""
        if y.shape[-1] != self.dim:
            raise ValueError(
                f"RealNVP expects last dimension {self.dim}, got shape {tuple(y.shape)}"
            )
        total = y.new_zeros(y.shape[:-1])
        for block in reversed(self.blocks):
            y, ld = block.inverse(y)
            total = total + ld
        return y, total
