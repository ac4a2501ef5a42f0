"""PixelCNN layers of PixelVAE (Appendix B.2; Salimans et al. 2017, PixelCNN++).

The decoder input is Concat[x, h~(z)] (33 channels, 28x28). Two streams are kept, as in
PixelCNN++: `u` sees only rows strictly above a pixel (down-shifted convolutions) and `ul`
sees rows above plus the pixels to its left in the same row (down-right-shifted
convolutions). Each of the three layers is a pair of gated residual blocks (dropout 0.5),
conditioned at every position on h~(z), which does not depend on x. The output at pixel
(i, j) therefore depends only on x at pixels strictly before (i, j) in raster order.
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


class PixelCNN(nn.Module):
    """PixelCNN[28x28x33 -> 28x28x33 -> 28x28x33] on Concat[x, h]: returns (N, 33, 28, 28)."""

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
        x = x.reshape(h.shape[0], 1, h.shape[2], h.shape[3]).to(h.dtype)
        xh = torch.cat([x, h], dim=1)  # (N, 33, R, 28)
        u = down_shift(self.u_init(xh))
        ul = down_shift(self.ul_init_up(xh)) + right_shift(self.ul_init_left(xh))
        for u_layer, ul_layer in zip(self.u_layers, self.ul_layers, strict=True):
            u = u_layer(u, h)
            ul = ul_layer(ul, h, aux=u)
        return F.leaky_relu(ul, self.slope)

    def row(self, x: torch.Tensor, h: torch.Tensor, i: int) -> torch.Tensor:
        """Output row i from the `rows_above` rows above it only: x (N, 1, 28, 28) -> (N, C, 28)."""
        top = max(0, i - self.rows_above)
        return self(x[:, :, top : i + 1], h[:, :, top : i + 1])[:, :, -1]
