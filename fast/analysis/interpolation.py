"""Fig. 2: interpolation between the centres of q(z|x) of two training images, with log p(z)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeprior.fast.analysis import plots
from vaeprior.fast.analysis.common import Array, generator, tensor, to_numpy, write_outputs
from vaeprior.fast.analysis.densities import decode_means


@torch.no_grad()
def interpolation(
    vae: torch.nn.Module, x_a: Array, x_b: Array, *, steps: int = 10, seed: int = 0
) -> dict[str, Any]:
    """z_t = (1-t) c(x_a) + t c(x_b), t in linspace(0, 1, steps), c = centre of q(z|x)
    (f_eta of the mean of q(w|x) for an RNVP posterior); decoded means and log p_lambda(z_t).

    x_a, x_b (P, 784) -> means (P, steps, 784), log_pz (P, steps), z (P, steps, Z) (Fig. 2).
    """
    if steps < 2:
        raise ValueError(f"interpolation needs --steps >= 2, got {steps}")
    xa, xb = tensor(x_a, vae), tensor(x_b, vae)
    zeros = torch.zeros_like(vae.encode(xa)[0])[None]  # (1, P, Z): eps = 0 gives the centre
    ca, cb = vae.posterior_sample(xa, zeros)[0][0], vae.posterior_sample(xb, zeros)[0][0]
    t = torch.linspace(0.0, 1.0, steps, device=ca.device, dtype=ca.dtype)[None, :, None]
    z = (1.0 - t) * ca[:, None] + t * cb[:, None]  # (P, T, Z)
    flat = z.reshape(-1, z.shape[-1])
    means = decode_means(vae, flat, generator(vae, seed)).reshape(*z.shape[:2], -1)
    return {"means": means, "log_pz": to_numpy(vae.prior_log_prob(z)), "z": to_numpy(z)}


def run(args, vae, cfg, data, out: Path) -> list[Path]:
    """interpolation.json and the Fig. 2 strips for `--pairs` random training pairs."""
    x = data.train_binary
    rng = np.random.default_rng(args.seed)
    pairs = np.stack([rng.choice(len(x), size=2, replace=False) for _ in range(args.pairs)])
    r = interpolation(vae, x[pairs[:, 0]], x[pairs[:, 1]], steps=args.steps, seed=args.seed)
    payload = {"pairs": pairs, "log_pz": r["log_pz"], "steps": args.steps, "figure": "Fig. 2"}
    draw = lambda p: plots.plot_interpolation(
        x[pairs[:, 0]], x[pairs[:, 1]], r["means"], r["log_pz"], p
    )
    return write_outputs(args, out, "interpolation", payload, draw)
