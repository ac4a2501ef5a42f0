"""One run of a reproduction, wherever it executes: its TrainConfig, training or resuming it,
its Table B.1 moments, and the record of where and how long it ran (reproduce-run.json).

`run_job` is the unit of work an executor runs (`executors.LocalExecutor` in this process,
`executors.RayExecutor` as one Ray task); the driver is `vaeprior.fast.reproduce.runner`.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vaeprior.fast import backends
from vaeprior.fast.analysis.posterior_stats import posterior_stats
from vaeprior.fast.config import TrainConfig
from vaeprior.fast.data import load_device_data, split_tensor
from vaeprior.fast.reproduce.budgets import Budget
from vaeprior.fast.reproduce.executors import node_info
from vaeprior.fast.reproduce.report import POSTERIOR_STATS, RUN_META
from vaeprior.fast.reproduce.specs import RunSpec
from vaeprior.fast.runs import CONFIG, RESULTS, atomic_write_json, load_run, read_json, run_status
from vaeprior.fast.training import loop as training_loop

if TYPE_CHECKING:
    from vaeprior.fast.reproduce.runner import Reproduction

TrainFn = Callable[..., dict]


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


def check_same_config(saved: Path, cfg: Any) -> None:
    """Refuse to resume or reuse a run directory that holds another configuration."""

    try:
        have = TrainConfig.from_dict(read_json(saved))
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{saved} is unreadable ({e}): delete its run folder") from None
    if _comparable(have) != _comparable(cfg):
        raise ValueError(f"{saved.parent} holds another configuration's run: use another --out")


# ---- running --------------------------------------------------------------------------------


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


def _add_meta(
    run_dir: Path, seconds: float, device: str | None, where: dict | None, what: str
) -> None:
    """Accumulate wall-clock seconds spent in this run directory (resumes add up) and record
    where the work ran: `executor` and `node` of the latest session, every session in
    `history` (`what`: trained, resumed or posterior moments)."""
    path = run_dir / RUN_META
    meta = read_json(path) if path.exists() else {"wall_s": 0.0}
    meta["wall_s"] = float(meta["wall_s"]) + seconds
    meta["machine"] = machine(device)
    where = where or node_info("local")
    meta["executor"] = where["executor"]
    meta["node"] = {"hostname": where["hostname"], "ray_node_id": where["ray_node_id"]}
    meta.setdefault("history", []).append({**where, "what": what, "wall_s": seconds})
    atomic_write_json(meta, path)


def run_config(rep: Reproduction, spec: RunSpec, seed: int) -> Any:
    base = spec.base()
    base_run = str(rep.run_dir(base, seed)) if base is not None else None
    return train_config(
        spec, rep.budget, seed, device=rep.device, data_dir=rep.data_dir, base_run=base_run
    )


def ensure_run(rep: Reproduction, spec: RunSpec, seed: int, where: dict | None = None) -> bool:
    """Train (or resume) one run unless it is finished; True if training happened."""
    d = rep.run_dir(spec, seed)
    status = run_status(d)
    cfg = run_config(rep, spec, seed)
    if status != "missing" and (d / CONFIG).exists():
        check_same_config(d / CONFIG, cfg)
    if status == "finished":
        return False
    if status == "missing" and d.exists():
        shutil.rmtree(d)  # started but killed before its first checkpoint: start afresh
    d.parent.mkdir(parents=True, exist_ok=True)
    train_fn = rep.train_fn or training_loop.train  # looked up now: tests replace it
    t0 = time.perf_counter()
    result = train_fn(cfg, d, resume=status == "partial", progress=rep.progress)
    if not (d / RESULTS).exists():
        atomic_write_json(result, d / RESULTS)
    what = "resumed" if status == "partial" else "trained"
    _add_meta(d, time.perf_counter() - t0, rep.device, where, what)
    return True


def ensure_posterior_stats(rep: Reproduction, run_dir: Path, where: dict | None = None) -> dict:
    """Avg. Mean[z_k] and Var[z_k] over z ~ q(z|x), x in the test images (Table B.1)."""
    path = run_dir / POSTERIOR_STATS
    if path.exists():
        return read_json(path)

    t0 = time.perf_counter()
    vae, cfg = load_run(run_dir, rep.device)
    dev = next(vae.parameters()).device
    data = load_device_data(cfg.dataset, cfg.data_dir, dev)
    x = split_tensor(data, "test", cfg.seed, rep.budget.eval_limit)  # the NLL's test images
    stats = posterior_stats(vae, x, samples=rep.budget.eval_samples, seed=cfg.seed)
    out = {
        "z_mean": stats["avg_mean"],
        "z_var": stats["avg_var"],
        "n": len(x),
        "samples": stats["samples"],
    }
    atomic_write_json(out, path)
    _add_meta(run_dir, time.perf_counter() - t0, rep.device, where, "posterior moments")
    return out


# ---- one run, wherever it executes ------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One (run, seed) of a reproduction: train or resume it, then (if a cell of the table
    needs them) compute its Table B.1 posterior moments."""

    spec: RunSpec
    seed: int
    stats: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.spec.run_id, self.seed)

    @property
    def name(self) -> str:
        return f"{self.spec.run_id} seed{self.seed}"

    @property
    def base_key(self) -> tuple[str, int] | None:
        """The standard run a post-hoc run starts from (same seed), which must finish first."""
        base = self.spec.base()
        return None if base is None else (base.run_id, self.seed)


@dataclass(frozen=True)
class Outcome:
    """What one try of a Job did."""

    job: Job
    action: str  # 'trained', 'resumed', 'analysed' (moments only) or 'failed'
    wall_s: float = 0.0
    where: dict | None = None  # executor, hostname, ray_node_id (`executors.node_info`)
    error: str | None = None  # one line, for a failed try
    fatal: Exception | None = None  # bad input (e.g. DIR holds another configuration): stop


def run_job(
    rep: Reproduction, job: Job, executor: str = "local", threads: int | None = None
) -> Outcome:
    """Do `job` in this process (an executor's unit of work; a Ray task runs exactly this).

    `threads` sets torch's thread count first (the CPUs the task reserved). A ValueError (bad
    input: a folder holding another configuration, missing data) comes back as a fatal
    Outcome instead of being raised, so that executors do not try it again; any other error
    propagates (the driver tries the run again).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    where = node_info(executor)
    d = rep.run_dir(job.spec, job.seed)
    state = run_status(d)
    t0 = time.perf_counter()
    try:
        ensure_run(rep, job.spec, job.seed, where)
        if job.stats:
            ensure_posterior_stats(rep, d, where)
    except ValueError as e:
        return Outcome(job, "failed", time.perf_counter() - t0, where, str(e), fatal=e)
    action = {"missing": "trained", "partial": "resumed", "finished": "analysed"}[state]
    return Outcome(job, action, time.perf_counter() - t0, where)
