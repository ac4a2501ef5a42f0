"""ResnetVAE trunks (Appendix B.2): the ConvVAE shapes with (de)convolutional residual blocks.

A block is pre-activation, as in the authors' tfsnippet `resnet_conv2d_block`:
out = shortcut(x) + conv2(act(conv1(act(x)))), the shortcut a 1x1 (de)convolution where the
shape changes and the identity otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaeprior.fast.models.networks.conv import ConvDecoderTrunk, ConvEncoderTrunk, conv3x3
from vaeprior.reference.config import LEAKY_SLOPE


class ResBlock(nn.Module):
    """Two 3x3 (de)convolutions and a shortcut; `stride` 2 halves (doubles when transposed) H, W."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, transposed: bool, slope: float = LEAKY_SLOPE
    ) -> None:
        super().__init__()
        self.slope = slope
        self.conv1 = conv3x3(c_in, c_out, stride, transposed)
        self.conv2 = conv3x3(c_out, c_out, 1, transposed)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            if transposed:
                self.shortcut = nn.ConvTranspose2d(
                    c_in, c_out, 1, stride, output_padding=stride - 1
                )
            else:
                self.shortcut = nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv1(F.leaky_relu(x, self.slope))
        r = self.conv2(F.leaky_relu(r, self.slope))
        return self.shortcut(x) + r


def resnet_encoder_trunk(slope: float = LEAKY_SLOPE) -> ConvEncoderTrunk:
    """Resnet[28x28x32 -> ... -> 7x7x16] -> Flatten: (N, 784) -> (N, 784)."""
    return ConvEncoderTrunk(block=ResBlock, slope=slope)


def resnet_decoder_trunk(z_dim: int, slope: float = LEAKY_SLOPE) -> ConvDecoderTrunk:
    """Dense[784] -> UnFlatten[7x7x16] -> DeResnet[... -> 28x28x32]: (N, Z) -> (N, 32, 28, 28)."""
    return ConvDecoderTrunk(z_dim, block=ResBlock, slope=slope)
