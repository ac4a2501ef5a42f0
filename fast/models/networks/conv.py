"""ConvVAE trunks (Appendix B.2), 3x3 kernels, strides from the shapes, LeakyReLU everywhere.

h_phi  = Conv[28x28x32 -> 28x28x32 -> 14x14x64 -> 14x14x64 -> 7x7x64 -> 7x7x16] -> Flatten
h_theta = Dense[784] -> UnFlatten[7x7x16] -> DeConv[7x7x64 -> 14x14x64 -> 14x14x64
          -> 28x28x32 -> 28x28x32]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaeprior.reference.config import LEAKY_SLOPE

# (out channels, stride) of each layer; the input is 28x28x1 (encoder) or 7x7x16 (decoder).
ENCODER_LAYERS = ((32, 1), (32, 1), (64, 2), (64, 1), (64, 2), (16, 1))
DECODER_LAYERS = ((64, 1), (64, 2), (64, 1), (32, 2), (32, 1))
UNFLAT_SHAPE = (16, 7, 7)  # UnFlatten[7x7x16], channels first
FLAT_DIM = 16 * 7 * 7  # 784


def conv3x3(c_in: int, c_out: int, stride: int, transposed: bool) -> nn.Module:
    """3x3 convolution (or deconvolution) that divides (multiplies) height and width by `stride`."""
    if transposed:
        return nn.ConvTranspose2d(c_in, c_out, 3, stride, padding=1, output_padding=stride - 1)
    return nn.Conv2d(c_in, c_out, 3, stride, padding=1)


class ConvStack(nn.Module):
    """Non-linear (de)convolution layers: LeakyReLU(conv(x)) for each (channels, stride)."""

    def __init__(self, c_in: int, layers, transposed: bool, slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        self.slope = slope
        convs = []
        for c_out, stride in layers:
            convs.append(conv3x3(c_in, c_out, stride, transposed))
            c_in = c_out
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.slope)
        return x


class ConvEncoderTrunk(nn.Module):
    """h_phi(x): (N, 784) -> (N, 784) through 6 conv layers and Flatten (B.2)."""

    def __init__(self, block: type[nn.Module] | None = None, slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        self.body = _stack(1, ENCODER_LAYERS, False, block, slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x.reshape(-1, 1, 28, 28))  # (N, 16, 7, 7)
        return h.flatten(1)  # (N, 784)


class ConvDecoderTrunk(nn.Module):
    """h_theta(z): (N, Z) -> (N, 32, 28, 28) via Dense[784], UnFlatten and 5 deconv layers (B.2)."""

    def __init__(
        self, z_dim: int, block: type[nn.Module] | None = None, slope: float = LEAKY_SLOPE
    ) -> None:
        super().__init__()
        self.slope = slope
        self.dense = nn.Linear(z_dim, FLAT_DIM)
        self.body = _stack(UNFLAT_SHAPE[0], DECODER_LAYERS, True, block, slope)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.dense(z), self.slope)  # (N, 784)
        return self.body(h.reshape(-1, *UNFLAT_SHAPE))  # (N, 32, 28, 28)


def _stack(c_in: int, layers, transposed: bool, block, slope: float) -> nn.Module:
    """A ConvStack, or a chain of residual `block`s with the same shapes (ResnetVAE)."""
    if block is None:
        return ConvStack(c_in, layers, transposed, slope)
    mods = []
    for c_out, stride in layers:
        mods.append(block(c_in, c_out, stride, transposed, slope))
        c_in = c_out
    return nn.Sequential(*mods)
