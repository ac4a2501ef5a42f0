"""Training runs (Appendix B.3, Algorithm B.1): execute a `schedule.build_schedule` phase list.

One Adam optimizer over all parameters (frozen groups get no gradient, so Adam leaves them and
their moments untouched); one z per x; β warm-up; L2 on `vae.l2_parameters()`. Everything random
draws from one seeded `torch.Generator` (plus torch's global RNG for dropout), both saved in
checkpoints, so `resume=True` continues bit-identically on CPU.

Early stopping (Appendix B.3, StaticMNIST and PixelVAE; `TrainConfig.early_stopping`): the
validation NLL (100 samples) is computed every `schedule.validation_every` epochs and at the end
of every early-stopping scope (`schedule.Phase.scope`). The best weights of the scope are kept in
best.pt; after `patience` validations without improvement the scope stops: its best weights are
restored and training skips to the next scope (or ends). At a scope's end the best weights are
restored too. Iterations 1b..Ib of Algorithm B.1 are one scope, so their best weights are those
of the whole process. metrics.jsonl says so on the epoch's line: `val_nll` for a validation,
`restored_best` (the epoch whose weights were restored) and `early_stop` (scope, reason, best
epoch, epochs skipped). The patience counter and the best are part of the checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
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
from vaeprior.fast.evaluation.evaluate import Progress, evaluate, summary_line
from vaeprior.fast.evaluation.posterior import active_units
from vaeprior.fast.models.vae import VAE, build_vae
from vaeprior.fast.runs import (
    BEST,
    FORMAT,
    METRICS,
    RESULTS,
    CheckpointError,
    atomic_save,
    atomic_write_json,
    load_checkpoint,
    load_model_state,
)
from vaeprior.fast.training import schedule as sch
from vaeprior.fast.training.objective import training_loss

VALIDATION_SAMPLES = 100  # Appendix B.3: validation NLL with 100 z samples per x


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss); the last good checkpoint is kept."""


@dataclass
class RunState:
    """Position in the schedule and early-stopping memory (saved in the checkpoint)."""

    epoch: int = 0  # position in the schedule: epochs trained or skipped by early stopping
    trained: int = 0  # epochs trained
    best: dict | None = None  # {"scope", "epoch", "nll"} of best.pt (the current scope's)
    bad: int = 0  # validations since the best without improvement (the patience counter)
    stops: list[dict] = field(default_factory=list)  # early stops, as in metrics.jsonl
    seconds: float = 0.0

    @classmethod
    def from_saved(cls, d: dict) -> RunState:
        """The state of a checkpoint, also one written before early stopping could stop."""
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        d.setdefault("trained", d.get("epoch", 0))
        best = d.get("best")
        if best is not None and "scope" not in best:  # then the scope was named "stage"
            stage = best.get("stage", "")
            scope = "iterative" if stage.startswith("iter") else stage
            d["best"] = {"scope": scope, "epoch": best["epoch"], "nll": best["nll"]}
        return cls(**d)


def effective_patience(cfg: TrainConfig) -> int | None:
    """Validations without improvement before a scope stops; None when `cfg` does not stop
    early (`early_stopping` off, or neither StaticMNIST nor PixelVAE: Appendix B.3)."""
    if not (cfg.early_stopping and sch.uses_early_stopping(cfg.dataset, cfg.model.model)):
        return None
    return sch.DEFAULT_PATIENCE if cfg.patience is None else cfg.patience


def schedule_lines(cfg: TrainConfig) -> list[str]:
    """The effective schedule of `cfg`, as `train` prints it when it starts."""
    patience = effective_patience(cfg)
    return sch.describe(
        cfg.phases(),
        cfg.epochs,
        strategy=cfg.strategy,
        dataset=cfg.dataset,
        lr=cfg.lr,
        m_epochs=cfg.m_epochs if cfg.strategy == "iterative" else None,
        validate_every=None if patience is None else sch.validation_every(cfg.epochs),
        patience=patience,
    )


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
    out: Path,
    vae: VAE,
    data: DeviceData,
    cfg: TrainConfig,
    phases: list[sch.Phase],
    i: int,
    st: RunState,
    patience: int,
) -> dict:
    """Validate when due and apply early stopping after epoch `st.epoch` (phase `i`).

    Returns the fields for the epoch's metrics line (empty when no validation was due). On a
    stop, `st.epoch` jumps to the end of the scope.
    """
    phase = phases[i]
    end = sch.scope_end(phases, i)
    at_end = st.epoch == end
    if not at_end and st.epoch % sch.validation_every(cfg.epochs) != 0:
        return {}
    nll = _validate(vae, data, cfg, phase, st.epoch)
    line: dict = {"val_nll": nll}
    best = st.best if st.best is not None and st.best["scope"] == phase.scope else None
    if best is None or nll < best["nll"]:
        st.best = {"scope": phase.scope, "epoch": st.epoch, "nll": nll}
        st.bad = 0
        atomic_save({"format": FORMAT, "model": vae.state_dict(), "best": st.best}, out / BEST)
        return line
    st.bad += 1
    stop = not at_end and st.bad >= patience
    if not (stop or at_end):
        return line
    _restore_best(out, vae, best)
    line["restored_best"] = best["epoch"]
    if stop:
        every = sch.validation_every(cfg.epochs)
        event = {
            "scope": phase.scope,
            "epoch": st.epoch,
            "reason": (
                f"validation NLL did not improve for {patience} validations "
                f"({patience * every} epochs): best {best['nll']:.4f} at epoch {best['epoch']}"
            ),
            "best_epoch": best["epoch"],
            "skipped_epochs": end - st.epoch,
        }
        line["early_stop"] = event
        st.stops.append(event)
        st.epoch = end
    return line


def _restore_best(out: Path, vae: VAE, best: dict) -> None:
    """Load best.pt into `vae`, checking that it holds the weights `best` describes (best.pt
    files written before early stopping could stop do not say; they are trusted)."""
    ckpt = load_checkpoint(out / BEST)
    saved = ckpt.get("best")
    if saved is not None and saved.get("epoch") != best["epoch"]:
        raise CheckpointError(
            f"{out / BEST} does not hold the best weights of epoch {best['epoch']}: the run "
            "directory was changed by another process; train it again"
        )
    load_model_state(vae, ckpt["model"], out / BEST)


# ---- the run ---------------------------------------------------------------------------------


def _epoch_hook(epochs_done: int) -> None:
    """Called after each epoch's checkpoint with the schedule position (after an early stop,
    the end of the scope); tests replace it to simulate a killed process."""


def make_optimizer(vae: VAE, lr: float) -> torch.optim.Adam:
    """Adam over all parameters, fused (one multi-tensor kernel per step, CPU and CUDA).

    On the CPU torch's default Adam runs ~10 small ops per parameter tensor; fused it is one
    pass: a DenseVAE step takes 1.9 ms (1 thread) to 2.7 ms (2 threads) less.
    """
    params = list(vae.parameters())
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def train(
    cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    """Train `cfg` into run directory `out_dir`, evaluate, write and return results.json."""
    out = Path(out_dir)
    device = backends.resolve_device(cfg.device)
    runs.check_run_dir(cfg, out, resume)
    phases = cfg.phases()
    patience = effective_patience(cfg)
    if progress:
        print("\n".join(schedule_lines(cfg)), flush=True)
    data = load_device_data(
        cfg.dataset,
        cfg.data_dir,
        device,
        validation=patience is not None or cfg.eval_split == "validation",
        train_limit=cfg.train_limit,
    )
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg.model).to(device)
    opt = make_optimizer(vae, phases[0].lr)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    if resume:
        st = RunState.from_saved(runs.restore_checkpoint(out, cfg, vae, opt, gen))
        runs.truncate_metrics(out / METRICS, st.epoch)
    else:
        st = RunState()
        if cfg.base_run is not None:
            runs.load_base(vae, cfg)
        runs.init_run_dir(cfg, out)
    _train_loop(out, cfg, vae, opt, gen, data, phases, st, patience, progress)
    return _final_results(out, cfg, vae, data, st, progress)


def _train_loop(
    out, cfg, vae, opt, gen, data, phases, st: RunState, patience: int | None, progress: bool
):
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
            st.trained += 1
            line = {"phase": phase.name, "epoch": st.epoch, "lr": phase.lr, **stats}
            if patience is not None:
                line.update(_early_stopping(out, vae, data, cfg, phases, i, st, patience))
            stopped = "early_stop" in line
            if stopped:
                stop = line["early_stop"]
                bar.update(stop["skipped_epochs"] * n_b)
                if progress:
                    bar.write(f"early stop after epoch {line['epoch']}: {stop['reason']}")
            st.seconds += time.perf_counter() - t0
            line["seconds"] = time.perf_counter() - t0
            with (out / METRICS).open("a") as f:
                f.write(json.dumps(line) + "\n")
            if (
                st.epoch % cfg.checkpoint_every == 0
                or st.epoch == total
                or pe + 1 == phase.epochs
                or stopped
            ):
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
    report = Progress(
        what=f"{cfg.eval_split} rows", hint="use --eval-limit N or --eval-samples S to shorten"
    )
    res = evaluate(vae, x, samples=cfg.eval_samples, progress=report if progress else False)
    train_x = split_tensor(data, "train", cfg.seed, cfg.eval_limit)
    au = active_units(vae, train_x, samples=cfg.eval_samples, progress=progress)
    res["active_units"] = au["count"]
    res.update(
        split=cfg.eval_split,
        epochs=st.trained,
        schedule_epochs=sch.total_epochs(cfg.phases()),
        early_stops=st.stops,
        train_seconds=st.seconds,
        strategy=cfg.strategy,
        dataset=cfg.dataset,
        best=st.best,
    )
    atomic_write_json(res, out / RESULTS)
    if progress:
        print(f"{out}: {summary_line(res)}")
    return res
