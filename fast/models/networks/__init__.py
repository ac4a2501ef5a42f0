"""Encoder/decoder trunks h_phi, h_theta of the four architectures (Appendix B.2)."""

from vaeprior.fast.models.networks.conv import ConvDecoderTrunk, ConvEncoderTrunk
from vaeprior.fast.models.networks.dense import DenseTrunk
from vaeprior.fast.models.networks.pixelcnn import GatedPixelCNN, PixelCNN
from vaeprior.fast.models.networks.resnet import (
    ResBlock,
    resnet_decoder_trunk,
    resnet_encoder_trunk,
)

__all__ = [
    "ConvDecoderTrunk",
    "ConvEncoderTrunk",
    "DenseTrunk",
    "GatedPixelCNN",
    "PixelCNN",
    "ResBlock",
    "resnet_decoder_trunk",
    "resnet_encoder_trunk",
]
