"""Shared pieces of the analyses: tensors in and out, chunking, progress, JSON and PNG output."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

Array = np.ndarray
ROW_BUDGET = 2**18  # z rows (samples x data points) held at once while sampling q(z|x)


def spans(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive blocks of at most `size` (>= 1) over range(n)."""
    for start in range(0, n, max(1, size)):
        yield start, min(n, start + max(1, size))


def bar(it: Any, total: int, desc: str, progress: bool) -> Any:
    """A tqdm progress bar over `it` (hidden when not `progress`)."""
    return tqdm(it, total=total, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


def param(vae: torch.nn.Module) -> torch.Tensor:
    return next(vae.parameters())


def tensor(x: Array | torch.Tensor, vae: torch.nn.Module) -> torch.Tensor:
    """x on the model's device in its dtype."""
    p = param(vae)
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(p.device, p.dtype)


def generator(vae: torch.nn.Module, seed: int) -> torch.Generator:
    """A seeded generator on the model's device (prior draws and Bernoulli pixels)."""
    g = torch.Generator(device=param(vae).device)
    g.manual_seed(seed)
    return g


def to_numpy(t: torch.Tensor) -> Array:
    return t.detach().to("cpu", torch.float64).numpy()


def check_samples(samples: int, minimum: int = 1) -> None:
    if samples < minimum:
        raise ValueError(f"--samples must be >= {minimum}, got {samples}")


# ---- output ---------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """NumPy arrays and scalars as JSON values (non-finite floats as null)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def summary(a: Array, bins: int = 50) -> dict[str, Any]:
    """Mean, median, min, max and a histogram of `a`."""
    a = np.asarray(a, dtype=np.float64).ravel()
    counts, edges = np.histogram(a, bins=bins)
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
        "histogram": {"counts": counts, "edges": edges},
    }


def write_json(out: Path, name: str, payload: dict[str, Any]) -> Path:
    path = out / f"{name}.json"
    path.write_text(json.dumps(jsonable(payload), indent=2) + "\n")
    return path


def write_outputs(
    args: Any, out: Path, name: str, payload: dict[str, Any], draw: Callable[[Path], None]
) -> list[Path]:
    """DIR/<name>.json, and DIR/<name>.png drawn by `draw` unless --no-plot; the written paths."""
    paths = [write_json(out, name, payload)]
    if not args.no_plot:
        paths.append(out / f"{name}.png")
        draw(paths[-1])
    return paths
