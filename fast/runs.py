"""Run directories and checkpoints: atomic writes, validated loads, `load_run` for analyses.

A run directory holds config.json (TrainConfig), metrics.jsonl (one line per epoch),
checkpoint.pt (model, optimizer, schedule position, RNG states), best.pt (early stopping),
results.json (final evaluation) and eval.json (`vaeprior evaluate`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vaeprior.fast.config import ModelConfig

if TYPE_CHECKING:
    from vaeprior.fast.models.vae import VAE
    from vaeprior.fast.training.loop import TrainConfig

FORMAT = "vaeprior-checkpoint-v1"
CONFIG, METRICS, CHECKPOINT, BEST = "config.json", "metrics.jsonl", "checkpoint.pt", "best.pt"
RESULTS, EVAL = "results.json", "eval.json"


class CheckpointError(ValueError):
    """A checkpoint or run directory is unreadable, incomplete or belongs to another model."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically (temporary file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict:
    """Read a JSON object, with a one-line error naming the file if it is missing or corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found: is this a vaeprior run directory?") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}): the run directory is damaged") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint file written by `atomic_save` during training."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train the run first (or drop --resume)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    return ckpt


def load_model_state(vae: torch.nn.Module, state: dict, source: str | Path) -> None:
    """load_state_dict(strict) with a one-line error if the shapes/names do not match."""
    try:
        vae.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {source} does not match the model: {first}") from None


def check_same_model(saved: dict, model: ModelConfig, source: str | Path) -> None:
    """Raise if a saved model config differs from `model`."""
    try:
        other = ModelConfig.from_dict(saved)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: unreadable model config ({e})") from None
    if other != model:
        diff = {
            k: (v, getattr(model, k)) for k, v in other.to_dict().items() if getattr(model, k) != v
        }
        raise CheckpointError(f"{source} holds a different model: (saved, requested) {diff}")


def resolve_device(device: str | None) -> torch.device:
    """'cpu', 'cuda' or None (cuda when available)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}: use cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available: use --device cpu")
    return torch.device(device)


def load_run(run_dir: str | Path, device: str | None = None) -> tuple[VAE, TrainConfig]:
    """The trained model of a run (from checkpoint.pt, eval mode) and its TrainConfig."""
    from vaeprior.fast.models.vae import build_vae
    from vaeprior.fast.training.loop import TrainConfig  # train imports this module

    run_dir = Path(run_dir)
    cfg = TrainConfig.from_dict(read_json(run_dir / CONFIG))
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    check_same_model(ckpt["config"]["model"], cfg.model, run_dir / CHECKPOINT)
    vae = build_vae(cfg.model)
    load_model_state(vae, ckpt["model"], run_dir / CHECKPOINT)
    return vae.to(resolve_device(device)).eval(), cfg
