"""Shared fixtures for the kernel benchmarks (pytest-benchmark).

Run: `.venv/bin/python -m pytest bench --benchmark-enable` (add `--benchmark-json=out.json`).
On CUDA every case runs at the paper sizes; on CPU only the torch paths run,
at reduced sizes, and the Triton cases skip with the reason (the interpreter is not a speed path).
torch.compile runs on CPU only when VAEPRIOR_BENCH_COMPILE=1 (inductor's C++ compile of the
unrolled flow takes minutes on a small CPU); on CUDA it always runs.

Each case stores in `benchmark.extra_info`: ms (median), model FLOPs and bytes (formulas in the
test modules), TFLOP/s, GB/s, peak memory above the inputs (CUDA), and the floor
max(FLOPs / measured matmul rate, bytes / measured copy bandwidth) with the ratio floor/ms.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

import pytest
import torch

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
COMPILE = ON_GPU or os.environ.get("VAEPRIOR_BENCH_COMPILE") == "1"

needs_gpu = pytest.mark.skipif(
    not ON_GPU,
    reason="Triton kernel timing needs a CUDA GPU (the CPU interpreter is not a speed path)",
)
needs_compile = pytest.mark.skipif(
    not COMPILE, reason="torch.compile on CPU is slow to build: set VAEPRIOR_BENCH_COMPILE=1"
)


def sync() -> None:
    if ON_GPU:
        torch.cuda.synchronize()


def _median_seconds(fn: Callable[[], object], reps: int) -> float:
    import time

    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@pytest.fixture(scope="session")
def device() -> torch.device:
    return DEVICE


@pytest.fixture(scope="session")
def machine_rates() -> dict[str, float]:
    """Measured float32 matmul rate (FLOP/s) and device copy bandwidth (B/s) for the floors."""
    n = 4096 if ON_GPU else 1024
    a = torch.randn(n, n, device=DEVICE)
    b = torch.randn(n, n, device=DEVICE)
    mm = 2 * n**3 / _median_seconds(lambda: a @ b, 10)
    src = torch.empty(64 * 2**20 if ON_GPU else 8 * 2**20, device=DEVICE)  # 256 MiB / 32 MiB
    dst = torch.empty_like(src)
    bw = 2 * src.numel() * 4 / _median_seconds(lambda: dst.copy_(src), 10)
    return {"matmul_flops": mm, "copy_bytes_per_s": bw}


def pytest_report_header(config) -> str:
    import triton

    gpu = torch.cuda.get_device_name() if ON_GPU else "none"
    return (
        f"vaeprior bench: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, torch {torch.__version__}, triton {triton.__version__}, gpu {gpu}"
    )


@pytest.fixture
def run_case(benchmark, machine_rates):
    """run_case(fn, flops=, nbytes=, rounds=) -> median seconds; fills benchmark.extra_info."""

    def _run(fn: Callable[[], object], *, flops: float, nbytes: float, rounds: int) -> float:
        fn()  # warm-up: compilation, autotuning, allocator
        sync()
        if ON_GPU:
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() if ON_GPU else 0

        def timed() -> None:
            fn()
            sync()

        benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=1)
        if benchmark.stats is None:  # --benchmark-disable: ran once, nothing to report
            return float("nan")
        sec = benchmark.stats.stats.median
        floor = max(
            flops / machine_rates["matmul_flops"], nbytes / machine_rates["copy_bytes_per_s"]
        )
        benchmark.extra_info.update(
            device=str(DEVICE),
            ms=sec * 1e3,
            flops=flops,
            bytes=nbytes,
            tflops=flops / sec / 1e12,
            gbps=nbytes / sec / 1e9,
            floor_ms=floor * 1e3,
            floor_over_ms=floor / sec,
            peak_mem_mib=(torch.cuda.max_memory_allocated() - base) / 2**20 if ON_GPU else None,
        )
        return sec

    return _run
