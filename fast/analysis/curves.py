"""Training curves of one or more runs (`vaeprior plot`): ELBO, validation NLL, β and learning rate.

Every number comes from the run's metrics.jsonl, one JSON line per epoch written by training
(Appendix B.3): `elbo` is the epoch's mean training ELBO with β = 1 (Eq. 1) over its batches,
`beta` the warm-up weight at the epoch's last batch, `lr` the phase's Adam learning rate and
`val_nll` the 100-sample validation NLL where early stopping validated (StaticMNIST and
PixelVAE). `training_curves` returns those series; `plot_curves` draws them, runs overlaid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vaeprior.fast.analysis import plots
from vaeprior.fast.runs import METRICS

SERIES = ("epoch", "elbo", "beta", "lr", "val_epoch", "val_nll")


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The lines of RUN_DIR/metrics.jsonl, with a one-line error naming the file when unusable."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run folder of `vaeprior train`?")
    lines = []
    for i, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as e:
            msg = f"{path} line {i} is not JSON ({e.msg}): the file is damaged"
            raise ValueError(msg) from None
        if not isinstance(line, dict) or "epoch" not in line:
            raise ValueError(f"{path} line {i} has no epoch: not a vaeprior metrics file")
        lines.append(line)
    if not lines:
        raise ValueError(f"{path} is empty: the run has not finished an epoch yet")
    return lines


def training_curves(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The per-epoch series of a run, float64 arrays of one length per group.

    epoch, elbo, beta, lr: one value per metrics line (NaN where a line lacks the key);
    val_epoch, val_nll: only the epochs that were validated.
    """
    lines = read_metrics(run_dir)

    def column(key: str, rows: list[dict]) -> np.ndarray:
        return np.array([float(r.get(key, np.nan)) for r in rows], dtype=np.float64)

    validated = [r for r in lines if r.get("val_nll") is not None]
    return {
        "epoch": column("epoch", lines),
        "elbo": column("elbo", lines),
        "beta": column("beta", lines),
        "lr": column("lr", lines),
        "val_epoch": column("epoch", validated),
        "val_nll": column("val_nll", validated),
    }


def run_labels(run_dirs: list[str | Path], labels: list[str] | None = None) -> list[str]:
    """Legend names: `labels` when given (one per run), else each folder's name, made unique
    by its parent folder when two runs share a name."""
    if labels is not None:
        if len(labels) != len(run_dirs):
            raise ValueError(
                f"--labels names {len(labels)} runs but {len(run_dirs)} were given: "
                "give one label per run, comma-separated"
            )
        return list(labels)
    paths = [Path(r).resolve() for r in run_dirs]
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def plot_curves(
    run_dirs: list[str | Path], out: str | Path, labels: list[str] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Draw the training curves of `run_dirs` into the PNG `out`, one color per run.

    Panels: training ELBO per epoch, validation NLL (only when some run validated: 2 x 2, else
    1 x 3), warm-up β, learning rate (log scale). Returns {label: training_curves(run)}, the
    plotted data.
    """
    if not run_dirs:
        raise ValueError("vaeprior plot needs at least one run folder")
    try:
        plots.require_matplotlib()
    except ImportError as e:  # before reading anything, as a one-line error
        raise ValueError(str(e).replace(" (or pass --no-plot)", "")) from None
    names = run_labels(run_dirs, labels)
    curves = {name: training_curves(run) for name, run in zip(names, run_dirs, strict=True)}
    validated = any(len(c["val_nll"]) for c in curves.values())
    plt = plots._pyplot()
    if validated:  # 2 x 2: ELBO, validation NLL / beta, learning rate
        fig, grid = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
        ax_elbo, ax_nll, ax_beta, ax_lr = grid.ravel()
    else:  # no run validated (early stopping is for StaticMNIST and PixelVAE): 1 x 3
        fig, grid = plt.subplots(1, 3, figsize=(13, 3.6), sharex=True)
        (ax_elbo, ax_beta, ax_lr), ax_nll = grid, None
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax_elbo.plot(c["epoch"], c["elbo"], color=color, label=name)
        if ax_nll is not None and len(c["val_nll"]):
            ax_nll.plot(c["val_epoch"], c["val_nll"], "o-", color=color, ms=3, label=name)
        ax_beta.plot(c["epoch"], c["beta"], color=color, label=name)
        # epoch e spans (e-1, e]: its rate holds up to x = e
        ax_lr.plot(c["epoch"], c["lr"], color=color, label=name, drawstyle="steps-pre")
    ax_elbo.set(xlabel="epoch", ylabel="training ELBO (nats)", title="ELBO per epoch (β = 1)")
    if ax_nll is not None:
        ax_nll.set(ylabel="validation NLL (nats)", title="validation NLL (100 samples)")
    ax_beta.set(xlabel="epoch", ylabel="β", title="KL warm-up β (end of epoch)", ylim=(0, 1.05))
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Adam learning rate", yscale="log")
    for ax in grid.ravel():
        ax.grid(alpha=0.3)
    ax_elbo.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    plots._save(fig, out)
    return curves
