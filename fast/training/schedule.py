"""Training schedules of Appendix B.3 and Algorithm B.1, as an explicit list of phases.

`build_schedule` returns every phase a run goes through (name, epochs, learning rate, which
parameter groups train, which prior the step uses, warm-up, early-stopping scope);
`training.loop` only executes it, and `describe` writes it out for the user.
`epochs` (the `--epochs N` option) is the length of the paper's 2400-epoch main schedule;
every other length (warm-up, LR steps, post-hoc 3200-epoch stage, iterative 2M/M phases,
validation interval) scales by N / 2400, by rounding cumulative boundaries so the total is
exact and every phase keeps at least one epoch. `lr` (the `--lr` option) replaces the first
learning rate of the main schedule and scales every other learning rate by the same factor.

Early stopping (Appendix B.3) validates every 20 paper epochs (scaled like the rest) and stops a
scope after `DEFAULT_PATIENCE` validations without improvement. A patience counted in
validations scales with `--epochs` by itself: it always spans 10 x 20 = 200 paper epochs,
except when fewer than 120 epochs make the interval 1 epoch (it then spans 10 epochs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

PAPER_EPOCHS = 2400
WARMUP_EPOCHS = 100  # β: 0.01 -> 1 linearly over the first 100 epochs (Appendix B.3)
BETA_START = 0.01
POSTHOC_EPOCHS = 3200  # RNVP prior fitted post hoc: 1600 at 1e-3, 1600 at 1e-4
VALIDATION_EVERY = 20  # early stopping: validation NLL every 20 epochs (100 samples)
# Validations without improvement before early stopping ends a scope. The paper gives none; 10
# validations = 200 paper epochs, a quarter of one 800-epoch learning-rate step: a model that
# has not improved for that long at a fixed learning rate is over-fitting (the paper's
# PixelVAE runs "mostly terminate half way"), while a shorter patience would let the noise of a
# 100-sample NLL on freshly binarized validation images stop a run that is still improving.
DEFAULT_PATIENCE = 10
PAPER_LR = {"default": 1e-3, "static-mnist": 1e-4}  # first learning rate of the main schedule
ITERATIONS = {"default": (16, 100), "static-mnist": (4, 400)}  # (I, M) of Algorithm B.1
STRATEGIES = ("joint", "post-hoc", "iterative")

VAE_GROUPS = ("encoder", "decoder", "posterior_flow")  # q(z|x) and p(x|z)
PRIOR_GROUPS = ("prior",)


@dataclass(frozen=True)
class Phase:
    """One constant-LR stretch of training.

    stage: phases of one stage share a warm-up clock (e.g. the three LR steps of a VAE).
    prior: "unit" (the step uses N(0, I) as p(z)) or "model" (the model's prior).
    warmup: warm-up length in epochs of the stage (0: β = 1 throughout).
    stage_offset: epochs of the same stage before this phase.
    scope: early-stopping scope. Validation NLLs are compared, the best weights kept and the
        patience counted across all phases of one scope; an early stop skips to the scope's
        end. A standard (unit-prior) stage is its own scope, since its NLL is that of another
        model; Iterations 1b..Ib of Algorithm B.1 form one scope ("Early-stopping should be
        performed during the whole process").
    paper_epochs: the phase's length in the paper's schedule (before `--epochs` scaling).
    """

    name: str
    stage: str
    epochs: int
    lr: float
    groups: tuple[str, ...]
    prior: str
    warmup: int = 0
    stage_offset: int = 0
    scope: str = ""
    paper_epochs: int = 0


def scale_lengths(lengths: list[int], factor: float) -> list[int]:
    """Scale consecutive lengths by `factor`, rounding cumulative sums, each >= 1 epoch."""
    out, done, cum = [], 0, 0
    for n in lengths:
        cum += n
        end = max(round(cum * factor), done + 1)
        out.append(end - done)
        done = end
    return out


def scaled(n: int, factor: float) -> int:
    """One length scaled by `factor`, at least 1."""
    return max(1, round(n * factor))


def beta(stage_epoch: float, warmup: int) -> float:
    """Warm-up β at a (fractional) epoch of its stage: 0.01 -> 1 linearly over `warmup`."""
    if warmup <= 0:
        return 1.0
    return BETA_START + (1.0 - BETA_START) * min(stage_epoch / warmup, 1.0)


def lr_factor(dataset: str, lr: float | None) -> float:
    """Factor on every learning rate of the schedule: `lr` / the paper's first main-schedule
    learning rate (1e-3, or 1e-4 on StaticMNIST); 1 when `lr` is None."""
    if lr is None:
        return 1.0
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    return lr / PAPER_LR.get(dataset, PAPER_LR["default"])


def _vae_stage(
    stage: str, dataset: str, factor: float, prior: str, groups: tuple[str, ...], lr_f: float
) -> list[Phase]:
    """The 2400-epoch VAE schedule (Appendix B.3), one early-stopping scope.

    LR 1e-3, 1e-4, 1e-5 for 800 epochs each; StaticMNIST 1e-4 for 1600 then 1e-5 for 800;
    every LR times `lr_f`.
    """
    if dataset == "static-mnist":
        steps = [(1600, 1e-4), (800, 1e-5)]
    else:
        steps = [(800, 1e-3), (800, 1e-4), (800, 1e-5)]
    lengths = scale_lengths([n for n, _ in steps], factor)
    warmup = min(scaled(WARMUP_EPOCHS, factor), sum(lengths))
    phases, offset = [], 0
    for (paper, lr), n in zip(steps, lengths, strict=True):
        lr = lr * lr_f
        phases.append(
            Phase(f"{stage}@lr{lr:g}", stage, n, lr, groups, prior, warmup, offset, stage, paper)
        )
        offset += n
    return phases


def _prior_stage(
    stage: str, steps: list[tuple[int, float]], factor: float, scope: str
) -> list[Phase]:
    """Fit the RNVP prior alone (q and p(x|z) frozen), β = 1."""
    lengths = scale_lengths([n for n, _ in steps], factor)
    phases, offset = [], 0
    for (paper, lr), n in zip(steps, lengths, strict=True):
        phases.append(
            Phase(f"{stage}@lr{lr:g}", stage, n, lr, PRIOR_GROUPS, "model", 0, offset, scope, paper)
        )
        offset += n
    return phases


def build_schedule(
    strategy: str,
    dataset: str,
    prior: str,
    epochs: int | None = None,
    *,
    iterations: int | None = None,
    m_epochs: int | None = None,
    skip_standard: bool = False,
    lr: float | None = None,
) -> list[Phase]:
    """All phases of a run (Appendix B.3, Algorithm B.1).

    joint: Eq. (5), prior and VAE together. post-hoc: standard VAE (unit prior) unless
    `skip_standard` (a base run supplies it), then the prior alone for 3200 epochs at 1e-3
    then 1e-4. iterative: 1a standard VAE; 1b prior 2M epochs (M at 1e-3, M at 1e-4); then
    I-1 rounds of M epochs q,p and M epochs prior, both at 1e-4. `iterations`/`m_epochs`
    override I and M (M is then taken as is, not scaled). `lr` replaces the main schedule's
    first learning rate; every learning rate, post-hoc and iterative ones included, is scaled
    by the same factor (`lr_factor`), so `lr` equal to the paper's gives the paper's schedule.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {STRATEGIES}")
    if strategy != "joint" and prior != "rnvp":
        raise ValueError(
            f"strategy {strategy!r} fits a learned prior: use --prior rnvp (got {prior!r})"
        )
    epochs = PAPER_EPOCHS if epochs is None else epochs
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    factor = epochs / PAPER_EPOCHS
    lr_f = lr_factor(dataset, lr)
    all_groups = (*VAE_GROUPS, *PRIOR_GROUPS)
    if strategy == "joint":
        return _vae_stage("joint", dataset, factor, "model", all_groups, lr_f)
    standard = (
        [] if skip_standard else _vae_stage("standard", dataset, factor, "unit", VAE_GROUPS, lr_f)
    )
    if strategy == "post-hoc":
        half = POSTHOC_EPOCHS // 2
        steps = [(half, 1e-3 * lr_f), (half, 1e-4 * lr_f)]
        return standard + _prior_stage("post-hoc-prior", steps, factor, "post-hoc-prior")
    return standard + _iterative_rounds(dataset, factor, iterations, m_epochs, lr_f)


def _iterative_rounds(
    dataset: str, factor: float, iterations: int | None, m_epochs: int | None, lr_f: float
) -> list[Phase]:
    """Iterations 1b, 2a, 2b, ..., Ia, Ib of Algorithm B.1: one early-stopping scope."""
    i_paper, m_paper = ITERATIONS.get(dataset, ITERATIONS["default"])
    n_iter = i_paper if iterations is None else iterations
    if n_iter < 1:
        raise ValueError(f"iterations I must be >= 1, got {n_iter}")
    if m_epochs is not None and m_epochs < 1:
        raise ValueError(f"M must be >= 1 epoch, got {m_epochs}")
    m = m_epochs if m_epochs is not None else scaled(m_paper, factor)
    scope, lr = "iterative", 1e-4 * lr_f
    phases = [
        replace(p, paper_epochs=m_paper)
        for p in _prior_stage("iter1b", [(m, 1e-3 * lr_f), (m, lr)], 1.0, scope)
    ]
    for i in range(2, n_iter + 1):
        for part, groups in (("a", VAE_GROUPS), ("b", PRIOR_GROUPS)):
            name = f"iter{i}{part}"
            phases.append(Phase(name, name, m, lr, groups, "model", 0, 0, scope, m_paper))
    return phases


def validation_every(epochs: int | None) -> int:
    """Early-stopping validation interval (20 paper epochs), scaled like the schedule."""
    factor = (PAPER_EPOCHS if epochs is None else epochs) / PAPER_EPOCHS
    return scaled(VALIDATION_EVERY, factor)


def uses_early_stopping(dataset: str, model: str) -> bool:
    """Appendix B.3: early stopping on validation NLL for StaticMNIST and PixelVAE."""
    return dataset == "static-mnist" or model == "pixel"


def total_epochs(phases: list[Phase]) -> int:
    return sum(p.epochs for p in phases)


def scope_end(phases: list[Phase], i: int) -> int:
    """Global epoch count at the end of the early-stopping scope of phase `i`."""
    end = sum(p.epochs for p in phases[: i + 1])
    for p in phases[i + 1 :]:
        if p.scope != phases[i].scope:
            break
        end += p.epochs
    return end


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _trains(groups: tuple[str, ...]) -> str:
    names = {"encoder": "q(z|x)", "decoder": "p(x|z)", "prior": "p(z)"}
    return " + ".join(names[g] for g in groups if g in names)


def describe(
    phases: list[Phase],
    epochs: int | None,
    *,
    strategy: str,
    dataset: str,
    lr: float | None = None,
    m_epochs: int | None = None,
    validate_every: int | None = None,
    patience: int | None = None,
) -> list[str]:
    """The effective schedule as lines for the user (printed when training starts).

    One line per phase (epochs, the paper's epochs, learning rate, what trains, which prior,
    warm-up), the total, how `epochs` (`--epochs`) scaled the paper's schedule, how `lr`
    (`--lr`) scaled its learning rates, and early stopping (`validate_every` epochs between
    validations, `patience` in validations; None: no early stopping).
    """
    total = total_epochs(phases)
    lines = [f"schedule: {strategy} training on {dataset}, {len(phases)} phases, {total} epochs"]
    width = max(len(p.name) for p in phases)
    for p in phases:
        prior = "N(0, I) prior" if p.prior == "unit" else "model prior"
        line = (
            f"  {p.name:<{width}}  {p.epochs:>5} epochs (paper {p.paper_epochs})"
            f"  lr {p.lr:<8.3g} trains {_trains(p.groups)}, {prior}"
        )
        if p.warmup and p.stage_offset == 0:
            line += f", β warm-up 0.01 -> 1 over {_epochs(p.warmup)}"
        lines.append(line)
    paper = sum(p.paper_epochs for p in phases)
    if epochs is None or epochs == PAPER_EPOCHS:
        lines.append(f"  total {total} epochs: the paper's schedule, unscaled (Appendix B.3)")
    else:
        exact = paper * epochs / PAPER_EPOCHS
        head = (
            f"  total {total} epochs: --epochs {epochs} scales the paper's {paper}-epoch "
            f"schedule by {epochs}/{PAPER_EPOCHS}"
        )
        if total > round(exact) and m_epochs is None:
            head += f"; every phase keeps >= 1 epoch, so {total} epochs run"
        lines.append(head)
    if m_epochs is not None:
        lines.append(f"  M = {m_epochs} epochs as given (not scaled by --epochs)")
    if lr is not None:
        first = PAPER_LR.get(dataset, PAPER_LR["default"])
        lines.append(
            f"  --lr {lr:g} replaces the paper's first learning rate {first:g}: every learning "
            f"rate is scaled by {lr_factor(dataset, lr):.3g}"
        )
    if validate_every is None or patience is None:
        lines.append("  early stopping: off (the final weights are kept)")
    else:
        lines.append(
            f"  early stopping: validation NLL (100 samples) every {_epochs(validate_every)}; a "
            f"scope stops after {patience} validations ({_epochs(patience * validate_every)}) "
            "without improvement; its best weights are restored at its end"
        )
    return lines
