"""Run the missing cells of a paper table and write DIR/table<KEY>.md beside the paper's values.

Layout of a reproduction folder DIR:

    DIR/reproduce.json                  the budget every run of DIR was trained with
    DIR/runs/<run-id>/seed<k>/          one `vaeprior.fast.training.loop.train` run directory
        results.json                    written by train: the run is finished (skipped)
        checkpoint.pt                   without results.json: interrupted, resumed
        reproduce-run.json              wall-clock seconds spent here and the machine
        posterior-stats.json            Table B.1 moments (only for tables that need them)
    DIR/table<KEY>.md                   rewritten after every finished run

One reproduction at a time per DIR (a second one would restart the first one's run that has
no checkpoint yet). Cells of different tables that share a configuration share a run, so
`vaeprior reproduce 7` after `vaeprior reproduce 1` into the same DIR trains nothing new.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaeprior.fast import backends
from vaeprior.fast.reproduce.budgets import Budget
from vaeprior.fast.reproduce.report import POSTERIOR_STATS, RUN_META, plus_minus, write_markdown
from vaeprior.fast.reproduce.specs import ANALYSIS_METRICS, RunSpec, Table
from vaeprior.fast.runs import (
    CONFIG,
    RESULTS,
    atomic_write_json,
    read_json,
    run_status,
)

MANIFEST = "reproduce.json"
TrainFn = Callable[..., dict]


@dataclass(frozen=True)
class Reproduction:
    """What to reproduce and where; `train_fn` is `vaeprior.fast.training.loop.train` unless
    injected."""

    table: Table
    budget: Budget
    seeds: int
    out: Path
    device: str | None = None
    data_dir: str | None = None
    progress: bool = False
    train_fn: TrainFn | None = None
    cells: tuple[str, ...] = ()  # the --cells globs that selected `table`'s cells (for display)
    limit: int | None = None  # the --limit given (for display; already applied to `budget`)
    epochs: int | None = None  # the --epochs given (for display; already applied to `budget`)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")

    def run_dir(self, spec: RunSpec, seed: int) -> Path:
        return self.out / "runs" / spec.run_id / f"seed{seed}"

    @property
    def markdown_path(self) -> Path:
        return self.out / f"table{self.table.key}.md"


# ---- configurations ------------------------------------------------------------------------


def train_config(
    spec: RunSpec,
    budget: Budget,
    seed: int,
    *,
    device: str | None = None,
    data_dir: str | None = None,
    base_run: str | None = None,
) -> Any:
    """The `TrainConfig` of one cell's run under `budget` (paper batch sizes, test split)."""
    from vaeprior.fast.config import TrainConfig

    return TrainConfig(
        dataset=spec.dataset,
        model=spec.model_config(),
        strategy=spec.strategy,
        seed=seed,
        device=device,
        data_dir=data_dir,
        reg_qz=spec.reg_qz,
        eval_split="test",
        base_run=base_run,
        **budget.train_kwargs(),
    )


def _comparable(cfg: Any) -> dict:
    """A TrainConfig as a dict without the fields that may change between machines."""
    d = cfg.to_dict()
    return {k: v for k, v in d.items() if k not in ("device", "data_dir", "base_run")}


def _check_same_config(saved: Path, cfg: Any) -> None:
    """Refuse to resume or reuse a run directory that holds another configuration."""
    from vaeprior.fast.config import TrainConfig

    try:
        have = TrainConfig.from_dict(read_json(saved))
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{saved} is unreadable ({e}): delete its run folder") from None
    if _comparable(have) != _comparable(cfg):
        raise ValueError(f"{saved.parent} holds another configuration's run: use another --out")


def check_manifest(out: Path, budget: Budget) -> None:
    """Refuse to mix budgets in one folder; record the budget on first use."""
    want = {"budget": budget.name, **budget.train_kwargs()}
    path = out / MANIFEST
    if path.exists():
        have = read_json(path)
        if have != want:
            raise ValueError(
                f"{out} holds a reproduction with {have}, not {want}: use another --out "
                "(or the same --budget/--limit as before)"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(want, path)


# ---- running --------------------------------------------------------------------------------


def _default_train() -> TrainFn:
    from vaeprior.fast.training.loop import train

    return train


def machine(device: str | None) -> dict:
    """CPU model, cores, GPU name (if the run used one), torch and Python versions."""
    dev = backends.resolve_device(device)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _add_meta(run_dir: Path, seconds: float, device: str | None) -> None:
    """Accumulate wall-clock seconds spent in this run directory (resumes add up)."""
    path = run_dir / RUN_META
    meta = read_json(path) if path.exists() else {"wall_s": 0.0}
    meta["wall_s"] = float(meta["wall_s"]) + seconds
    meta["machine"] = machine(device)
    atomic_write_json(meta, path)


def ensure_run(rep: Reproduction, spec: RunSpec, seed: int) -> bool:
    """Train (or resume) one run unless it is finished; True if training happened."""
    d = rep.run_dir(spec, seed)
    status = run_status(d)
    base = spec.base()
    base_run = str(rep.run_dir(base, seed)) if base is not None else None
    cfg = train_config(
        spec, rep.budget, seed, device=rep.device, data_dir=rep.data_dir, base_run=base_run
    )
    if status != "missing" and (d / CONFIG).exists():
        _check_same_config(d / CONFIG, cfg)
    if status == "finished":
        return False
    if status == "missing" and d.exists():
        shutil.rmtree(d)  # started but killed before its first checkpoint: start afresh
    d.parent.mkdir(parents=True, exist_ok=True)
    train_fn = rep.train_fn or _default_train()
    t0 = time.perf_counter()
    result = train_fn(cfg, d, resume=status == "partial", progress=rep.progress)
    if not (d / RESULTS).exists():
        atomic_write_json(result, d / RESULTS)
    _add_meta(d, time.perf_counter() - t0, rep.device)
    return True


def ensure_posterior_stats(rep: Reproduction, run_dir: Path) -> dict:
    """Avg. Mean[z_k] and Var[z_k] over z ~ q(z|x), x in the test images (Table B.1)."""
    path = run_dir / POSTERIOR_STATS
    if path.exists():
        return read_json(path)
    from vaeprior.fast.analysis.posterior_stats import posterior_stats
    from vaeprior.fast.data import load_device_data, split_tensor
    from vaeprior.fast.runs import load_run

    t0 = time.perf_counter()
    vae, cfg = load_run(run_dir, rep.device)
    dev = next(vae.parameters()).device
    data = load_device_data(cfg.dataset, cfg.data_dir, dev)
    x = split_tensor(data, "test", cfg.seed)[: rep.budget.eval_limit]
    stats = posterior_stats(vae, x, samples=rep.budget.eval_samples, seed=cfg.seed)
    out = {
        "z_mean": stats["avg_mean"],
        "z_var": stats["avg_var"],
        "n": len(x),
        "samples": stats["samples"],
    }
    atomic_write_json(out, path)
    _add_meta(run_dir, time.perf_counter() - t0, rep.device)
    return out


def reproduce(rep: Reproduction, log: Callable[[str], None] | None = None) -> Path:
    """Run every missing (run, seed) of the table, seed by seed; write and return the table."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    check_manifest(rep.out, rep.budget)
    runs = rep.table.runs()
    needs_stats = {c.run for c in rep.table.cells if c.metric in ANALYSIS_METRICS}
    todo = [(seed, spec) for seed in range(rep.seeds) for spec in runs]
    t_start = time.perf_counter()
    for i, (seed, spec) in enumerate(todo, 1):
        d = rep.run_dir(spec, seed)
        state = run_status(d)
        trained = ensure_run(rep, spec, seed)
        if spec in needs_stats:
            ensure_posterior_stats(rep, d)
        verb = {"finished": "finished already", "partial": "resumed", "missing": "trained"}[state]
        log(f"[{i}/{len(todo)}] {spec.run_id} seed{seed}: {verb}")
        if trained:
            write_markdown(rep, time.perf_counter() - t_start)
    return write_markdown(rep, time.perf_counter() - t_start)


def plan(rep: Reproduction) -> list[str]:
    """Human lines: every cell with its run, then every (run, seed) and its status."""
    lines = [
        f"{c.key}  <-  {c.run.run_id}  (paper {plus_minus(c.paper, c.paper_std)})"
        for c in rep.table.cells
    ]
    for seed in range(rep.seeds):
        for spec in rep.table.runs():
            lines.append(f"{rep.run_dir(spec, seed)}: {run_status(rep.run_dir(spec, seed))}")
    return lines
