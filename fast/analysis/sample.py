"""`vaeprior sample`: a grid of images x ~ p(x|z), z ~ p_λ(z) (the paper's sample figures)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from vaeprior.fast.runs import load_run


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("vaeprior sample needs matplotlib: pip install 'vaeprior[plot]'") from None
    return plt


def grid(images: torch.Tensor, cols: int) -> torch.Tensor:
    """(n, 784) images in [0, 1] -> one (rows*28, cols*28) tiled image (blank cells at the end)."""
    n = images.shape[0]
    rows = math.ceil(n / cols)
    padded = torch.zeros(rows * cols, 784, dtype=images.dtype)
    padded[:n] = images.cpu()
    tiles = padded.view(rows, cols, 28, 28).permute(0, 2, 1, 3)  # (rows, 28, cols, 28)
    return tiles.reshape(rows * 28, cols * 28)


@torch.no_grad()
def sample_images(vae: torch.nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """n samples (n, 784): Bernoulli means for factorized decoders, sampled pixels for PixelVAE."""
    dev = next(vae.parameters()).device
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    z = vae.prior_sample(n, generator=gen)  # (n, Z)
    if vae.decoder.pixel is not None:
        return vae.sample_x(z, generator=gen)  # autoregressive over the 784 pixels
    return torch.sigmoid(vae.decoder_logits(z))


def sample_grid(
    run_dir: str | Path, *, n: int = 100, out: str | Path, seed: int = 0, device: str | None = None
) -> Path:
    """Write a PNG grid of `n` samples of the run's model to `out`."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    plt = _pyplot()
    vae, _ = load_run(run_dir, device)
    img = grid(sample_images(vae, n, seed), cols=math.ceil(math.sqrt(n)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(out, img.numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    return out
