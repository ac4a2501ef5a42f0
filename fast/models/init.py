"""The one initialisation scheme of the encoder and decoder: Glorot-uniform kernels, zero biases.

This is what the authors' library (tfsnippet, TensorFlow's `glorot_uniform` default) and the NumPy
reference (`vaeprior.reference.dense_vae.init_params`) do: every kernel W ~ U(-a, a) with
a = sqrt(6 / (fan_in + fan_out)), i.e. standard deviation sqrt(2 / (fan_in + fan_out)), and every
bias 0. For a convolution kernel the fans include the receptive field (fan_in = C_in kh kw,
fan_out = C_out kh kw), as `torch.nn.init.xavier_uniform_` and TensorFlow compute them; for a
transposed convolution torch swaps the two, which leaves their sum, and so the scheme, unchanged.

The Real NVP flows keep their own documented initialisation (DESIGN.md: orthogonal W, Glorot A,
zero heads, data-dependent ActNorm); `glorot_init_` is applied to the encoder and decoder only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)  # every layer with a kernel in h_phi, h_theta


def glorot_std(weight: torch.Tensor) -> float:
    """sqrt(2 / (fan_in + fan_out)) of a Linear (out, in) or conv (C_out, C_in, kh, kw) kernel
    (a transposed conv stores (C_in, C_out, kh, kw): the sum of the fans is the same)."""
    if weight.ndim < 2:
        raise ValueError(f"a kernel has >= 2 dimensions, got shape {tuple(weight.shape)}")
    receptive = math.prod(weight.shape[2:])  # kh * kw (1 for a Linear)
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    return math.sqrt(2.0 / (fan_in + fan_out))


@torch.no_grad()
def glorot_init_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Glorot-uniform kernels and zero biases for every Linear / (transposed) Conv2d in `module`.

    Draws from `generator` (torch's global RNG when None), layer by layer in module order.
    Returns `module`.
    """
    for layer in module.modules():
        if isinstance(layer, LAYERS):
            bound = math.sqrt(3.0) * glorot_std(layer.weight)  # U(-a, a) has std a / sqrt(3)
            layer.weight.uniform_(-bound, bound, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
    return module


__all__ = ["LAYERS", "glorot_init_", "glorot_std"]
