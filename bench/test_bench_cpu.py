"""CPU speed of DenseVAE training steps and of the 1000-sample evaluation (pytest-benchmark).

Cases and what a step is: `vaeprior.bench.cpu_speed` (its module docstring). Each case runs at
1 and 2 threads (torch.set_num_threads, restored after) and stores in `benchmark.extra_info`:
ms per step (or images/s), GFLOP per step counted by FlopCounterMode, the achieved GFLOP/s,
its share of a 1024^3 float32 GEMM at the same thread count measured in the same session, and
the 1-minute load average. Ratios between cases (the targets in bench/RESULTS.md) come from
the interleaved runner, `python -m vaeprior.bench.cpu_speed`, not from these separate cases.

Run: `.venv/bin/python -m pytest bench/test_bench_cpu.py --benchmark-enable`.
"""

from __future__ import annotations

import os

import pytest

from vaeprior.bench import cpu_speed
from vaeprior.bench.conftest import ON_GPU

pytestmark = pytest.mark.skipif(ON_GPU, reason="CPU speed cases (the GPU has bench/gpu)")

THREADS = (1, 2)


@pytest.fixture(scope="module")
def gemm_rates() -> dict[int, float]:
    return {t: cpu_speed.gemm_rate(t) for t in THREADS}


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize(
    ("name", "prior", "posterior", "depth"),
    cpu_speed.STEP_CONFIGS,
    ids=[c[0] for c in cpu_speed.STEP_CONFIGS],
)
def test_train_step(benchmark, gemm_rates, name, prior, posterior, depth, threads) -> None:
    step = cpu_speed.train_step(prior, posterior, depth)
    flops = cpu_speed.count_flops(step)
    with cpu_speed.num_threads(threads):
        step()
        benchmark.pedantic(step, rounds=30, iterations=1, warmup_rounds=3)
    if benchmark.stats is None:  # --benchmark-disable: ran once, nothing to report
        return
    sec = benchmark.stats.stats.median
    benchmark.extra_info.update(
        threads=threads,
        ms_per_step=1e3 * sec,
        gflop_per_step=flops / 1e9,
        gflop_per_s=flops / sec / 1e9,
        share_of_gemm=flops / sec / gemm_rates[threads],
        epoch_seconds=sec * cpu_speed.STEPS_PER_EPOCH,
        load_1min=os.getloadavg()[0],
    )


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize(
    ("name", "prior", "depth"), cpu_speed.EVAL_CONFIGS, ids=[c[0] for c in cpu_speed.EVAL_CONFIGS]
)
def test_evaluation(benchmark, name, prior, depth, threads) -> None:
    images = 16
    run = cpu_speed.evaluation(prior, depth, images)
    with cpu_speed.num_threads(threads):
        run()
        benchmark.pedantic(run, rounds=3, iterations=1)
    if benchmark.stats is None:
        return
    benchmark.extra_info.update(
        threads=threads,
        images_per_s=images / benchmark.stats.stats.median,
        samples=cpu_speed.EVAL_SAMPLES,
        load_1min=os.getloadavg()[0],
    )
