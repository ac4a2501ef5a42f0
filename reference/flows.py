"""Real NVP (Appendix B.2) in NumPy float64: one block = InvertibleDense -> Coupling -> ActNorm.

Conventions (DESIGN.md, "Real NVP"): row vectors, `y = x @ W`; every layer maps `(..., D)` to
`(..., D)` and returns the log|det| of the map it applies, shaped `(...)`. `inverse` returns the
log|det| of the inverse map (= -forward's). The coupling scale is sigmoid(s + scale_shift): with
scale_shift = 2 and zero-initialised S, T a block starts as y_r = sigmoid(2) u_r, close to the
identity, as in the authors' flow library (scale_shift = 0 gives the paper's literal sigmoid(s)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import LEAKY_SLOPE, SCALE_SHIFT
from .distributions import leaky_relu, log_sigmoid, unit_gaussian_log_prob

ACTNORM_EPS = 1e-6  # added to the batch variance in ActNorm's data-dependent init
PARAM_NAMES = ("W", "A", "a", "S", "s0", "T", "t0", "log_scale", "bias")


def _check_dim(x: np.ndarray, dim: int, layer: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(f"{layer} expects inputs shaped (..., {dim}), got {x.shape}")
    return x


@dataclass
class InvertibleDense:
    """y = x W with a square invertible W; log|det| = log|det W| (slogdet)."""

    W: np.ndarray  # (D, D)

    def logdet(self) -> float:
        sign, logabsdet = np.linalg.slogdet(self.W)
        if sign == 0:
            raise ValueError("InvertibleDense: W is singular, the layer is not invertible")
        return float(logabsdet)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = _check_dim(x, self.W.shape[0], "InvertibleDense")  # (..., D)
        return x @ self.W, np.full(x.shape[:-1], self.logdet())

    def inverse(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = _check_dim(y, self.W.shape[0], "InvertibleDense")  # (..., D)
        x = np.linalg.solve(self.W.T, y.reshape(-1, y.shape[-1]).T).T  # x W = y  <=>  W^T x^T = y^T
        return x.reshape(y.shape), np.full(y.shape[:-1], -self.logdet())


@dataclass
class CouplingLayer:
    """Affine coupling: u_l passes, u_r -> u_r * sigmoid(s + shift) + t, (s, t) = NN(u_l).

    h = LeakyReLU(u_l A + a), s = h S + s0, t = h T + t0 (Appendix B.2, Dense[256] net);
    log|det| = sum_j log_sigmoid(s_j + shift).
    """

    A: np.ndarray  # (Dl, H)
    a: np.ndarray  # (H,)
    S: np.ndarray  # (H, Dr)
    s0: np.ndarray  # (Dr,)
    T: np.ndarray  # (H, Dr)
    t0: np.ndarray  # (Dr,)
    slope: float = LEAKY_SLOPE
    scale_shift: float = SCALE_SHIFT

    @property
    def dim(self) -> int:
        return self.A.shape[0] + self.S.shape[1]

    def _scale_shift(self, u_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log of the scale, translation) of the right half, both (..., Dr)."""
        h = leaky_relu(u_l @ self.A + self.a, self.slope)  # (..., H)
        s = h @ self.S + self.s0 + self.scale_shift  # (..., Dr)
        t = h @ self.T + self.t0  # (..., Dr)
        return log_sigmoid(s), t

    def forward(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = _check_dim(u, self.dim, "CouplingLayer")  # (..., D)
        dl = self.A.shape[0]
        u_l, u_r = u[..., :dl], u[..., dl:]  # (..., Dl), (..., Dr)
        log_scale, t = self._scale_shift(u_l)
        y_r = u_r * np.exp(log_scale) + t  # exp(log_sigmoid(s)) = sigmoid(s)
        return np.concatenate([u_l, y_r], axis=-1), np.sum(log_scale, axis=-1)

    def inverse(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = _check_dim(y, self.dim, "CouplingLayer")  # (..., D)
        dl = self.A.shape[0]
        y_l, y_r = y[..., :dl], y[..., dl:]
        log_scale, t = self._scale_shift(y_l)  # y_l = u_l, so the same (s, t)
        u_r = (y_r - t) * np.exp(-log_scale)
        return np.concatenate([y_l, u_r], axis=-1), -np.sum(log_scale, axis=-1)


@dataclass
class ActNorm:
    """y = (x + bias) * exp(log_scale) per dimension; log|det| = sum_j log_scale_j."""

    log_scale: np.ndarray  # (D,)
    bias: np.ndarray  # (D,)

    def initialize(self, x: np.ndarray) -> None:
        """Data-dependent init: the batch `x (N, D)` gets zero mean and unit variance."""
        x = _check_dim(x, self.bias.shape[0], "ActNorm").reshape(-1, self.bias.shape[0])
        self.bias = -np.mean(x, axis=0)
        self.log_scale = -0.5 * np.log(np.var(x, axis=0) + ACTNORM_EPS)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = _check_dim(x, self.bias.shape[0], "ActNorm")  # (..., D)
        y = (x + self.bias) * np.exp(self.log_scale)
        return y, np.full(x.shape[:-1], np.sum(self.log_scale))

    def inverse(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = _check_dim(y, self.bias.shape[0], "ActNorm")  # (..., D)
        x = y * np.exp(-self.log_scale) - self.bias
        return x, np.full(y.shape[:-1], -np.sum(self.log_scale))


@dataclass
class FlowBlock:
    """One Real NVP block of Appendix B.2: InvertibleDense -> CouplingLayer -> ActNorm."""

    dense: InvertibleDense
    coupling: CouplingLayer
    actnorm: ActNorm

    @property
    def layers(self) -> tuple:
        return (self.dense, self.coupling, self.actnorm)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = 0.0
        for layer in self.layers:
            x, logdet = layer.forward(x)
            total = total + logdet
        return x, total

    def inverse(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = 0.0
        for layer in reversed(self.layers):
            y, logdet = layer.inverse(y)
            total = total + logdet
        return y, total


def random_orthogonal(dim: int, rng: np.random.Generator) -> np.ndarray:
    """QR of a Gaussian matrix, columns sign-fixed by diag(R) (Haar-distributed)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def glorot_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Glorot/Xavier uniform (fan_in, fan_out) matrix: U(-r, r), r = sqrt(6 / (in + out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def random_block(
    dim: int,
    rng: np.random.Generator,
    hidden: int,
    slope: float,
    scale_shift: float,
    zero_init: bool,
) -> FlowBlock:
    """A block with DESIGN.md's init; zero_init=False draws the zero-init ones ~ N(0, 0.1^2)."""
    dl, dr = dim // 2, dim - dim // 2

    def small(*shape: int) -> np.ndarray:
        return np.zeros(shape) if zero_init else 0.1 * rng.standard_normal(shape)

    dense = InvertibleDense(random_orthogonal(dim, rng))
    A = glorot_uniform(dl, hidden, rng)
    coupling = CouplingLayer(
        A,
        small(hidden),
        small(hidden, dr),
        small(dr),
        small(hidden, dr),
        small(dr),
        slope,
        scale_shift,
    )
    return FlowBlock(dense, coupling, ActNorm(small(dim), small(dim)))


@dataclass
class RealNVP:
    """K blocks, block 1 applied first (Appendix B.2); K = 0 is the identity (log|det| 0)."""

    blocks: list[FlowBlock]

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)  # (..., D)
        total = np.zeros(x.shape[:-1])  # (...)
        for block in self.blocks:
            x, logdet = block.forward(x)
            total = total + logdet
        return x, total

    def inverse(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(y, dtype=np.float64)  # (..., D)
        total = np.zeros(y.shape[:-1])
        for block in reversed(self.blocks):
            y, logdet = block.inverse(y)
            total = total + logdet
        return y, total

    def initialize(self, x: np.ndarray) -> None:
        """ActNorm data-dependent init of every block in turn on the batch `x (N, D)`."""
        for block in self.blocks:
            u, _ = block.dense.forward(x)
            v, _ = block.coupling.forward(u)
            block.actnorm.initialize(v)
            x, _ = block.actnorm.forward(v)

    @classmethod
    def random(
        cls,
        dim: int,
        depth: int,
        rng: np.random.Generator,
        hidden: int = 256,
        slope: float = LEAKY_SLOPE,
        scale_shift: float = SCALE_SHIFT,
        zero_init: bool = True,
    ) -> RealNVP:
        """DESIGN.md's init (W orthogonal, A Glorot, rest 0); zero_init=False: rest ~ N(0, .01)."""
        if dim < 1 or depth < 0:
            raise ValueError(f"RealNVP needs dim >= 1 and depth >= 0, got dim={dim}, depth={depth}")
        return cls(
            [random_block(dim, rng, hidden, slope, scale_shift, zero_init) for _ in range(depth)]
        )

    @classmethod
    def from_params(
        cls,
        params: dict[str, np.ndarray],
        prefix: str,
        depth: int,
        slope: float = LEAKY_SLOPE,
        scale_shift: float = SCALE_SHIFT,
    ) -> RealNVP:
        """Build from DESIGN.md's keys f"{prefix}.{k}.{name}", k = 0..depth-1."""
        blocks = []
        for k in range(depth):
            missing = [n for n in PARAM_NAMES if f"{prefix}.{k}.{n}" not in params]
            if missing:
                raise ValueError(
                    f"flow parameters missing keys {prefix}.{k}.{missing} (depth {depth})"
                )
            p = {n: np.asarray(params[f"{prefix}.{k}.{n}"], dtype=np.float64) for n in PARAM_NAMES}
            coupling = CouplingLayer(
                p["A"], p["a"], p["S"], p["s0"], p["T"], p["t0"], slope, scale_shift
            )
            blocks.append(
                FlowBlock(InvertibleDense(p["W"]), coupling, ActNorm(p["log_scale"], p["bias"]))
            )
        return cls(blocks)

    def to_params(self, prefix: str) -> dict[str, np.ndarray]:
        """The inverse of `from_params`: {f"{prefix}.{k}.{name}": array}."""
        out = {}
        for k, b in enumerate(self.blocks):
            c = b.coupling
            values = (
                b.dense.W,
                c.A,
                c.a,
                c.S,
                c.s0,
                c.T,
                c.t0,
                b.actnorm.log_scale,
                b.actnorm.bias,
            )
            out.update({f"{prefix}.{k}.{n}": v for n, v in zip(PARAM_NAMES, values, strict=True)})
        return out


def flow_prior_log_prob(flow: RealNVP, z: np.ndarray) -> np.ndarray:
    """Eq. 4: log p_lambda(z) = log N(f_lambda(z); 0, I) + log|det df_lambda/dz|.

    z (..., D) -> (...).
    """
    w, logdet = flow.forward(z)  # (..., D), (...)
    return unit_gaussian_log_prob(w) + logdet


def flow_posterior(
    flow: RealNVP, w: np.ndarray, log_qw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. B.1: z = f_eta(w), log q(z|x) = log q(w|x) - log|det df_eta/dw|; w (..., D)."""
    z, logdet = flow.forward(w)  # (..., D), (...)
    return z, log_qw - logdet
