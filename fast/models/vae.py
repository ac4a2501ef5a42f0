"""The VAE of the paper in torch (Eqs. 1-5, B.1, Appendix B.2): any architecture, prior, posterior.

Shapes follow DESIGN.md: x (B, 784); eps (S, B, Z); per-sample terms (S, B); flattened
sample rows are sample-major (row s * B + b).
"""

from __future__ import annotations

import torch
from torch import nn

from vaeprior.fast import backends
from vaeprior.fast.config import ModelConfig
from vaeprior.fast.models.distributions import (
    bernoulli_log_prob,
    log_mean_exp,
    unit_gaussian_log_prob,
)
from vaeprior.fast.models.flows import RealNVP
from vaeprior.fast.models.init import glorot_init_
from vaeprior.fast.models.networks import (
    ConvDecoderTrunk,
    ConvEncoderTrunk,
    DenseTrunk,
    GatedPixelCNN,
    PixelCNN,
    resnet_decoder_trunk,
    resnet_encoder_trunk,
)

X_DIM = 784


class Encoder(nn.Module):
    """q(w|x) = N(mean(h_phi(x)), exp(log_std(h_phi(x)))^2) with Linear heads (Appendix B.2)."""

    def __init__(self, trunk: nn.Module, h_dim: int, z_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.mean = nn.Linear(h_dim, z_dim)
        self.logstd = nn.Linear(h_dim, z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)  # (B, h_dim)
        return self.mean(h), self.logstd(h)  # (B, Z), (B, Z)


class Decoder(nn.Module):
    """p(x|z) = Bernoulli(logits = out(h_theta(z))); PixelVAE adds PixelCNN on Concat[x, h]."""

    def __init__(
        self, trunk: nn.Module, out: nn.Module, pixel: PixelCNN | GatedPixelCNN | None = None
    ) -> None:
        super().__init__()
        self.trunk, self.out, self.pixel = trunk, out, pixel

    def hidden(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, Z) [, x (N, 784)] -> (N, 500) or (N, C, 28, 28), the input of `out`."""
        h = self.trunk(z)
        if self.pixel is None:
            return h
        if x is None:
            raise ValueError("the PixelVAE decoder needs x (it is autoregressive): pass x")
        return self.pixel(x, h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h).reshape(h.shape[0], X_DIM)  # (N, 784)


class VAE(nn.Module):
    """log p(x) >= E_q[log p(x|z) + log p_lambda(z) - log q(z|x)] (Eq. 5) with optional RNVPs."""

    def __init__(
        self,
        cfg: ModelConfig,
        encoder: Encoder,
        decoder: Decoder,
        prior_flow: RealNVP | None,
        posterior_flow: RealNVP | None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = encoder, decoder
        self.prior_flow, self.posterior_flow = prior_flow, posterior_flow
        # log p(x|z): "torch" (full logits), "triton" (fused last layer + Bernoulli kernel,
        # logits never stored) or "auto" (see `vaeprior.fast.backends`)
        self.loglik_backend = "auto"

    # ---- q(z|x), Eq. B.1 -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 784) -> mean, log_std, each (B, Z)."""
        return self.encoder(x)

    def posterior_sample(
        self, x: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """w = mean + exp(log_std) eps, z = f_eta(w); log q(z|x) = log q(w|x) - log|det f_eta|."""
        mean, log_std = self.encode(x)  # (B, Z)
        w = mean + torch.exp(log_std) * eps  # (S, B, Z)
        log_qw = unit_gaussian_log_prob(eps) - log_std.sum(-1)  # (S, B)
        if self.posterior_flow is None:
            return w, log_qw
        z, logdet = self.posterior_flow(w)
        return z, log_qw - logdet

    # ---- p(z), Eq. 4 -------------------------------------------------------------------------
    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p_lambda(z) = log N(f_lambda(z); 0, I) + log|det df/dz|: (..., Z) -> (...)."""
        if self.prior_flow is None:
            return unit_gaussian_log_prob(z)
        w, logdet = self.prior_flow(z)
        return unit_gaussian_log_prob(w) + logdet

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = f_lambda^{-1}(w), w ~ N(0, I): (n, Z)."""
        p = next(self.parameters())
        w = torch.randn(n, self.cfg.z_dim, generator=generator, dtype=p.dtype, device=p.device)
        if self.prior_flow is None:
            return w
        return self.prior_flow.inverse(w)[0]

    # ---- p(x|z) ------------------------------------------------------------------------------
    def decoder_hidden(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """z (..., Z) -> last hidden activations of all flattened rows: (N, 500) or (N, C, 28, 28).

        For PixelVAE, x (B, 784) is repeated to the N = S * B sample-major rows.
        """
        zf = z.reshape(-1, z.shape[-1])  # (S*B, Z)
        xf = None
        if x is not None and self.decoder.pixel is not None:
            if zf.shape[0] % x.shape[0]:
                raise ValueError(f"z rows {zf.shape[0]} are not a multiple of x rows {x.shape[0]}")
            xf = x.repeat(zf.shape[0] // x.shape[0], 1)  # (S*B, 784), row s*B + b = x[b]
        return self.decoder.hidden(zf, xf)

    def decoder_logits(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli logits of p(x|z): z (S, B, Z) -> (S, B, 784) (any leading shape)."""
        h = self.decoder_hidden(z, x)
        return self.decoder.logits(h).reshape(*z.shape[:-1], X_DIM)

    @torch.no_grad()
    def sample_x(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z) for z (N, Z) -> (N, 784): x_k = [u_k < sigmoid(l_k)], u ~ U(0, 1)^784.

        PixelVAE samples autoregressively in raster order, l_k computed from x_{<k}.
        """
        u = torch.rand(z.shape[0], X_DIM, generator=generator, dtype=z.dtype, device=z.device)
        if self.decoder.pixel is None:
            return (u < torch.sigmoid(self.decoder_logits(z))).to(z.dtype)
        return self._sample_pixels(self.decoder.trunk(z), u)

    def _sample_pixels(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Raster order, one PixelCNN pass (over a window of rows) per pixel."""
        pixel, side = self.decoder.pixel, h.shape[-1]
        x = h.new_zeros(h.shape[0], 1, side, side)  # (N, 1, 28, 28)
        for i in range(side):
            for j in range(side):
                out = pixel.row(x, h, i)[:, :, j, None, None]  # (N, C, 1, 1)
                logit = self.decoder.out(out).reshape(-1)  # (N,)
                x[:, 0, i, j] = (u[:, i * side + j] < torch.sigmoid(logit)).to(x.dtype)
        return x.reshape(h.shape[0], X_DIM)

    # ---- objectives, Eqs. 1-5 and Appendix B.3 ----------------------------------------------
    def log_weights(
        self, x: torch.Tensor, eps: torch.Tensor, *, unit_prior: bool = False
    ) -> dict[str, torch.Tensor]:
        """log p(x|z), log p(z), log q(z|x) (each (S, B)) and z (S, B, Z), z ~ q(z|x) via eps.

        `unit_prior` scores z under N(0, I) instead of the model's prior (the standard-VAE
        stages of post-hoc and iterative training, Appendix B.3).
        """
        z, log_qz = self.posterior_sample(x, eps)  # (S, B, Z), (S, B)
        log_pz = unit_gaussian_log_prob(z) if unit_prior else self.prior_log_prob(z)
        log_px_z = self.log_px_z(z, x)  # (S, B)
        return {"log_px_z": log_px_z, "log_pz": log_pz, "log_qz": log_qz, "z": z}

    def log_px_z(
        self, z: torch.Tensor, x: torch.Tensor, backend: str | None = None
    ) -> torch.Tensor:
        """log p(x|z) = sum_d x_d l_d - softplus(l_d): z (S, B, Z), x (B, 784) -> (S, B).

        backend (default `self.loglik_backend`, resolved by `vaeprior.fast.backends`): "torch"
        computes the (S, B, 784) logits; "triton" fuses the output layer with the Bernoulli sum
        (`kernels.iw_nll`), so the logits never exist in memory.
        """
        if backends.resolve(backend or self.loglik_backend, z, "iw_nll") == "torch":
            return bernoulli_log_prob(x, self.decoder_logits(z, x))
        k = backends.kernels("iw_nll")
        out = self.decoder.out
        loglik = k.bernoulli_loglik if isinstance(out, nn.Linear) else k.bernoulli_loglik_conv1x1
        h = self.decoder_hidden(z, x)  # (S*B, H) or (S*B, C, 28, 28)
        return loglik(h, out.weight, out.bias, x).view(z.shape[:-1])

    def elbo(self, x: torch.Tensor, eps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """mean_s[log p(x|z) + beta (log p(z) - log q(z|x))] per x (warm-up ELBO, B.3): (B,)."""
        lw = self.log_weights(x, eps)
        return (lw["log_px_z"] + beta * (lw["log_pz"] - lw["log_qz"])).mean(0)

    def iw_nll(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """-LogMeanExp_s[log p(x|z) + log p(z) - log q(z|x)] per x (Appendix B.3): (B,)."""
        lw = self.log_weights(x, eps)
        return -log_mean_exp(lw["log_px_z"] + lw["log_pz"] - lw["log_qz"], dim=0)

    # ---- parameter sets for training ---------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of q(w|x), p(x|z), the prior flow and the posterior flow (for freezing)."""
        return {
            "encoder": list(self.encoder.parameters()),
            "decoder": list(self.decoder.parameters()),
            "prior": _params(self.prior_flow),
            "posterior_flow": _params(self.posterior_flow),
        }

    def l2_parameters(self) -> list[nn.Parameter]:
        """Kernels of non-linear hidden layers (h_phi, h_theta, PixelCNN, coupling Dense[256]).

        Excludes the Linear mean/log-std heads, the output layer, biases, ActNorm,
        InvertibleDense W and the coupling's linear S, T heads (Appendix B.3).
        """
        return [p for _, p in self.named_l2_parameters()]

    def named_l2_parameters(self) -> list[tuple[str, nn.Parameter]]:
        hidden = [("encoder.trunk", self.encoder.trunk), ("decoder.trunk", self.decoder.trunk)]
        if self.decoder.pixel is not None:
            hidden.append(("decoder.pixel", self.decoder.pixel))
        out = [
            (f"{prefix}.{n}", p)
            for prefix, mod in hidden
            for n, p in mod.named_parameters()
            if p.ndim >= 2
        ]
        for prefix, flow in (
            ("prior_flow", self.prior_flow),
            ("posterior_flow", self.posterior_flow),
        ):
            if flow is not None:
                out.append((f"{prefix}.A", flow.A))  # coupling Dense[256] kernels (K, Dl, H)
        return out


def _params(module: nn.Module | None) -> list[nn.Parameter]:
    return [] if module is None else list(module.parameters())


def _flow(cfg: ModelConfig, kind: str) -> RealNVP | None:
    if kind != "rnvp":
        return None
    return RealNVP(cfg.z_dim, cfg.flow_depth, cfg.flow_hidden, cfg.leaky_slope, cfg.scale_shift)


def _networks(cfg: ModelConfig) -> tuple[Encoder, Decoder]:
    z, s = cfg.z_dim, cfg.leaky_slope
    if cfg.model == "dense":
        enc = Encoder(DenseTrunk(X_DIM, cfg.hidden, s), cfg.hidden, z)
        return enc, Decoder(DenseTrunk(z, cfg.hidden, s), nn.Linear(cfg.hidden, X_DIM))
    if cfg.model == "conv":
        enc = Encoder(ConvEncoderTrunk(slope=s), X_DIM, z)
        return enc, Decoder(ConvDecoderTrunk(z, slope=s), nn.Conv2d(32, 1, 1))
    enc = Encoder(resnet_encoder_trunk(s), X_DIM, z)
    if cfg.model == "resnet":
        return enc, Decoder(resnet_decoder_trunk(z, s), nn.Conv2d(32, 1, 1))
    pixel_cls = PixelCNN if cfg.pixelcnn == "paper" else GatedPixelCNN
    pixel = pixel_cls(32, 3, cfg.dropout, s)
    return enc, Decoder(resnet_decoder_trunk(z, s), nn.Conv2d(pixel.channels, 1, 1), pixel)


def build_vae(cfg: ModelConfig) -> VAE:
    """The model of `cfg` (Appendix B.2), float32 on CPU; `.to(device, dtype)` it as needed.

    Encoder and decoder start Glorot-uniform with zero biases (`vaeprior.fast.models.init`), as
    the NumPy reference and the authors' library do; the flows keep their own initialisation.
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build_vae needs a ModelConfig, got {type(cfg).__name__}")
    enc, dec = _networks(cfg)
    glorot_init_(enc)
    glorot_init_(dec)
    return VAE(cfg, enc, dec, _flow(cfg, cfg.prior), _flow(cfg, cfg.posterior))


__all__ = ["VAE", "Decoder", "Encoder", "build_vae"]
