"""The DenseVAE of Appendix B.2 as plain functions of a parameter dict (DESIGN.md's keys).

Encoder h_phi: x -> Dense[500] -> Dense[500] -> Linear heads (mean, log-std) of q_phi(z|x).
Decoder h_theta: z -> Dense[500] -> Dense[500] -> Linear[784] Bernoulli logits of p_theta(x|z).
Dense = LeakyReLU(x @ W + b), W shaped (in, out). Prior / posterior: unit Gaussian or Real NVP.
"""

from __future__ import annotations

import numpy as np

from .config import VAEConfig
from .distributions import gaussian_log_prob, leaky_relu, unit_gaussian_log_prob
from .flows import RealNVP, flow_posterior, flow_prior_log_prob, glorot_uniform

Params = dict[str, np.ndarray]


def layer_shapes(cfg: VAEConfig) -> dict[str, tuple[int, int]]:
    """(in, out) of every Dense / Linear layer of the encoder and decoder."""
    X, H, Z = cfg.x_dim, cfg.hidden, cfg.z_dim
    return {
        "enc.l1": (X, H),
        "enc.l2": (H, H),
        "enc.mean": (H, Z),
        "enc.logstd": (H, Z),
        "dec.l1": (Z, H),
        "dec.l2": (H, H),
        "dec.out": (H, X),
    }


def init_params(cfg: VAEConfig, rng: np.random.Generator, zero_init: bool = True) -> Params:
    """Glorot-uniform W, zero b; flows as `RealNVP.random`.

    zero_init=False also draws every bias (and the flows' zero-init parameters) ~ N(0, 0.1^2),
    so that tests exercise every parameter.
    """
    params: Params = {}
    for name, (fan_in, fan_out) in layer_shapes(cfg).items():
        params[f"{name}.W"] = glorot_uniform(fan_in, fan_out, rng)
        b = np.zeros(fan_out) if zero_init else 0.1 * rng.standard_normal(fan_out)
        params[f"{name}.b"] = b
    for prefix in ("prior", "posterior"):
        if getattr(cfg, prefix) == "rnvp":
            flow = RealNVP.random(
                cfg.z_dim,
                cfg.flow_depth,
                rng,
                cfg.flow_hidden,
                cfg.leaky_slope,
                cfg.scale_shift,
                zero_init,
            )
            params.update(flow.to_params(prefix))
    return params


def flow(params: Params, cfg: VAEConfig, prefix: str) -> RealNVP:
    """The prior ("prior") or posterior ("posterior") Real NVP stored in `params`."""
    return RealNVP.from_params(params, prefix, cfg.flow_depth, cfg.leaky_slope, cfg.scale_shift)


def linear(params: Params, name: str, x: np.ndarray) -> np.ndarray:
    """x @ W + b for the layer `name`; x (..., in) -> (..., out)."""
    return x @ params[f"{name}.W"] + params[f"{name}.b"]


def dense(params: Params, cfg: VAEConfig, name: str, x: np.ndarray) -> np.ndarray:
    """LeakyReLU(x @ W + b): one non-linear Dense layer."""
    return leaky_relu(linear(params, name, x), cfg.leaky_slope)


def encode(params: Params, cfg: VAEConfig, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h_phi(x): mean and log-std of q_phi(z|x) (or of q(w|x) for an RNVP posterior)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != cfg.x_dim:
        raise ValueError(f"x must be shaped (B, {cfg.x_dim}), got {x.shape}: flatten the images")
    h = dense(params, cfg, "enc.l2", dense(params, cfg, "enc.l1", x))  # (B, H)
    return linear(params, "enc.mean", h), linear(params, "enc.logstd", h)  # (B, Z), (B, Z)


def decoder_hidden(params: Params, cfg: VAEConfig, z: np.ndarray) -> np.ndarray:
    """The last hidden activations of h_theta(z); z (..., Z) -> (..., 500)."""
    z = np.asarray(z, dtype=np.float64)
    return dense(params, cfg, "dec.l2", dense(params, cfg, "dec.l1", z))


def decode_logits(params: Params, cfg: VAEConfig, z: np.ndarray) -> np.ndarray:
    """Bernoulli logits of p_theta(x|z); z (..., Z) -> (..., 784)."""
    return linear(params, "dec.out", decoder_hidden(params, cfg, z))


def prior_log_prob(params: Params, cfg: VAEConfig, z: np.ndarray) -> np.ndarray:
    """log p(z): unit Gaussian (Eq. 3) or the RNVP prior p_lambda(z) (Eq. 4); (..., Z) -> (...)."""
    if cfg.prior == "rnvp":
        return flow_prior_log_prob(flow(params, cfg, "prior"), z)
    return unit_gaussian_log_prob(z)


def posterior_sample(
    params: Params, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """z ~ q(z|x) by reparameterisation, and log q(z|x); eps (S, B, Z) -> (S, B, Z), (S, B).

    Gaussian: z = mean + exp(log_std) * eps (Eq. 3). RNVP: w drawn so, z = f_eta(w) (Eq. B.1).
    """
    mean, log_std = encode(params, cfg, x)  # (B, Z), (B, Z)
    eps = np.asarray(eps, dtype=np.float64)
    if eps.ndim != 3 or eps.shape[1:] != mean.shape:
        raise ValueError(
            f"eps must be shaped (S, {mean.shape[0]}, {mean.shape[1]}), got {eps.shape}"
        )
    w = mean + np.exp(log_std) * eps  # (S, B, Z)
    log_qw = gaussian_log_prob(w, mean, log_std)  # (S, B)
    if cfg.posterior == "rnvp":
        return flow_posterior(flow(params, cfg, "posterior"), w, log_qw)
    return w, log_qw
