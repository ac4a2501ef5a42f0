"""Training runs (Appendix B.3, Algorithm B.1): execute a `schedule.build_schedule` phase list.

One Adam optimizer over all parameters (frozen groups get no gradient, so Adam leaves them and
their moments untouched); one z per x; β warm-up; L2 on `vae.l2_parameters()`; early stopping
on validation NLL (100 samples) for StaticMNIST and PixelVAE, restoring the best weights of each
stage at its end. Everything random draws from one seeded `torch.Generator` (plus torch's
global RNG for dropout), both saved in checkpoints, so `resume=True` continues bit-identically
on CPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vaeprior.fast import backends, runs
from vaeprior.fast.config import TrainConfig
from vaeprior.fast.data import (
    DeviceData,
    epoch_batches,
    load_device_data,
    num_batches,
    split_tensor,
)
from vaeprior.fast.evaluation.evaluate import evaluate, summary_line
from vaeprior.fast.evaluation.posterior import active_units
from vaeprior.fast.models.vae import VAE, build_vae
from vaeprior.fast.runs import (
    BEST,
    FORMAT,
    METRICS,
    RESULTS,
    atomic_save,
    atomic_write_json,
    load_checkpoint,
    load_model_state,
)
from vaeprior.fast.training import schedule as sch
from vaeprior.fast.training.objective import training_loss

VALIDATION_SAMPLES = 100  # Appendix B.3: validation NLL with 100 z samples per x
SPLITS = ("test", "validation", "train")


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss); the last good checkpoint is kept."""


@dataclass
class RunState:
    """Position in the schedule and early-stopping memory (saved in the checkpoint)."""

    epoch: int = 0  # epochs completed
    best: dict | None = None  # {"stage", "epoch", "nll"} of best.pt
    seconds: float = 0.0


# ---- one epoch -------------------------------------------------------------------------------


def _locate(phases: list[sch.Phase], epoch: int) -> tuple[int, int]:
    """(phase index, epoch within phase) of global epoch `epoch` (0-based)."""
    for i, p in enumerate(phases):
        if epoch < p.epochs:
            return i, epoch
        epoch -= p.epochs
    raise IndexError("epoch beyond the schedule")


def _set_trainable(vae: VAE, groups: tuple[str, ...]) -> None:
    for name, params in vae.parameter_groups().items():
        for p in params:
            p.requires_grad_(name in groups)


def _run_epoch(
    vae: VAE,
    opt: torch.optim.Optimizer,
    data: DeviceData,
    phase: sch.Phase,
    phase_epoch: int,
    epoch: int,
    cfg: TrainConfig,
    gen: torch.Generator,
    bar: tqdm | None,
) -> dict:
    """Train one epoch of `phase`; raise TrainingError on a non-finite loss.

    Per-batch losses stay on the device (no host sync per step, which would stall a GPU);
    they are checked once at the end of the epoch, naming the first non-finite batch. The
    caller's last checkpoint predates the epoch, so nothing good is lost.
    """
    vae.train()
    bs = cfg.effective_batch_size
    n_b = num_batches(data.train.shape[0], bs)
    dtype = next(vae.parameters()).dtype
    losses = torch.empty(n_b, device=data.train.device, dtype=torch.float64)  # (n_b,)
    elbos = torch.empty_like(losses)
    sizes = torch.empty_like(losses)
    beta = 1.0
    reg = cfg.reg_qz and "encoder" in phase.groups
    for b, x in enumerate(epoch_batches(data.train, bs, gen, dynamic=data.dynamic)):
        beta = sch.beta(phase.stage_offset + phase_epoch + b / n_b, phase.warmup)
        x = x.to(dtype)
        eps = torch.randn(
            (1, x.shape[0], cfg.model.z_dim), generator=gen, device=x.device, dtype=dtype
        )
        loss, stats = training_loss(
            vae, x, eps, beta, unit_prior=phase.prior == "unit", use_reg_qz=reg
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[b], elbos[b], sizes[b] = loss.detach(), stats["elbo"], x.shape[0]
        if bar is not None:
            bar.update(1)
            if b % 10 == 0:
                bar.set_postfix(
                    loss=f"{float(loss.detach()):.2f}", beta=f"{beta:.3f}", lr=f"{phase.lr:g}"
                )
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        b = int(bad[0])
        raise TrainingError(
            f"non-finite loss ({float(losses[b])}) at epoch {epoch + 1}, batch {b + 1}: training "
            "stopped, the last good checkpoint is kept (lower the learning rate or check the data)"
        )
    n = float(sizes.sum())
    return {
        "loss": float((losses * sizes).sum()) / n,
        "elbo": float((elbos * sizes).sum()) / n,
        "beta": beta,
    }


# ---- early stopping --------------------------------------------------------------------------


def _validate(vae: VAE, data: DeviceData, cfg: TrainConfig, phase: sch.Phase, epoch: int) -> float:
    x = split_tensor(data, "validation", cfg.seed + epoch, cfg.eval_limit)
    r = evaluate(vae, x, samples=VALIDATION_SAMPLES, unit_prior=phase.prior == "unit")
    return r["nll"]


def _early_stopping(
    out: Path, vae: VAE, data: DeviceData, cfg: TrainConfig, phases, i: int, pe: int, st: RunState
) -> float | None:
    """Validate when due; keep best.pt per stage; restore it at the stage's end if better."""
    phase = phases[i]
    stage_end = pe + 1 == phase.epochs and (
        i + 1 == len(phases) or phases[i + 1].stage != phase.stage
    )
    if not stage_end and (st.epoch % sch.validation_every(cfg.epochs)) != 0:
        return None
    nll = _validate(vae, data, cfg, phase, st.epoch)
    best = st.best if st.best and st.best["stage"] == phase.stage else None
    if best is None or nll < best["nll"]:
        atomic_save({"format": FORMAT, "model": vae.state_dict()}, out / BEST)
        st.best = {"stage": phase.stage, "epoch": st.epoch, "nll": nll}
    elif stage_end:
        load_model_state(vae, load_checkpoint(out / BEST)["model"], out / BEST)
    return nll


# ---- the run ---------------------------------------------------------------------------------


def _epoch_hook(epochs_done: int) -> None:
    """Called after each epoch's checkpoint (tests replace it to simulate a killed process)."""


def train(
    cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    """Train `cfg` into run directory `out_dir`, evaluate, write and return results.json."""
    out = Path(out_dir)
    device = backends.resolve_device(cfg.device)
    runs.check_run_dir(cfg, out, resume)
    phases = cfg.phases()
    early = sch.uses_early_stopping(cfg.dataset, cfg.model.model)
    data = load_device_data(
        cfg.dataset,
        cfg.data_dir,
        device,
        validation=early or cfg.eval_split == "validation",
        train_limit=cfg.train_limit,
    )
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg.model).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=phases[0].lr)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    if resume:
        st = RunState(**runs.restore_checkpoint(out, cfg, vae, opt, gen))
        runs.truncate_metrics(out / METRICS, st.epoch)
    else:
        st = RunState()
        if cfg.base_run is not None:
            runs.load_base(vae, cfg)
        runs.init_run_dir(cfg, out)
    _train_loop(out, cfg, vae, opt, gen, data, phases, st, early, progress)
    return _final_results(out, cfg, vae, data, st, progress)


def _train_loop(out, cfg, vae, opt, gen, data, phases, st: RunState, early: bool, progress: bool):
    total = sch.total_epochs(phases)
    n_b = num_batches(data.train.shape[0], cfg.effective_batch_size)
    bar = tqdm(total=total * n_b, initial=st.epoch * n_b, disable=not progress, unit="batch")
    try:
        while st.epoch < total:
            i, pe = _locate(phases, st.epoch)
            phase = phases[i]
            _set_trainable(vae, phase.groups)
            for group in opt.param_groups:
                group["lr"] = phase.lr
            bar.set_description(f"{phase.name} epoch {st.epoch + 1}/{total}")
            t0 = time.perf_counter()
            stats = _run_epoch(vae, opt, data, phase, pe, st.epoch, cfg, gen, bar)
            st.epoch += 1
            line = {"phase": phase.name, "epoch": st.epoch, "lr": phase.lr, **stats}
            if early:
                nll = _early_stopping(out, vae, data, cfg, phases, i, pe, st)
                if nll is not None:
                    line["val_nll"] = nll
            st.seconds += time.perf_counter() - t0
            line["seconds"] = time.perf_counter() - t0
            with (out / METRICS).open("a") as f:
                f.write(json.dumps(line) + "\n")
            if st.epoch % cfg.checkpoint_every == 0 or st.epoch == total or pe + 1 == phase.epochs:
                runs.save_checkpoint(out, cfg, vae, opt, gen, asdict(st))
            _epoch_hook(st.epoch)
    finally:
        bar.close()
    _set_trainable(vae, tuple(vae.parameter_groups()))


def _final_results(
    out: Path, cfg: TrainConfig, vae: VAE, data: DeviceData, st: RunState, progress: bool
) -> dict:
    """Evaluate the final model (Appendix B.3) on eval_split and write results.json."""
    x = split_tensor(data, cfg.eval_split, cfg.seed, cfg.eval_limit)
    res = evaluate(vae, x, samples=cfg.eval_samples)
    train_x = split_tensor(data, "train", cfg.seed, cfg.eval_limit)
    res["active_units"] = active_units(vae, train_x, samples=cfg.eval_samples)["count"]
    res.update(
        split=cfg.eval_split,
        epochs=st.epoch,
        train_seconds=st.seconds,
        strategy=cfg.strategy,
        dataset=cfg.dataset,
        best=st.best,
    )
    atomic_write_json(res, out / RESULTS)
    if progress:
        print(f"{out}: {summary_line(res)}")
    return res
