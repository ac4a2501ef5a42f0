"""CPU training and evaluation speed of the DenseVAE, measured as ratios within one run.

One training step = the training loop's own step (`vaeprior.fast.training.objective.training_loss`,
backward, the loop's Adam) on a batch of 128 binarized images with one z per x. Cases: the
Gaussian prior, an RNVP prior with K = 20 and K = 50 blocks, an RNVP posterior q(z|x) with
K = 20; each at 1 and 2 threads (torch.set_num_threads, restored after). Plus the
1000-sample evaluation (`vaeprior.fast.evaluation.evaluate.evaluate`) in images per second.

Other processes share this machine, so absolute times drift; ratios are taken between cases
timed in interleaved rounds (every case once per round, medians over rounds), and the 1-minute
load average is recorded beside each round. FLOPs per step are counted by
torch.utils.flop_counter.FlopCounterMode (matmuls); the share of the machine is the achieved
FLOP rate over a 1024^3 float32 matmul's, measured in the same run at the same thread count.

Run: `OMP_NUM_THREADS=1 python -m vaeprior.bench.cpu_speed [--rounds 7] [--json out.json]`.
`--paired STEPS` instead times the step cases in turn, one step each, and reports the median
of each case's per-turn ratio to the standard step (the target's ratio, with the machine's
drift cancelled).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaeprior.fast.config import ModelConfig
from vaeprior.fast.evaluation.evaluate import evaluate
from vaeprior.fast.models.vae import build_vae
from vaeprior.fast.training.loop import make_optimizer
from vaeprior.fast.training.objective import training_loss

BATCH = 128
STEPS_PER_EPOCH = 469  # ceil(60,000 MNIST training images / 128)
EVAL_SAMPLES = 1000
# (name, prior, posterior, K)
STEP_CONFIGS = (
    ("gaussian", "gaussian", "gaussian", 0),
    ("rnvp-p K=20", "rnvp", "gaussian", 20),
    ("rnvp-p K=50", "rnvp", "gaussian", 50),
    ("rnvp-q K=20", "gaussian", "rnvp", 20),
)
EVAL_CONFIGS = (("gaussian", "gaussian", 0), ("rnvp-p K=20", "rnvp", 20))
QUIET_CPUS = 0.1  # a round counts as quiet when other processes used less CPU than this


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """torch.set_num_threads(n) inside the block, the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def binary_batch(n: int, seed: int = 0) -> torch.Tensor:
    """n binarized 'images' (B, 784), ~30 % ones."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 784, generator=g) < 0.3).float()


def train_step(prior: str, posterior: str, depth: int, batch: int = BATCH) -> Callable[[], None]:
    """One training step of a DenseVAE (z_dim 40) as the training loop takes it."""
    torch.manual_seed(0)
    cfg = ModelConfig(prior=prior, posterior=posterior, flow_depth=depth)
    vae = build_vae(cfg).train()
    opt = make_optimizer(vae, lr=1e-3)
    x = binary_batch(batch)
    eps = torch.randn(1, batch, cfg.z_dim, generator=torch.Generator().manual_seed(1))

    def step() -> None:
        loss, _ = training_loss(vae, x, eps, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # ActNorm data-dependent init, optimizer state, allocator warm-up
    return step


def evaluation(prior: str, depth: int, images: int) -> Callable[[], None]:
    """The 1000-sample evaluation (NLL, ELBO, KL) of `images` test images."""
    torch.manual_seed(0)
    vae = build_vae(ModelConfig(prior=prior, flow_depth=depth))
    if vae.prior_flow is not None:
        vae.prior_flow.initialize(torch.randn(512, 40))
    x = binary_batch(images, seed=2)
    return lambda: evaluate(vae, x, samples=EVAL_SAMPLES)


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call, counted by FlopCounterMode (matmul-type ops)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def median_seconds(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_rate(threads: int, n: int = 1024, reps: int = 10) -> float:
    """float32 FLOP/s of an n^3 matmul at `threads` threads (median of `reps`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    with num_threads(threads):
        a @ b
        return 2 * n**3 / median_seconds(lambda: a @ b, reps)


@dataclass
class Case:
    name: str
    threads: int
    fn: Callable[[], object]
    reps: int  # calls per round (the round's median is kept)
    work: float = 1.0  # units per call (1 step, or images)


def _busy_jiffies() -> float:
    """CPU time (s) all processes of the machine have used so far (/proc/stat), or nan."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except OSError:
        return math.nan
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def interleaved(
    cases: list[Case], rounds: int
) -> tuple[dict[str, list[float]], list[float], list[float]]:
    """Seconds per call of every case in each of `rounds` rounds (cases in turn within a round),
    the 1-minute load average at the start of each round, and the CPUs other processes kept
    busy during each round (machine CPU time minus this process's, over the round's wall time).

    The load average lags by a minute; the last number is exact, and a single busy process
    (others >= ~0.1) already slows the 2-thread cases, whose threads wait for each other.
    """
    per_case: dict[str, list[float]] = {c.name: [] for c in cases}
    loads, others = [], []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        wall, own, busy = time.perf_counter(), time.process_time(), _busy_jiffies()
        for c in cases:
            with num_threads(c.threads):
                per_case[c.name].append(median_seconds(c.fn, c.reps))
        wall, own = time.perf_counter() - wall, time.process_time() - own
        others.append(max(0.0, _busy_jiffies() - busy - own) / wall)
    return per_case, loads, others


def measure(rounds: int = 7, eval_images: int = 16, threads: tuple[int, ...] = (1, 2)) -> dict:
    """Every step and evaluation case, interleaved; returns the numbers the tables need."""
    cases, flops = [], {}
    for name, prior, posterior, depth in STEP_CONFIGS:
        step = train_step(prior, posterior, depth)
        flops[name] = count_flops(step)
        cases += [Case(f"step {name} t={t}", t, step, reps=10) for t in threads]
    for name, prior, depth in EVAL_CONFIGS:
        ev = evaluation(prior, depth, eval_images)
        cases += [Case(f"eval {name} t={t}", t, ev, reps=1, work=eval_images) for t in threads]
    for c in cases:  # warm-up at the case's thread count
        with num_threads(c.threads):
            c.fn()
    per_case, loads, others = interleaved(cases, rounds)
    rates = {t: gemm_rate(t) for t in threads}
    # rounds during which no other process used the CPUs (a tenth of one CPU at most)
    quiet = [i for i, o in enumerate(others) if o < QUIET_CPUS]
    used = quiet if len(quiet) >= 3 else list(range(rounds))
    out = {"rounds": rounds, "loads": loads, "others_cpus": others, "used_rounds": used}
    out |= {"gemm_flops": rates, "steps": {}, "evals": {}}
    for c in cases:
        sec = statistics.median(per_case[c.name][i] for i in used)
        kind, name = c.name.split(" ", 1)
        name, _ = name.rsplit(" t=", 1)
        row = {"threads": c.threads, "seconds": sec, "all_rounds": per_case[c.name]}
        if kind == "step":
            row |= {"flops": flops[name], "share": flops[name] / sec / rates[c.threads]}
            out["steps"].setdefault(name, {})[c.threads] = row
        else:
            out["evals"].setdefault(name, {})[c.threads] = row | {"images_per_s": c.work / sec}
    return out


def paired_ratios(steps: int = 400, threads: int = 1) -> dict[str, dict[str, float]]:
    """Each step case's time over the standard step's, step by step: the cases run in turn one
    step each, `steps` turns, and the median of the per-turn ratios is kept, so that the
    machine's drift (seconds to minutes) cancels within each ratio. Also the median ms/step."""
    fns = {name: train_step(prior, post, depth) for name, prior, post, depth in STEP_CONFIGS}
    times: dict[str, list[float]] = {name: [] for name in fns}
    with num_threads(threads):
        for fn in fns.values():
            for _ in range(3):  # warm-up at this thread count
                fn()
        for _ in range(steps):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    base = times[STEP_CONFIGS[0][0]]
    return {
        name: {
            "ms": 1e3 * statistics.median(t),
            "ratio": statistics.median(a / b for a, b in zip(t, base, strict=True)),
        }
        for name, t in times.items()
    }


def tables(r: dict) -> str:
    """Markdown tables and target ratios of `measure`'s result."""
    lines = [
        "| step (DenseVAE, B = 128) | threads | ms/step | GFLOP/step | GFLOP/s | share of "
        "1024³ GEMM | epoch estimate (469 steps) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_t in r["steps"].items():
        for t, row in by_t.items():
            ms = 1e3 * row["seconds"]
            lines.append(
                f"| {name} | {t} | {ms:.2f} | {row['flops'] / 1e9:.3f} | "
                f"{row['flops'] / row['seconds'] / 1e9:.1f} | {row['share']:.2f} | "
                f"{ms * STEPS_PER_EPOCH / 1e3:.1f} s |"
            )
    lines += ["", "| 1000-sample evaluation | threads | images/s |", "| --- | --- | --- |"]
    for name, by_t in r["evals"].items():
        for t, row in by_t.items():
            lines.append(f"| {name} | {t} | {row['images_per_s']:.1f} |")
    s = r["steps"]
    gauss, rnvp = s["gaussian"], s["rnvp-p K=20"]
    lines += [
        "",
        f"- RNVP K=20 step / Gaussian step at 1 thread: "
        f"{rnvp[1]['seconds'] / gauss[1]['seconds']:.2f}",
    ]
    if 2 in gauss:
        lines.append(
            "- 1-thread time / 2-thread time: "
            + ", ".join(
                f"{name} {by_t[1]['seconds'] / by_t[2]['seconds']:.2f}"
                for name, by_t in list(s.items())
                + [(f"eval {k}", v) for k, v in r["evals"].items()]
            )
        )
    gemm = ", ".join(f"{t} thread(s) {v / 1e9:.0f} GFLOP/s" for t, v in r["gemm_flops"].items())
    loads = ", ".join(f"{v:.2f}" for v in r["loads"])
    others = ", ".join(f"{v:.2f}" for v in r["others_cpus"])
    lines += [
        f"- 1024³ float32 GEMM: {gemm}",
        f"- 1-minute load average per round: {loads}",
        f"- CPUs used by other processes per round: {others}; medians over rounds "
        f"{[i + 1 for i in r['used_rounds']]} (quiet: others < {QUIET_CPUS} CPU, if >= 3)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    p.add_argument("--eval-images", type=int, default=16, help="images per evaluation call")
    p.add_argument("--json", default=None, help="also write the raw numbers to this file")
    p.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead: step / standard step ratios, the cases in turn for STEPS steps (1 thread)",
    )
    args = p.parse_args(argv)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, load {os.getloadavg()[0]:.2f}"
    )
    if args.paired:
        r = paired_ratios(args.paired)
        print(f"| step, 1 thread ({args.paired} steps in turn) | median ms | median ratio |")
        print("| --- | --- | --- |")
        for name, row in r.items():
            print(f"| {name} | {row['ms']:.2f} | {row['ratio']:.3f} |")
    else:
        r = measure(args.rounds, args.eval_images)
        print(tables(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
