"""Run the missing cells of a paper table and write DIR/table<KEY>.md beside the paper's values.

Layout of a reproduction folder DIR:

    DIR/reproduce.json                  the budget every run of DIR was trained with
    DIR/runs/<run-id>/seed<k>/          one `vaeprior.fast.training.loop.train` run directory
        results.json                    written by train: the run is finished (skipped)
        checkpoint.pt                   without results.json: interrupted, resumed
        reproduce-run.json              wall-clock seconds spent here, the machine, and
                                        the executor and node (hostname, Ray node id)
        posterior-stats.json            Table B.1 moments (only for tables that need them)
    DIR/table<KEY>.md                   rewritten after every finished run

One reproduction at a time per DIR (a second one would restart the first one's run that has
no checkpoint yet). Cells of different tables that share a configuration share a run, so
`vaeprior reproduce 7` after `vaeprior reproduce 1` into the same DIR trains nothing new.

`reproduce` is the driver: it hands every (run, seed) still to do to an executor
(`executors.LocalExecutor`: this process, one after another; `executors.RayExecutor`: Ray
tasks), a post-hoc run only once its standard base run has finished; it tries a failed run
again (`retries`; the try resumes the run's checkpoint), reports a run that keeps failing and
goes on with the others, rewrites the table as each run finishes and prints progress with an
ETA. The folder layout does not depend on the executor, so an interrupted reproduction resumes
under either one. With Ray on several machines, DIR must be one shared folder, at the same path
on the driver and on every node.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vaeprior.fast.reproduce.budgets import Budget
from vaeprior.fast.reproduce.executors import LocalExecutor, RayExecutor, TaskError
from vaeprior.fast.reproduce.progress import RunsProgress
from vaeprior.fast.reproduce.report import POSTERIOR_STATS, plus_minus, write_markdown
from vaeprior.fast.reproduce.specs import ANALYSIS_METRICS, RunSpec, Table
from vaeprior.fast.reproduce.tasks import (
    Job,
    Outcome,
    TrainFn,
    check_same_config,
    run_config,
    run_job,
)
from vaeprior.fast.runs import (
    CONFIG,
    RESULTS,
    atomic_write_json,
    read_json,
    run_status,
)

MANIFEST = "reproduce.json"
Executor = LocalExecutor | RayExecutor


class ReproductionError(RuntimeError):
    """Some runs failed on every try; the others finished and the table shows them."""


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


def _complete(rep: Reproduction, job: Job) -> bool:
    """True if `job` has nothing left to do (its saved configuration is checked)."""
    d = rep.run_dir(job.spec, job.seed)
    if run_status(d) != "finished":
        return False
    if (d / CONFIG).exists():
        check_same_config(d / CONFIG, run_config(rep, job.spec, job.seed))
    return not job.stats or (d / POSTERIOR_STATS).exists()


def _task_reproduction(rep: Reproduction, executor: Executor) -> Reproduction:
    """The Reproduction the executor's tasks get: for remote workers, absolute paths (their
    working folder may differ), the device the executor chose, and no per-batch bars."""
    if not executor.remote:
        return rep
    data_dir = os.path.abspath(rep.data_dir) if rep.data_dir else None
    return replace(
        rep,
        out=rep.out.resolve(),
        data_dir=data_dir,
        device=executor.device or rep.device,
        progress=False,
    )


def _check_visible(rep: Reproduction, job: Job, out: Outcome) -> None:
    """A run finished elsewhere must be visible here (the driver reads DIR for the table)."""
    d = rep.run_dir(job.spec, job.seed)
    if run_status(d) != "finished":
        host = (out.where or {}).get("hostname", "another node")
        raise ValueError(
            f"{job.name} finished on {host} but {d / RESULTS} is not visible here: --out must "
            "be a folder shared by the driver and every Ray node, at the same path"
        )


# ---- the driver -----------------------------------------------------------------------------


def jobs(rep: Reproduction) -> list[Job]:
    """Every (run, seed) of the table, seed by seed, base runs before their post-hoc runs."""
    needs_stats = {c.run for c in rep.table.cells if c.metric in ANALYSIS_METRICS}
    return [
        Job(spec, seed, spec in needs_stats)
        for seed in range(rep.seeds)
        for spec in rep.table.runs()
    ]


def reproduce(
    rep: Reproduction,
    log: Callable[[str], None] | None = None,
    *,
    executor: Executor | None = None,
    retries: int = 1,
) -> Path:
    """Run every missing (run, seed) of the table on `executor` (default: this process, one
    after another); write and return the table.

    A run that raises is tried again up to `retries` times (resuming its checkpoint); after
    that it is reported, the post-hoc runs built on it are skipped, the others go on, and
    `ReproductionError` is raised once the table is written. Interrupting (KeyboardInterrupt)
    cancels the runs in flight; every run keeps its last checkpoint and the next call resumes.
    """
    if retries < 0:
        raise ValueError(f"--retries must be >= 0, got {retries}")
    executor = executor or LocalExecutor()
    check_manifest(rep.out, rep.budget)
    all_jobs = jobs(rep)
    todo = [j for j in all_jobs if not _complete(rep, j)]
    prog = RunsProgress(total=len(all_jobs), done=len(all_jobs) - len(todo))
    bar = None
    if rep.progress:
        bar = tqdm(
            total=prog.total,
            initial=prog.done,
            unit="run",
            desc=f"table {rep.table.key}",
            bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed}{postfix}",
        )
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    t_start = time.perf_counter()
    try:
        with executor:
            prog.slots = executor.slots
            say(prog.start(rep.table.key, executor.describe()))
            failed = _drive(rep, executor, todo, retries, prog, say, bar, t_start)
    finally:
        if bar is not None:
            bar.close()
    path = write_markdown(rep, time.perf_counter() - t_start)
    say(prog.summary(rep.table.key, time.perf_counter() - t_start))
    if failed:
        first = failed[0]
        raise ReproductionError(
            f"{len(failed)} of {prog.total} runs failed (first: {first.job.name}: {first.error}); "
            f"{path} shows the others: run the same command again to retry the failed runs"
        )
    return path


def _drive(
    rep: Reproduction,
    executor: Executor,
    todo: list[Job],
    retries: int,
    prog: RunsProgress,
    say: Callable[[str], None],
    bar: Any,
    t_start: float,
) -> list[Outcome]:
    """Submit ready jobs, collect their outcomes, retry or report; the failed outcomes."""
    task_rep = _task_reproduction(rep, executor)
    by_key = {j.key: j for j in todo}
    waiting = list(todo)  # not submitted yet, in table order
    unfinished = set(by_key)  # waiting or in flight
    tries: dict[tuple[str, int], int] = {}
    failed: list[Outcome] = []
    in_flight = 0
    while waiting or in_flight:
        for job in list(waiting):
            if executor.capacity is not None and in_flight >= executor.capacity:
                break
            if job.base_key in {o.job.key for o in failed}:
                waiting.remove(job)
                unfinished.discard(job.key)
                out = Outcome(job, "failed", error=f"its base run {job.base_key[0]} failed")
                failed.append(out)
                say(prog.gave_up(job.name, out.error))
                continue
            if job.base_key in unfinished:
                continue  # the post-hoc run waits for its standard run
            waiting.remove(job)
            tries[job.key] = tries.get(job.key, 0) + 1
            executor.submit(job.key, run_job, task_rep, job, executor.name, executor.threads)
            in_flight += 1
        if not in_flight:
            continue
        for key, result in executor.wait():
            in_flight -= 1
            job = by_key[key]
            out = result if isinstance(result, Outcome) else None
            if out is None:
                message = result.message if isinstance(result, TaskError) else repr(result)
                out = Outcome(job, "failed", error=message)
            if out.fatal is not None:
                if executor.remote:
                    where = out.where or {}
                    raise ValueError(f"{job.name} on {where.get('hostname')}: {out.error}")
                raise out.fatal
            if out.action == "failed":
                if tries[key] <= retries:
                    say(
                        f"{job.name}: try {tries[key]} of {retries + 1} failed ({out.error}); "
                        "trying again from its last checkpoint"
                    )
                    waiting.insert(0, job)
                    continue
                unfinished.discard(key)
                failed.append(out)
                n = tries[key]
                say(
                    prog.gave_up(
                        job.name, f"{out.error} (after {n} {'try' if n == 1 else 'tries'})"
                    )
                )
            else:
                unfinished.discard(key)
                _check_visible(rep, job, out)
                say(prog.finished(job.name, out.action, out.wall_s, out.where or {}))
                write_markdown(rep, time.perf_counter() - t_start)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(prog.eta_text() if prog.left else "done")
    return failed


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
