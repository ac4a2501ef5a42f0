"""Run directories and checkpoints: atomic writes, validated loads, `load_run` for analyses.

A run directory holds config.json (TrainConfig), metrics.jsonl (one line per epoch),
checkpoint.pt (model, optimizer, schedule position, RNG states), best.pt (early stopping),
results.json (final evaluation) and eval.json (`vaeprior evaluate`).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from vaeprior.fast import backends
from vaeprior.fast.config import ModelConfig, TrainConfig
from vaeprior.fast.models.vae import VAE, build_vae

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
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}): the file is damaged or "
            "not a vaeprior checkpoint; restore it from a copy, or train the run again "
            "into a new --out folder"
        ) from None
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


def load_run(run_dir: str | Path, device: str | None = None) -> tuple[VAE, TrainConfig]:
    """The trained model of a run (from checkpoint.pt, eval mode) and its TrainConfig."""

    run_dir = Path(run_dir)
    cfg = TrainConfig.from_dict(read_json(run_dir / CONFIG))
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    check_same_model(ckpt["config"]["model"], cfg.model, run_dir / CHECKPOINT)
    vae = build_vae(cfg.model)
    load_model_state(vae, ckpt["model"], run_dir / CHECKPOINT)
    return vae.to(backends.resolve_device(device)).eval(), cfg


def check_run_dir(cfg: TrainConfig, out: Path, resume: bool) -> None:
    """Refuse to overwrite another run; check that a resumed run has the same config."""
    has_run = (out / CONFIG).exists()
    if resume:
        if not (out / CHECKPOINT).exists():
            raise CheckpointError(f"--resume: no checkpoint in {out}: start it without --resume")
        saved = TrainConfig.from_dict(read_json(out / CONFIG)).identity()
        if saved != cfg.identity():
            diff = sorted(k for k in saved if saved[k] != cfg.identity().get(k))
            raise CheckpointError(f"--resume: {out} holds a different run (differs in {diff})")
        return
    if has_run:
        raise CheckpointError(
            f"{out} already holds a run: pass --resume to continue it or choose another --out"
        )


def init_run_dir(cfg: TrainConfig, out: Path) -> None:
    """Create the run directory with config.json and an empty metrics.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.to_dict(), out / CONFIG)
    (out / METRICS).write_text("")


def truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop metric lines of epochs after the checkpoint (they are trained again)."""
    if not path.exists():
        return
    keep = [
        ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= epochs_done
    ]
    path.write_text("".join(ln + "\n" for ln in keep))


def load_base(vae: VAE, cfg: TrainConfig) -> None:
    """Copy q(z|x) and p(x|z) of a standard run into `vae` (post-hoc with --base-run)."""
    base = Path(cfg.base_run)
    try:
        base_cfg = TrainConfig.from_dict(read_json(base / CONFIG))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"--base-run {base}: unreadable config ({e})") from None
    if base_cfg.dataset != cfg.dataset:
        raise CheckpointError(
            f"--base-run {base} was trained on {base_cfg.dataset}, not {cfg.dataset}"
        )
    want = replace(cfg.model, prior=base_cfg.model.prior)
    if cfg.model.posterior == "gaussian":
        want = replace(want, flow_depth=base_cfg.model.flow_depth)
    check_same_model(base_cfg.model.to_dict(), want, base / CONFIG)
    state = load_checkpoint(base / CHECKPOINT)["model"]
    keep = {k: v for k, v in state.items() if not k.startswith("prior_flow.")}
    keep.update({k: v for k, v in vae.state_dict().items() if k.startswith("prior_flow.")})
    load_model_state(vae, keep, base / CHECKPOINT)


def _rng_state(gen: torch.Generator) -> dict:
    state = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict) -> None:
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, cfg: TrainConfig, vae: VAE, opt, gen, state: dict) -> None:
    """checkpoint.pt: model, optimizer, RNG states and the loop's `state` (atomic)."""
    atomic_save(
        {
            "format": FORMAT,
            "config": cfg.to_dict(),
            "model": vae.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": _rng_state(gen),
            "device": gen.device.type,
            "state": state,
        },
        out / CHECKPOINT,
    )


def restore_checkpoint(out: Path, cfg: TrainConfig, vae: VAE, opt, gen) -> dict:
    """Load checkpoint.pt into vae, opt and gen (checked); return the loop's saved state."""
    ckpt = load_checkpoint(out / CHECKPOINT)
    check_same_model(ckpt["config"]["model"], cfg.model, out / CHECKPOINT)
    load_model_state(vae, ckpt["model"], out / CHECKPOINT)
    saved = ckpt.get("device", gen.device.type)
    if saved != gen.device.type:
        raise CheckpointError(
            f"{out / CHECKPOINT} was trained on {saved}: resume it with --device {saved}"
        )
    try:
        opt.load_state_dict(ckpt["optimizer"])
        _set_rng_state(gen, ckpt["rng"])
        return dict(ckpt["state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {out / CHECKPOINT} is incomplete ({e})") from None


def run_status(run_dir: Path) -> str:
    """'finished' (results.json), 'partial' (a checkpoint to resume) or 'missing'."""
    if (run_dir / RESULTS).exists():
        return "finished"
    return "partial" if (run_dir / CHECKPOINT).exists() else "missing"
