"""DenseVAE trunks (Appendix B.2): h_phi = Dense[500 -> 500], h_theta = Dense[500 -> 500]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaeprior.reference.config import LEAKY_SLOPE


class DenseTrunk(nn.Module):
    """Two non-linear dense layers `l1`, `l2` (LeakyReLU): (N, in_dim) -> (N, hidden)."""

    def __init__(self, in_dim: int, hidden: int = 500, slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        self.slope = slope
        self.l1 = nn.Linear(in_dim, hidden)
        self.l2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.l1(x), self.slope)  # (N, hidden)
        return F.leaky_relu(self.l2(h), self.slope)  # (N, hidden)
