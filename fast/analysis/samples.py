"""Fig. 1 / B.1-B.3: samples of the model, z ~ p_lambda(z), and `vaeprior sample`'s PNG grid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeprior.fast import runs
from vaeprior.fast.analysis import plots
from vaeprior.fast.analysis.common import Array, generator, to_numpy, write_outputs
from vaeprior.fast.analysis.densities import decode_means
from vaeprior.reference import analysis as ref


@torch.no_grad()
def samples_figure(
    vae: torch.nn.Module, train: Array, *, rows: int = 6, cols: int = 6, seed: int = 0
) -> dict[str, Any]:
    """rows x (cols-1) Bernoulli means decoded from z ~ p_lambda(z) (prior flow inverse), and per
    row the training image closest in pixel L2 to the row's last sample (Fig. 1, B.1-B.3)."""
    if rows < 1 or cols < 2:
        raise ValueError(f"samples grid needs rows >= 1 and cols >= 2, got {rows}x{cols}")
    g = generator(vae, seed)
    z = vae.prior_sample(rows * (cols - 1), generator=g)  # (R*(C-1), Z), row-major grid
    means = decode_means(vae, z, g).reshape(rows, cols - 1, -1)
    idx, dist = ref.nearest_neighbours(means[:, -1], np.asarray(train))
    return {
        "means": means,
        "nearest": np.asarray(train[idx], dtype=np.float64),
        "nearest_index": idx,
        "nearest_distance": dist,
        "log_pz": to_numpy(vae.prior_log_prob(z)).reshape(rows, cols - 1),
    }


@torch.no_grad()
def sample_images(vae: torch.nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """n samples (n, 784): Bernoulli means for factorized decoders, sampled pixels for PixelVAE."""
    g = generator(vae, seed)
    z = vae.prior_sample(n, generator=g)  # (n, Z)
    if vae.decoder.pixel is not None:
        return vae.sample_x(z, generator=g)  # autoregressive over the 784 pixels
    return torch.sigmoid(vae.decoder_logits(z))


def save_samples_png(
    run_dir: str | Path, *, n: int = 100, out: str | Path, seed: int = 0, device: str | None = None
) -> Path:
    """`vaeprior sample`: a PNG of `n` samples of the run's model, ceil(sqrt(n)) per row."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    try:
        plots.require_matplotlib()
    except ImportError as e:  # before loading anything
        raise ValueError(str(e)) from None
    vae, _ = runs.load_run(run_dir, device)
    cols = math.ceil(math.sqrt(n))
    cells = np.zeros((math.ceil(n / cols) * cols, 784))  # blank cells at the end
    cells[:n] = to_numpy(sample_images(vae, n, seed))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plots.save_image(plots.tile(cells.reshape(-1, cols, 784), pad=0), out)
    return out


def run(args, vae, cfg, data, out: Path) -> list[Path]:
    """samples.json and the Fig. 1 grid (last column: the closest training image)."""
    r = samples_figure(vae, data.train_intensities, rows=args.rows, cols=args.cols, seed=args.seed)
    payload = {k: r[k] for k in ("nearest_index", "nearest_distance", "log_pz")}
    draw = lambda p: plots.plot_sample_grid(r["means"], r["nearest"], p)
    return write_outputs(args, out, "samples", {**payload, "figure": "Fig. 1"}, draw)
