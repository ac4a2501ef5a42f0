"""Encoder/decoder trunks h_phi, h_theta of the four architectures (Appendix B.2)."""

from vaeprior.fast.networks.conv import ConvDecoderTrunk, ConvEncoderTrunk
from vaeprior.fast.networks.dense import DenseTrunk
from vaeprior.fast.networks.pixelcnn import PixelCNN
from vaeprior.fast.networks.resnet import ResBlock, resnet_decoder_trunk, resnet_encoder_trunk

__all__ = [
    "ConvDecoderTrunk",
    "ConvEncoderTrunk",
    "DenseTrunk",
    "PixelCNN",
    "ResBlock",
    "resnet_decoder_trunk",
    "resnet_encoder_trunk",
]
