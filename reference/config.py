"""Model configuration shared by the reference and the fast path (Appendix B.2)."""

from __future__ import annotations

from dataclasses import dataclass

PRIORS = ("gaussian", "rnvp")
POSTERIORS = ("gaussian", "rnvp")

# Negative slope of every LeakyReLU. The paper does not state it; its authors' library
# (tfsnippet, on TensorFlow) uses tf.nn.leaky_relu's default, 0.2.
LEAKY_SLOPE = 0.2

# The coupling layer's scale is sigmoid(s + SCALE_SHIFT). With the zero-initialised s/t
# heads a block starts as y_r = 0.881 * u_r (sigmoid(2)), a near-identity map, as in the
# authors' flow library; SCALE_SHIFT = 0 gives the paper's literal Sigmoid(s).
SCALE_SHIFT = 2.0


@dataclass(frozen=True)
class VAEConfig:
    """Sizes and choices of one DenseVAE (Appendix B.2).

    prior/posterior: "gaussian" or "rnvp" ("standard" = both gaussian; "RNVP p(z)" =
    prior rnvp; "RNVP q(z|x)" = posterior rnvp; "both").
    """

    x_dim: int = 784
    z_dim: int = 40  # 40 on (static) MNIST, 64 on FashionMNIST / Omniglot
    hidden: int = 500  # Dense[500 -> 500] in h_phi and h_theta
    prior: str = "gaussian"
    posterior: str = "gaussian"
    flow_depth: int = 20  # K blocks of each RNVP
    flow_hidden: int = 256  # Dense[256] inside each coupling layer
    leaky_slope: float = LEAKY_SLOPE
    scale_shift: float = SCALE_SHIFT

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}: choose one of {PRIORS}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {self.posterior!r}: choose one of {POSTERIORS}")
        if self.flow_depth < 0:
            raise ValueError(f"flow depth K must be >= 0, got {self.flow_depth}: use 0 for no flow")
        if min(self.x_dim, self.z_dim, self.hidden, self.flow_hidden) < 1:
            raise ValueError("x_dim, z_dim, hidden and flow_hidden must be positive")
