"""PixelCNN layers of PixelVAE (Appendix B.2; Salimans et al. 2017, PixelCNN++), two variants.

Both take Concat[x, h~(z)] (33 channels, 28x28; h~(z) the ResnetVAE decoder trunk) and keep two
streams, as in PixelCNN++: a vertical one that sees only rows strictly above a pixel
(down-shifted convolutions) and a horizontal one that sees the rows above plus the pixels to
its left in the same row (down-right-shifted convolutions). h~(z) does not depend on x, so
the output at pixel (i, j) depends only on x at pixels strictly before (i, j) in raster order.

`PixelCNN` ("paper", the default, `ModelConfig.pixelcnn`) is Appendix B.2's
h_theta(z) = Concat[x, h~(z)] -> PixelCNN[28x28x33 -> 28x28x33 -> 28x28x33]: the input is shifted
once (down for the vertical stream, right for the horizontal one), then each of the three layers
is a pair of residual blocks, "resnet layers, instead of convolution layers", as the authors'
library tfsnippet builds them (`pixelcnn_conv2d_resnet`, not gated): per stream
out = in + conv_1(act(dropout(r))) with r = conv_0(act(in)), and for the horizontal stream
r = act(conv_0(act(in))) + Conv1x1(new vertical). Dropout 0.5, LeakyReLU. The output is the
horizontal stream; h~(z) enters only through the concatenated input.

`GatedPixelCNN` ("gated", the decoder of runs saved before the option existed) differs in three
ways: the first layer is PixelCNN++'s input stage (a (2,3) down-shifted conv for the vertical
stream, (1,3) + (2,1) convs for the horizontal one) instead of a plain shift; every residual
block is gated, x + a * sigmoid(b) with [a, b] = conv_1(...); and h~(z) is added again inside
every block through its own 1x1 convolution, so each pixel sees h~(z) at its own position (in
the paper's form a pixel sees h~(z) only at the positions before it, since the shift moves x
and h~(z) together). Its output also passes through a final LeakyReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaeprior.reference.config import LEAKY_SLOPE


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (zeros in row 0): output row i holds input row i-1."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right (zeros in column 0)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class DownShiftedConv(nn.Module):
    """Conv whose output at (i, j) sees rows i-kh+1..i and columns j-(kw-1)/2..j+(kw-1)/2."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int] = (2, 3)) -> None:
        super().__init__()
        self.kh, self.kw = kernel
        self.conv = nn.Conv2d(c_in, c_out, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = (self.kw - 1) // 2
        return self.conv(F.pad(x, (half, half, self.kh - 1, 0)))


class DownRightShiftedConv(nn.Module):
    """Conv whose output at (i, j) sees rows i-kh+1..i and columns j-kw+1..j."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.kh, self.kw = kernel
        self.conv = nn.Conv2d(c_in, c_out, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.kw - 1, 0, self.kh - 1, 0)))


class _RowWindow(nn.Module):
    """A causal PixelCNN whose output row i depends on at most `rows_above` rows above it."""

    rows_above: int

    def row(self, x: torch.Tensor, h: torch.Tensor, i: int) -> torch.Tensor:
        """Output row i from the `rows_above` rows above it only: x (N, 1, 28, 28) -> (N, C, 28)."""
        top = max(0, i - self.rows_above)
        return self(x[:, :, top : i + 1], h[:, :, top : i + 1])[:, :, -1]


def _concat(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Concat[x, h~(z)]: x (N, 784) or (N, 1, R, 28), h (N, C, R, 28) -> (N, 1 + C, R, 28)."""
    x = x.reshape(h.shape[0], 1, h.shape[2], h.shape[3]).to(h.dtype)
    return torch.cat([x, h], dim=1)


class PixelCNNLayer(nn.Module):
    """One PixelCNN layer of Appendix B.2 (tfsnippet `pixelcnn_conv2d_resnet`, not gated).

    v' = v + conv_v1(act(dropout(conv_v0(act(v)))))
    h' = h + conv_h1(act(dropout(act(conv_h0(act(h))) + nin(v'))))
    conv_v*: (2, 3) down-shifted; conv_h*: (2, 2) down-right-shifted; nin: 1x1. C -> C channels.
    """

    def __init__(self, channels: int, dropout: float, slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        c, self.slope = channels, slope
        self.v_conv0, self.v_conv1 = DownShiftedConv(c, c, (2, 3)), DownShiftedConv(c, c, (2, 3))
        self.h_conv0 = DownRightShiftedConv(c, c, (2, 2))
        self.h_conv1 = DownRightShiftedConv(c, c, (2, 2))
        self.nin = nn.Conv2d(c, c, 1)  # vertical -> horizontal
        self.dropout = nn.Dropout(dropout)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v, h (N, C, R, 28) -> v', h' (N, C, R, 28)."""
        v = v + self.v_conv1(self._act(self.dropout(self.v_conv0(self._act(v)))))
        r = self._act(self.h_conv0(self._act(h))) + self.nin(v)
        return v, h + self.h_conv1(self._act(self.dropout(r)))

    def _act(self, t: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(t, self.slope)


class PixelCNN(_RowWindow):
    """PixelCNN[28x28x33 -> 28x28x33 -> 28x28x33] on Concat[x, h~(z)] (Appendix B.2, "paper").

    Returns the horizontal stream of the last layer, (N, 33, 28, 28).
    """

    def __init__(
        self, c_cond: int = 32, n_layers: int = 3, dropout: float = 0.5, slope: float = LEAKY_SLOPE
    ) -> None:
        super().__init__()
        self.channels = 1 + c_cond  # Concat[x, h~(z)]
        self.layers = nn.ModuleList(
            PixelCNNLayer(self.channels, dropout, slope) for _ in range(n_layers)
        )
        # Rows above a pixel that can reach its output: the first down_shift 1, every conv
        # kh - 1 = 1 (an upper bound: the sum over all convs, not the longest path).
        self.rows_above = 1 + 4 * n_layers

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (N, 784) or (N, 1, R, 28) binary image, h (N, 32, R, 28) trunk -> (N, 33, R, 28).

        Rows are causal, so the first R < 28 rows of an image give the first R output rows.
        """
        xh = _concat(x, h)  # (N, 33, R, 28)
        v, hz = down_shift(xh), right_shift(xh)
        for layer in self.layers:
            v, hz = layer(v, hz)
        return hz


class GatedResnet(nn.Module):
    """x + a * sigmoid(b), [a, b] = conv2(dropout(act(conv1(act(x)) + nin(act(aux)) + cond(h))))."""

    def __init__(
        self, channels: int, conv: type[nn.Module], c_aux: int, c_cond: int, dropout: float,
        slope: float = LEAKY_SLOPE,
    ) -> None:  # fmt: skip
        super().__init__()
        self.slope = slope
        self.conv1 = conv(channels, channels)
        self.nin = nn.Conv2d(c_aux, channels, 1) if c_aux else None
        self.cond = nn.Conv2d(c_cond, channels, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(channels, 2 * channels)

    def forward(self, x: torch.Tensor, h: torch.Tensor, aux: torch.Tensor | None = None):
        c = self.conv1(F.leaky_relu(x, self.slope)) + self.cond(h)
        if self.nin is not None:
            c = c + self.nin(F.leaky_relu(aux, self.slope))
        c = self.conv2(self.dropout(F.leaky_relu(c, self.slope)))
        a, b = c.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class GatedPixelCNN(_RowWindow):
    """The "gated" variant (see the module docstring) on Concat[x, h]: returns (N, 33, 28, 28)."""

    def __init__(
        self, c_cond: int = 32, n_layers: int = 3, dropout: float = 0.5, slope: float = LEAKY_SLOPE
    ) -> None:
        super().__init__()
        c = 1 + c_cond  # Concat[x, h~(z)]
        self.channels, self.slope = c, slope
        self.u_init = DownShiftedConv(c, c, (2, 3))
        self.ul_init_up = DownShiftedConv(c, c, (1, 3))
        self.ul_init_left = DownRightShiftedConv(c, c, (2, 1))
        # Rows above a pixel that can reach its output: every conv adds kh - 1, every down_shift 1
        # (an upper bound: the sum over all layers, not the longest path).
        self.rows_above = 2 + 4 * n_layers
        self.u_layers = nn.ModuleList(
            GatedResnet(c, DownShiftedConv, 0, c_cond, dropout, slope) for _ in range(n_layers)
        )
        self.ul_layers = nn.ModuleList(
            GatedResnet(c, DownRightShiftedConv, c, c_cond, dropout, slope) for _ in range(n_layers)
        )

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (N, 784) or (N, 1, R, 28) binary image, h (N, 32, R, 28) trunk -> (N, 33, R, 28).

        Rows are causal, so the first R < 28 rows of an image give the first R output rows.
        """
        xh = _concat(x, h)  # (N, 33, R, 28)
        u = down_shift(self.u_init(xh))
        ul = down_shift(self.ul_init_up(xh)) + right_shift(self.ul_init_left(xh))
        for u_layer, ul_layer in zip(self.u_layers, self.ul_layers, strict=True):
            u = u_layer(u, h)
            ul = ul_layer(ul, h, aux=u)
        return F.leaky_relu(ul, self.slope)
