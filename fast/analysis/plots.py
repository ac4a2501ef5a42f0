"""Figures of `vaeprior analyze` (matplotlib, the `plot` extra), drawn like the paper's.

Fig. 1 (samples grid), Fig. 2 (interpolations with log p(z) heat cells), Fig. 3 (closest-pair
histograms), Table 8's active units as a bar plot, Figs. B.4/B.5 (low posterior samples).
matplotlib is imported on first use with the Agg backend; without it a one-line error says how
to install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SIDE = 28  # images are 28 x 28


def require_matplotlib() -> None:
    """Raise ImportError naming `pip install vaeprior[plot]` when matplotlib is missing."""
    _pyplot()


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install vaeprior[plot] (or pass --no-plot)"
        ) from None
    return plt


def tile(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """(R, C, 784) images -> one (R*(28+pad)-pad, C*(28+pad)-pad) array, pad = 1 (white gaps)."""
    images = np.asarray(images, dtype=np.float64)
    r, c = images.shape[:2]
    out = np.ones((r * (SIDE + pad) - pad, c * (SIDE + pad) - pad))
    for i in range(r):
        for j in range(c):
            y, x = i * (SIDE + pad), j * (SIDE + pad)
            out[y : y + SIDE, x : x + SIDE] = images[i, j].reshape(SIDE, SIDE)
    return out


def save_image(image: np.ndarray, path: str | Path) -> None:
    """A grey-scale image with values in [0, 1] as a PNG, one pixel per value."""
    _pyplot().imsave(path, image, cmap="gray", vmin=0.0, vmax=1.0)


def _save(fig: Any, path: str | Path) -> None:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def plot_active_units(variances: np.ndarray, threshold: float, path: str | Path) -> None:
    """Bar plot of log10 A_k per latent dimension, the threshold as a dashed line (Table 8)."""
    plt = _pyplot()
    v = np.log10(np.maximum(np.asarray(variances, dtype=np.float64), 1e-30))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.12 * len(v)), 3.0))
    ax.bar(np.arange(len(v)), v, color=np.where(v > np.log10(threshold), "C0", "C7"))
    ax.axhline(np.log10(threshold), color="C3", ls="--", lw=1, label=f"A_k = {threshold}")
    active = int(np.sum(np.asarray(variances) > threshold))
    ax.set(xlabel="latent dimension k", ylabel="log10 A_k", title=f"active units: {active}")
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_closest_pairs(
    posterior_std: np.ndarray, distance: np.ndarray, normalized: np.ndarray, path: str | Path
) -> None:
    """Fig. 3: histograms of per-dimension stds of q(z|x), of d_ij and of normalized distances."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    panels = (
        (posterior_std, "per-dimension std of q(z|x)"),
        (distance, "distance d_ij of closest pairs"),
        (normalized, "normalized distance"),
    )
    for ax, (values, label) in zip(axes, panels, strict=True):
        ax.hist(np.asarray(values).ravel(), bins=50, color="C0")
        ax.set(xlabel=label, ylabel="count")
    fig.tight_layout()
    _save(fig, path)


def plot_sample_grid(means: np.ndarray, nearest: np.ndarray, path: str | Path) -> None:
    """Fig. 1: decoded prior samples (R, C-1, 784), last column the closest training image."""
    plt = _pyplot()
    grid = np.concatenate([means, np.asarray(nearest)[:, None]], axis=1)  # (R, C, 784)
    fig, ax = plt.subplots(figsize=(0.5 * grid.shape[1] + 0.5, 0.5 * grid.shape[0] + 0.5))
    ax.imshow(tile(grid), cmap="gray", vmin=0.0, vmax=1.0)
    last = (grid.shape[1] - 1) * (SIDE + 1) - 0.5
    ax.axvline(last, color="C3", lw=1.5)
    ax.set_axis_off()
    ax.set_title("samples | closest training image", fontsize=9)
    _save(fig, path)


def plot_interpolation(
    x_a: np.ndarray, x_b: np.ndarray, means: np.ndarray, log_pz: np.ndarray, path: str | Path
) -> None:
    """Fig. 2: per pair, x_a | decoded z_t | x_b, with a heat cell of log p(z_t) under each z_t."""
    plt = _pyplot()
    log_pz = np.asarray(log_pz, dtype=np.float64)
    p, t = log_pz.shape
    fig, axes = plt.subplots(p, 1, figsize=(0.5 * (t + 2) + 1.2, 0.62 * p + 0.3), squeeze=False)
    lo, hi = float(log_pz.min()), float(log_pz.max())
    cell, band = SIDE + 1, 9  # image pitch; height of the heat band below the images
    for i, ax in enumerate(axes[:, 0]):
        row = np.concatenate([np.asarray(x_a)[i : i + 1], means[i], np.asarray(x_b)[i : i + 1]])
        img = tile(row[None])
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, extent=(0, img.shape[1], SIDE, 0))
        im = ax.imshow(
            log_pz[i : i + 1],
            cmap="viridis",
            vmin=lo,
            vmax=hi,
            aspect="auto",
            extent=(cell, cell * (t + 1) - 1, SIDE + band, SIDE + 1),
        )
        ax.set(xlim=(0, img.shape[1]), ylim=(SIDE + band, 0))
        ax.set_axis_off()
    fig.colorbar(im, ax=list(axes[:, 0]), fraction=0.03, pad=0.01, label="log p(z)")
    _save(fig, path)


def plot_low_posterior(
    models: dict[str, dict[str, np.ndarray]], means: np.ndarray, path: str | Path
) -> None:
    """Figs. B.4/B.5: per model, histograms of log p(z) and of ELBO, and the decoded means."""
    plt = _pyplot()
    names = list(models)
    fig, axes = plt.subplots(len(names), 3, figsize=(11, 3.2 * len(names)), squeeze=False)
    side = int(np.ceil(np.sqrt(len(means))))
    padded = np.ones((side * side, means.shape[1]))
    padded[: len(means)] = means
    for row, name in zip(axes, names, strict=True):
        row[0].hist(models[name]["log_pz"], bins=20, color="C0")
        model = "this run" if name == "run" else "base run"
        row[0].set(xlabel="log p(z)", ylabel="count of z", title=f"{model}: log p(z)")
        row[1].hist(models[name]["elbo"], bins=20, color="C1")
        row[1].set(xlabel="elbo of x ~ p(x|z)", title=f"{model}: ELBO of x ~ p(x|z)")
        row[2].imshow(tile(padded.reshape(side, side, -1)), cmap="gray", vmin=0.0, vmax=1.0)
        row[2].set_axis_off()
        row[2].set_title("means of p(x|z)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
