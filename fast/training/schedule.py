"""Training schedules of Appendix B.3 and Algorithm B.1, as an explicit list of phases.

`build_schedule` returns every phase a run goes through (name, epochs, learning rate, which
parameter groups train, which prior the step uses, warm-up); `train.py` only executes it.
`epochs` (the `--epochs N` option) is the length of the paper's 2400-epoch main schedule;
every other length (warm-up, LR steps, post-hoc 3200-epoch stage, iterative 2M/M phases,
validation interval) scales by N / 2400, by rounding cumulative boundaries so the total is
exact and every phase keeps at least one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_EPOCHS = 2400
WARMUP_EPOCHS = 100  # β: 0.01 -> 1 linearly over the first 100 epochs (Appendix B.3)
BETA_START = 0.01
POSTHOC_EPOCHS = 3200  # RNVP prior fitted post hoc: 1600 at 1e-3, 1600 at 1e-4
VALIDATION_EVERY = 20  # early stopping: validation NLL every 20 epochs (100 samples)
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
    """

    name: str
    stage: str
    epochs: int
    lr: float
    groups: tuple[str, ...]
    prior: str
    warmup: int = 0
    stage_offset: int = 0


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


def _vae_stage(
    stage: str, dataset: str, factor: float, prior: str, groups: tuple[str, ...]
) -> list[Phase]:
    """The 2400-epoch VAE schedule (Appendix B.3).

    LR 1e-3, 1e-4, 1e-5 for 800 epochs each; StaticMNIST 1e-4 for 1600 then 1e-5 for 800.
    """
    if dataset == "static-mnist":
        steps = [(1600, 1e-4), (800, 1e-5)]
    else:
        steps = [(800, 1e-3), (800, 1e-4), (800, 1e-5)]
    lengths = scale_lengths([n for n, _ in steps], factor)
    warmup = min(scaled(WARMUP_EPOCHS, factor), sum(lengths))
    phases, offset = [], 0
    for (_, lr), n in zip(steps, lengths, strict=True):
        phases.append(Phase(f"{stage}@lr{lr:g}", stage, n, lr, groups, prior, warmup, offset))
        offset += n
    return phases


def _prior_stage(stage: str, steps: list[tuple[int, float]], factor: float) -> list[Phase]:
    """Fit the RNVP prior alone (q and p(x|z) frozen), β = 1."""
    lengths = scale_lengths([n for n, _ in steps], factor)
    phases, offset = [], 0
    for (_, lr), n in zip(steps, lengths, strict=True):
        phases.append(Phase(f"{stage}@lr{lr:g}", stage, n, lr, PRIOR_GROUPS, "model", 0, offset))
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
) -> list[Phase]:
    """All phases of a run (Appendix B.3, Algorithm B.1).

    joint: Eq. (5), prior and VAE together. post-hoc: standard VAE (unit prior) unless
    `skip_standard` (a base run supplies it), then the prior alone for 3200 epochs at 1e-3
    then 1e-4. iterative: 1a standard VAE; 1b prior 2M epochs (M at 1e-3, M at 1e-4); then
    I-1 rounds of M epochs q,p and M epochs prior, both at 1e-4. `iterations`/`m_epochs`
    override I and M (M is then taken as is, not scaled).
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
    all_groups = (*VAE_GROUPS, *PRIOR_GROUPS)
    if strategy == "joint":
        return _vae_stage("joint", dataset, factor, "model", all_groups)
    standard = [] if skip_standard else _vae_stage("standard", dataset, factor, "unit", VAE_GROUPS)
    if strategy == "post-hoc":
        half = POSTHOC_EPOCHS // 2
        return standard + _prior_stage("post-hoc-prior", [(half, 1e-3), (half, 1e-4)], factor)
    return standard + _iterative_rounds(dataset, factor, iterations, m_epochs)


def _iterative_rounds(
    dataset: str, factor: float, iterations: int | None, m_epochs: int | None
) -> list[Phase]:
    """Iterations 1b, 2a, 2b, ..., Ia, Ib of Algorithm B.1."""
    i_paper, m_paper = ITERATIONS.get(dataset, ITERATIONS["default"])
    n_iter = i_paper if iterations is None else iterations
    if n_iter < 1:
        raise ValueError(f"iterations I must be >= 1, got {n_iter}")
    if m_epochs is not None and m_epochs < 1:
        raise ValueError(f"M must be >= 1 epoch, got {m_epochs}")
    m = m_epochs if m_epochs is not None else scaled(m_paper, factor)
    phases = _prior_stage("iter1b", [(m, 1e-3), (m, 1e-4)], 1.0)
    for i in range(2, n_iter + 1):
        phases.append(Phase(f"iter{i}a", f"iter{i}a", m, 1e-4, VAE_GROUPS, "model"))
        phases.append(Phase(f"iter{i}b", f"iter{i}b", m, 1e-4, PRIOR_GROUPS, "model"))
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
